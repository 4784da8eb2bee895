"""The catalog as the one store: versioned datasets and releases, per-sample metric values by name,
build targets, and no cascade into what people made.

* ``datasets`` and ``releases`` gain ``revision`` (existing rows become revision 1) and
  ``content_hash``; ``name`` is unique per revision instead of alone. ``datasets`` gains ``targets``.
* ``metric_values`` (score, metric, value) replaces the eleven metric columns of ``scores``; every
  existing value (NULLs included) is copied over before the columns go.
* ``runs.summary`` takes the whole ``summary.json`` of the run folder where that file still exists
  (older releases stored only counts and means in the catalog).
* Foreign keys from runs, campaigns, campaign items, assignments and ratings become
  ``ON DELETE RESTRICT`` (``ratings.winner_run_id`` was ``SET NULL``, which would have edited a
  rating).

On SQLite the tables are rebuilt by Alembic's batch mode; :func:`db.engine.upgrade` switches
``PRAGMA foreign_keys`` off around the migration (a rebuilt table would otherwise cascade on its own
``DROP``) and checks ``PRAGMA foreign_key_check`` afterwards.

Revision ID: 0004
Revises: 0003
"""

import json
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OLD_SCORE_COLUMNS = ("iou", "dice", "precision", "recall", "boundary_f1", "boundary_iou", "mae", "sad", "mse", "grad", "conn")
NAMING = {
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
}
# (table, column, referred table, referred column, new ON DELETE)
RESTRICT = (
    ("runs", "release_id", "releases", "id"),
    ("runs", "dataset_id", "datasets", "id"),
    ("campaigns", "run_a_id", "runs", "id"),
    ("campaigns", "run_b_id", "runs", "id"),
    ("campaign_items", "campaign_id", "campaigns", "id"),
    ("campaign_items", "sample_id", "samples", "id"),
    ("campaign_items", "left_run_id", "runs", "id"),
    ("assignments", "item_id", "campaign_items", "id"),
    ("assignments", "rater_id", "raters", "id"),
    ("ratings", "assignment_id", "assignments", "id"),
    ("ratings", "rater_id", "raters", "id"),
    ("ratings", "item_id", "campaign_items", "id"),
    ("ratings", "winner_run_id", "runs", "id"),
)


def _fk_name(inspector, table: str, column: str, referred: str) -> str:
    for fk in inspector.get_foreign_keys(table):
        if fk["constrained_columns"] == [column]:
            return fk["name"] or NAMING["fk"] % {"table_name": table, "column_0_name": column, "referred_table_name": referred}
    raise RuntimeError(f"no foreign key on {table}.{column}")


def _uq_name(inspector, table: str, column: str) -> str:
    for uq in inspector.get_unique_constraints(table):
        if uq["column_names"] == [column]:
            return uq["name"] or NAMING["uq"] % {"table_name": table, "column_0_name": column}
    raise RuntimeError(f"no unique constraint on {table}.{column}")


def upgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    fk_names = {(t, c): _fk_name(insp, t, c, r) for t, c, r, _ in RESTRICT}
    uq_names = {t: _uq_name(insp, t, "name") for t in ("datasets", "releases")}

    # versioned datasets and releases
    for table in ("datasets", "releases"):
        with op.batch_alter_table(table, recreate="auto", naming_convention=NAMING) as b:
            b.add_column(sa.Column("revision", sa.Integer, nullable=False, server_default="1"))
            b.add_column(sa.Column("content_hash", sa.String(64), nullable=True))
            if table == "datasets":
                b.add_column(sa.Column("targets", sa.JSON, nullable=True))
            b.drop_constraint(uq_names[table], type_="unique")
            b.create_unique_constraint(f"uq_{table[:-1]}_name_revision", ["name", "revision"])
            b.create_index(f"ix_{table}_name", ["name"])

    # metric values by name
    op.create_table(
        "metric_values",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("score_id", sa.Integer, sa.ForeignKey("scores.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("metric", sa.String(64), nullable=False, index=True),
        sa.Column("value", sa.Float, nullable=True),
        sa.UniqueConstraint("score_id", "metric", name="uq_metric_value"),
    )
    for col in OLD_SCORE_COLUMNS:
        op.execute(sa.text(f"INSERT INTO metric_values (score_id, metric, value) SELECT id, '{col}', {col} FROM scores"))
    with op.batch_alter_table("scores", naming_convention=NAMING) as b:
        for col in OLD_SCORE_COLUMNS:
            b.drop_column(col)

    # whole run summaries from the run folders that still exist
    runs = sa.table("runs", sa.column("id", sa.Integer), sa.column("path", sa.Text), sa.column("summary", sa.JSON))
    for run_id, path in bind.execute(sa.select(runs.c.id, runs.c.path)).all():
        f = Path(path) / "summary.json"
        if f.is_file():
            try:
                doc = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            bind.execute(runs.update().where(runs.c.id == run_id).values(summary=doc))

    # no cascade into what people made
    by_table: dict[str, list[tuple[str, str, str]]] = {}
    for t, c, r, rc in RESTRICT:
        by_table.setdefault(t, []).append((c, r, rc))
    for table, fks in by_table.items():
        with op.batch_alter_table(table, naming_convention=NAMING) as b:
            for c, r, rc in fks:
                b.drop_constraint(fk_names[(table, c)], type_="foreignkey")
                b.create_foreign_key(f"fk_{table}_{c}_{r}", r, [c], [rc], ondelete="RESTRICT")


def downgrade() -> None:
    raise NotImplementedError("0004 is not reversible: metric values and revisions have no place in 0003")

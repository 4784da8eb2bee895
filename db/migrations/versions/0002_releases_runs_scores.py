"""Releases, scoring runs and per-sample scores.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCORE_COLUMNS = ("iou", "dice", "precision", "recall", "boundary_f1", "boundary_iou", "mae", "sad", "mse", "grad", "conn")


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("version", sa.String(100), nullable=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("manifest", sa.JSON, nullable=True),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("confidence_proxy", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("path", sa.Text, nullable=False, unique=True),
        sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("settings", sa.JSON, nullable=True),
        sa.Column("summary", sa.JSON, nullable=True),
        sa.Column("n_scored", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "scores",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("sample_id", sa.Integer, sa.ForeignKey("samples.id", ondelete="CASCADE"), nullable=False, index=True),
        *[sa.Column(c, sa.Float, nullable=True) for c in SCORE_COLUMNS],
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.Column("acceptable", sa.Boolean, nullable=False),
        sa.Column("prediction_resized", sa.Boolean, nullable=False),
        sa.UniqueConstraint("run_id", "sample_id", name="uq_score_run_sample"),
    )


def downgrade() -> None:
    op.drop_table("scores")
    op.drop_table("runs")
    op.drop_table("releases")

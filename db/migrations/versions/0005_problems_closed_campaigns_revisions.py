"""Raters can skip an item by reporting a problem with it (a photo that cannot be shown, a broken
prediction, anything else): ``assignments`` gains ``problem`` (the rater's reason) and
``problem_at``. Admins can close a campaign: ``campaigns`` gains ``closed_at``. Raters can edit
their answers while a campaign is open: ``rating_revisions`` keeps every earlier version. Nothing is
deleted or rewritten; the new columns are NULL for every existing row.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("assignments") as batch:
        batch.add_column(sa.Column("problem", sa.Text(), nullable=True))
        batch.add_column(sa.Column("problem_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "rating_revisions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rating_id", sa.Integer(), sa.ForeignKey("ratings.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rating_revisions_rating_id", "rating_revisions", ["rating_id"])


def downgrade() -> None:
    op.drop_index("ix_rating_revisions_rating_id", table_name="rating_revisions")
    op.drop_table("rating_revisions")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("closed_at")
    with op.batch_alter_table("assignments") as batch:
        batch.drop_column("problem_at")
        batch.drop_column("problem")

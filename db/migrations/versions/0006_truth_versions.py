"""Raters correct ground-truth masks: ``truth_versions`` holds each correction as a new version of
the sample's ground truth (the dataset's mask file stays version 1), with who and when. Nothing
existing is changed.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "truth_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sample_id", sa.Integer(), sa.ForeignKey("samples.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("mask_png", sa.LargeBinary(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), sa.ForeignKey("raters.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("campaign", sa.String(200), nullable=True),
        sa.Column("assignment_id", sa.Integer(), nullable=True),
        sa.Column("base", sa.String(64), nullable=False),
        sa.Column("strokes", sa.JSON(), nullable=True),
        sa.Column("snapped", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("sample_id", "version", name="uq_truth_version"),
        sa.UniqueConstraint("assignment_id", name="uq_truth_version_assignment"),
    )
    op.create_index("ix_truth_versions_sample_id", "truth_versions", ["sample_id"])
    op.create_index("ix_truth_versions_rater_id", "truth_versions", ["rater_id"])


def downgrade() -> None:
    op.drop_index("ix_truth_versions_rater_id", table_name="truth_versions")
    op.drop_index("ix_truth_versions_sample_id", table_name="truth_versions")
    op.drop_table("truth_versions")

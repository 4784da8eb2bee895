"""Datasets, their attribute columns, samples and sample attributes.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("root", sa.Text, nullable=False),
        sa.Column("recipe", sa.JSON, nullable=True),
        sa.Column("info", sa.JSON, nullable=True),
        sa.Column("n_samples", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "dataset_attributes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("provenance", sa.String(32), nullable=False),
        sa.UniqueConstraint("dataset_id", "name", name="uq_dataset_attribute"),
    )
    op.create_table(
        "samples",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("sample_key", sa.String(200), nullable=False),
        sa.Column("split", sa.String(16), nullable=True),
        sa.Column("image_path", sa.Text, nullable=False),
        sa.Column("mask_path", sa.Text, nullable=True),
        sa.Column("alpha_path", sa.Text, nullable=True),
        sa.Column("trimap_path", sa.Text, nullable=True),
        sa.Column("has_subject", sa.Boolean, nullable=False),
        sa.Column("n_subjects", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=True),
        sa.Column("height", sa.Integer, nullable=True),
        sa.UniqueConstraint("dataset_id", "sample_key", name="uq_sample_key"),
    )
    op.create_index("ix_samples_dataset_id", "samples", ["dataset_id"])
    op.create_table(
        "sample_attributes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sample_id", sa.Integer, sa.ForeignKey("samples.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("value", sa.Text, nullable=True),
        sa.UniqueConstraint("sample_id", "name", name="uq_sample_attribute"),
    )
    op.create_index("ix_sample_attributes_sample_id", "sample_attributes", ["sample_id"])
    op.create_index("ix_sample_attributes_name", "sample_attributes", ["name"])


def downgrade() -> None:
    op.drop_table("sample_attributes")
    op.drop_table("samples")
    op.drop_table("dataset_attributes")
    op.drop_table("datasets")

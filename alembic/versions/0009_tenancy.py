"""jobs.priority and tags, sweeps.tags, job_tags: fair share between owners, and search by tag

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE, not batch mode: see 0007
    op.add_column("jobs", sa.Column("priority", sa.Integer(), server_default="0", nullable=False))
    op.add_column("jobs", sa.Column("tags", sa.JSON(), server_default="{}", nullable=False))
    op.add_column("sweeps", sa.Column("tags", sa.JSON(), server_default="{}", nullable=False))
    op.create_index(
        "ix_jobs_status_owner_id_priority", "jobs", ["status", "owner_id", sa.text("priority DESC"), "created_at", "id"]
    )
    op.create_index("ix_jobs_owner_id_started_at", "jobs", ["owner_id", "started_at"])
    op.create_table(
        "job_tags",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "key"),
    )
    op.create_index("ix_job_tags_key_value", "job_tags", ["key", "value"])


def downgrade() -> None:
    op.drop_index("ix_job_tags_key_value", table_name="job_tags")
    op.drop_table("job_tags")
    # SQLite drops no column an index names: the indexes go first
    op.drop_index("ix_jobs_owner_id_started_at", table_name="jobs")
    op.drop_index("ix_jobs_status_owner_id_priority", table_name="jobs")
    op.drop_column("sweeps", "tags")
    op.drop_column("jobs", "tags")
    op.drop_column("jobs", "priority")

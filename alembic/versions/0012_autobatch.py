"""jobs.batch_key: jobs that can train together as one batched computation share it

Revision ID: 0012
Revises: 0009
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE, not batch mode: see 0007. Jobs queued before have no key and train alone.
    op.add_column("jobs", sa.Column("batch_key", sa.String(length=64), nullable=True))
    op.create_index("ix_jobs_batch_key_status", "jobs", ["batch_key", "status"])


def downgrade() -> None:
    op.drop_index("ix_jobs_batch_key_status", table_name="jobs")
    op.drop_column("jobs", "batch_key")

"""Time limits: jobs.trained_seconds (seconds trained over all attempts) and jobs.deadline_at (a limited sweep's end)

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-07

A job's spec.max_seconds is held against trained_seconds, which each report writes, so an attempt resumed from a
checkpoint goes on from the time spent before. A member of a sweep with max_seconds carries its sweep's end; the
maintenance tick ends those still queued past it, found by a partial index that holds only such members.
Jobs made before this revision have trained 0 seconds and no deadline.
"""

import sqlalchemy as sa

from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

LIMITED = sa.text("deadline_at IS NOT NULL")


def upgrade() -> None:
    # plain ALTER TABLE, not batch mode: on SQLite batch mode rebuilds `jobs`, and dropping the old table cascades
    op.add_column("jobs", sa.Column("trained_seconds", sa.Float(), nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_deadline_at", "jobs", ["deadline_at"], postgresql_where=LIMITED, sqlite_where=LIMITED)


def downgrade() -> None:
    op.drop_index("ix_jobs_deadline_at", table_name="jobs")
    op.drop_column("jobs", "deadline_at")
    op.drop_column("jobs", "trained_seconds")

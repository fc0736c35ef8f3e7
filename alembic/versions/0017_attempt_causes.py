"""jobs.interruptions and job_attempts: attempts that were not the job's fault stop counting against max_attempts

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

A hand-back at shutdown, or a rescue after the lease expired (a host or a whole process gone), is an interruption:
`jobs.interruptions` counts them, and max_attempts applies to the other attempts. `job_attempts` keeps how each
attempt a worker lost or handed back ended, so a job that fails names every cause. Jobs from before start at 0
interruptions and no history.
"""

from alembic import op
import sqlalchemy as sa


revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE, not batch mode: see 0007
    op.add_column("jobs", sa.Column("interruptions", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "job_attempts",
        sa.Column("job_id", sa.String(length=32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("attempt", sa.Integer(), primary_key=True),
        sa.Column("cause", sa.String(length=300), nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_attempts")
    op.drop_column("jobs", "interruptions")

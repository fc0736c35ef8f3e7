"""jobs.yields: turns a running job gave up to another owner's waiting work

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-07

A run that has trained FITSERVE_YIELD_SECONDS while another owner's job has waited that long checkpoints its
members and hands them back (workers/run.py). Each such hand-back is an interruption (max_attempts never
counts it) that is the scheduler's choice, not a fault: `yields` counts them so FITSERVE_MAX_INTERRUPTIONS
applies to the other interruptions only. Jobs from before start at 0.
"""

import sqlalchemy as sa

from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE, not batch mode: see 0007
    op.add_column("jobs", sa.Column("yields", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("jobs", "yields")

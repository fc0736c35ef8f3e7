"""workers.gpu_total_bytes and gpu_free_bytes, jobs.estimate_bytes: device-aware memory budgets

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-07

A GPU worker registers its GPU's total memory and refreshes its free memory at each heartbeat (NULL for a
CPU worker); a job keeps the training estimate it was submitted with. Submit checks a CUDA job's estimate
against the largest registered GPU's share, and a claim places jobs on a GPU only while the estimates of
the jobs running there leave room (issue 33). Jobs from before carry no estimate (NULL: counted as none).
"""

import sqlalchemy as sa

from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE, not batch mode: see 0007
    op.add_column("workers", sa.Column("gpu_total_bytes", sa.BigInteger(), nullable=True))
    op.add_column("workers", sa.Column("gpu_free_bytes", sa.BigInteger(), nullable=True))
    op.add_column("jobs", sa.Column("estimate_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "estimate_bytes")
    op.drop_column("workers", "gpu_free_bytes")
    op.drop_column("workers", "gpu_total_bytes")

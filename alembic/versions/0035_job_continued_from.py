"""jobs.continued_from: the job whose final state a continued job starts from

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-07

A succeeded job now keeps its final state (weights and optimizer state, safetensors) in checkpoints while the job
is retained; `POST /v1/jobs/{id}/continue` queues a job that starts from it. No foreign key: a parent deleted
before its continuation started leaves that job to fail with the reason.
"""

import sqlalchemy as sa

from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("continued_from", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "continued_from")

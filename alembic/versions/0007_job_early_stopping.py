"""jobs.stopped_early_at, best_epoch, best_metrics: what early stopping decided

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not batch mode: on SQLite batch mode rebuilds `jobs`, and dropping the old table
# cascades (foreign_keys=ON) to every row that references a job, curves and checkpoints included.
COLUMNS = (("stopped_early_at", sa.Integer()), ("best_epoch", sa.Integer()), ("best_metrics", sa.JSON()))


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column("jobs", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.drop_column("jobs", name)

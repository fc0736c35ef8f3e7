"""sweeps.search_state, search_rounds_left, jobs.stop_reason: an adaptive search's decisions, and why a member stopped

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not batch mode: on SQLite batch mode rebuilds the table, and dropping the old one
# cascades (foreign_keys=ON) to every row that references it.
def upgrade() -> None:
    op.add_column("sweeps", sa.Column("search_state", sa.JSON(), nullable=True))
    op.add_column("sweeps", sa.Column("search_rounds_left", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("stop_reason", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "stop_reason")
    op.drop_column("sweeps", "search_rounds_left")
    op.drop_column("sweeps", "search_state")

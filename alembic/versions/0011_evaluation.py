"""jobs.evaluation: the kept weights measured on the validation and test splits when training ends

Revision ID: 0011
Revises: 0009
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE, not batch mode: see 0007
    op.add_column("jobs", sa.Column("evaluation", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "evaluation")

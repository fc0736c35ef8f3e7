"""dataset_target_moments: the per-column mean and std of an uploaded dataset's targets, for the target-scale lint

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08

Datasets uploaded before this revision keep NULL (their jobs get no target-scale warning): computing the moments
would read every dataset's bytes, too much for an upgrade of a large database.
"""

import sqlalchemy as sa

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("datasets", sa.Column("target_moments", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("datasets", "target_moments")

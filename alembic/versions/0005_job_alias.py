"""jobs.alias: a second name for a trained model, unique per owner

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("alias", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_jobs_owner_id_alias", ["owner_id", "alias"])


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint("uq_jobs_owner_id_alias", type_="unique")
        batch_op.drop_column("alias")

"""alias_assignments: which job each alias named, and when; an alias can move from job to job in one step

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06

Aliases set before this revision start their history now: one open row each, assigned at the upgrade.
"""

from alembic import op
import sqlalchemy as sa


revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alias_assignments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("owner_id", sa.String(length=32), nullable=True),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_alias_assignments_owner_id_alias_id", "alias_assignments", ["owner_id", "alias", "id"])
    op.create_index("ix_alias_assignments_job_id", "alias_assignments", ["job_id"])
    op.execute("INSERT INTO alias_assignments (owner_id, alias, job_id, assigned_at)"
               " SELECT owner_id, alias, id, CURRENT_TIMESTAMP FROM jobs WHERE alias IS NOT NULL")


def downgrade() -> None:
    op.drop_index("ix_alias_assignments_job_id", table_name="alias_assignments")
    op.drop_index("ix_alias_assignments_owner_id_alias_id", table_name="alias_assignments")
    op.drop_table("alias_assignments")

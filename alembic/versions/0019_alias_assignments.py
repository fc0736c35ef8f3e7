"""alias_assignments: which job each alias named, and when; an alias can move from job to job in one step

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06

Aliases set before this revision start their history now: one open row each, assigned at the upgrade.

uq_jobs_owner_id_alias never held for jobs without an owner (keys off): NULLs differ in a unique constraint, so
two requests racing could name two such jobs by one alias. A partial unique index now holds them; where a race
already left two, the alias stays on one of them (the smallest id) before the index is built.
"""

from alembic import op
import sqlalchemy as sa


revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE jobs SET alias = NULL WHERE owner_id IS NULL AND alias IS NOT NULL AND id NOT IN"
               " (SELECT min(id) FROM jobs WHERE owner_id IS NULL AND alias IS NOT NULL GROUP BY alias)")
    op.create_index("uq_jobs_alias_unowned", "jobs", ["alias"], unique=True,
                    postgresql_where=sa.text("owner_id IS NULL"), sqlite_where=sa.text("owner_id IS NULL"))
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
    op.drop_index("uq_jobs_alias_unowned", table_name="jobs")
    op.drop_index("ix_alias_assignments_job_id", table_name="alias_assignments")
    op.drop_index("ix_alias_assignments_owner_id_alias_id", table_name="alias_assignments")
    op.drop_table("alias_assignments")

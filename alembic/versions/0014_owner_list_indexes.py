"""jobs by owner in page order; job_tags carry their job's owner and creation time, so a tag filter is one range

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

An owner's first page (and each next one) reads ix_jobs_owner_id_created_at_id in order: no sort of the
owner's rows. `?tag=key:value` reads ix_job_tags_owner_id_key_value in page order, then each job by its key:
no walk of the owner's jobs looking for the few tagged. A job's owner and creation time never change, so the
copies in job_tags never go stale.
"""

from alembic import op
import sqlalchemy as sa


revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_owner_id_created_at_id", "jobs", ["owner_id", "created_at", "id"])
    # plain ALTER TABLE, not batch mode: see 0007
    op.add_column("job_tags", sa.Column("owner_id", sa.String(length=32), nullable=True))
    op.add_column("job_tags", sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # every row is rewritten: the indexes go first and are built again after, not updated row by row in the
        # order of the rows (random in theirs: a million jobs' tags took 68 s so)
        op.drop_index("ix_job_tags_key_value", table_name="job_tags")
        op.drop_constraint("job_tags_pkey", "job_tags", type_="primary")
        op.execute("UPDATE job_tags t SET owner_id = j.owner_id, created_at = j.created_at FROM jobs j WHERE j.id = t.job_id")
        op.create_primary_key("job_tags_pkey", "job_tags", ["job_id", "key"])
        op.create_index("ix_job_tags_key_value", "job_tags", ["key", "value"])
    else:
        op.execute("UPDATE job_tags SET (owner_id, created_at) ="
                   " (SELECT owner_id, created_at FROM jobs WHERE jobs.id = job_tags.job_id)")
    op.create_index("ix_job_tags_owner_id_key_value", "job_tags", ["owner_id", "key", "value", "created_at", "job_id"])


def downgrade() -> None:
    op.drop_index("ix_job_tags_owner_id_key_value", table_name="job_tags")
    op.drop_column("job_tags", "created_at")
    op.drop_column("job_tags", "owner_id")
    op.drop_index("ix_jobs_owner_id_created_at_id", table_name="jobs")

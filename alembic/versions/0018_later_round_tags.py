"""job_tags rows for the members of a TPE sweep's later rounds, which were made without them

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06

Until this revision a TPE round after the first added its members with their tags in `jobs.tags` but no
`job_tags` rows, so `?tag=` did not find them. Sweep members that carry tags and have no rows get them here;
jobs made since are indexed when they are made.
"""

from alembic import op
import sqlalchemy as sa


revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("owner_id", sa.String), sa.column("sweep_id", sa.String),
                sa.column("created_at", sa.DateTime(timezone=True)), sa.column("tags", sa.JSON))
job_tags = sa.table("job_tags", sa.column("job_id", sa.String), sa.column("key", sa.String), sa.column("value", sa.String),
                    sa.column("owner_id", sa.String), sa.column("created_at", sa.DateTime(timezone=True)))
BATCH = 1000


def upgrade() -> None:
    bind = op.get_bind()
    untagged = sa.select(jobs.c.id, jobs.c.owner_id, jobs.c.created_at, jobs.c.tags).where(
        jobs.c.sweep_id.is_not(None), ~sa.exists().where(job_tags.c.job_id == jobs.c.id)
    )
    rows = []
    for job in bind.execute(untagged).all():  # sweep members without tags rows: few carry tags
        rows += [{"job_id": job.id, "key": key, "value": value, "owner_id": job.owner_id, "created_at": job.created_at}
                 for key, value in (job.tags or {}).items()]
    for first in range(0, len(rows), BATCH):
        bind.execute(sa.insert(job_tags), rows[first : first + BATCH])


def downgrade() -> None:
    """The rows stay: they index tags the jobs hold."""

"""PostgreSQL: a trigram index on lower(jobs.name), so `?name=` finds an owner's few matches without a walk

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

`?name=part` is `lower(name) LIKE '%part%'`: no B-tree helps, and a part that few names hold made PostgreSQL walk
the owner's jobs newest first. pg_trgm's GIN index answers it from the index. The extension is trusted (any
owner of the database may create it); where it cannot be created, the upgrade goes on without the index and
the filter keeps its walk. SQLite has no such index: there the filter reads the owner's jobs in page order.
"""

import logging

from alembic import op
import sqlalchemy as sa


revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    try:
        with bind.begin_nested():
            op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as exc:
        log.warning("pg_trgm not available (%s): ?name= reads the owner's jobs in page order", type(exc.orig).__name__)
        return
    op.execute("CREATE INDEX ix_jobs_name_trigrams ON jobs USING gin (lower(name) gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_jobs_name_trigrams")  # the extension stays: others may use it

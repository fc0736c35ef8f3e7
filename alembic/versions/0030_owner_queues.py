"""owner_queues: each owner's queued and running jobs and latest start, indexed in the fair claim's turn order;
an owner's page index carries the name; two indexes no query reads are dropped

Revision ID: 0030
Revises: 0024
Create Date: 2026-12-07

The fair claim read every owner's queued and running counters (job_counts and the changes not folded yet) and
sorted the owners with queued jobs at each claim: 26 ms with 10,000 such owners. The fold now keeps one row an
owner beside job_counts, in the same transaction, and a partial index of the owners with queued jobs in turn
order (fewest running, longest since a start, then the key) makes the next owner its first entry. Filled from
job_counts, so the changes not folded yet stay pending for both tables alike.

`?name=` with a part thousands of names hold (more than SQLite's trigram table is read for) walks the owner's jobs
newest first until the page is full: 332 ms at a million jobs, reading each job's row for its name. The owner's
page index (owner_id, created_at, id) gains the name, so the walk checks the name on the index entry and reads the
rows of the matches only. Replaced, not added: each insert and delete still updates one such index.

A retention tick of 200 is the deletes' index upkeep (17 indexes on jobs, 3 on job_tags, the name trigrams, the
counters' change rows) and the WAL checkpoint after: no one part dominates. Two indexes no query reads any more go:
ix_jobs_owner_id_started_at (an owner's latest start, read from the counters since 0013) and ix_job_tags_key_value
(tags are found per owner since 0014), each a write less at every submit, claim and delete.
"""

import sqlalchemy as sa

from alembic import op

revision = "0030"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "owner_queues",
        sa.Column("owner_key", sa.String(length=32), nullable=False),
        sa.Column("queued", sa.BigInteger(), nullable=False),
        sa.Column("running", sa.BigInteger(), nullable=False),
        sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner_key"),
    )
    never = "TIMESTAMPTZ '1970-01-01 00:00:00+00'" if postgresql else "'1970-01-01 00:00:00.000000'"
    op.execute(f"""
        INSERT INTO owner_queues (owner_key, queued, running, last_started_at)
        SELECT owner_key, sum(CASE WHEN status = 'queued' THEN jobs ELSE 0 END),
            sum(CASE WHEN status = 'running' THEN jobs ELSE 0 END), coalesce(max(last_started_at), {never})
        FROM job_counts WHERE status IN ('queued', 'running') GROUP BY owner_key""")
    queued = sa.text("queued > 0")
    op.create_index("ix_owner_queues_turn", "owner_queues", ["running", "last_started_at", "owner_key"],
                    postgresql_where=queued, sqlite_where=queued)
    op.create_index("ix_jobs_owner_id_created_at_id_name", "jobs", ["owner_id", "created_at", "id", "name"])
    op.drop_index("ix_jobs_owner_id_created_at_id", table_name="jobs")
    op.drop_index("ix_jobs_owner_id_started_at", table_name="jobs")
    op.drop_index("ix_job_tags_key_value", table_name="job_tags")


def downgrade() -> None:
    op.create_index("ix_job_tags_key_value", "job_tags", ["key", "value"])
    op.create_index("ix_jobs_owner_id_started_at", "jobs", ["owner_id", "started_at"])
    op.create_index("ix_jobs_owner_id_created_at_id", "jobs", ["owner_id", "created_at", "id"])
    op.drop_index("ix_jobs_owner_id_created_at_id_name", table_name="jobs")
    op.drop_index("ix_owner_queues_turn", table_name="owner_queues")
    op.drop_table("owner_queues")

"""checkpoints.final: retention's first rule reads the checkpoints it may drop, not every final state; jobs lose
ix_jobs_owner_id, which no query reads

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-07

Each maintenance tick drops the checkpoints of jobs that failed or were cancelled a while ago. It read every
checkpoint and looked up its job, which was cheap while checkpoints were only those of running and recently ended
jobs; since 0035 a succeeded job keeps its final state there as long as the job, so that read grew with the
history (350-450 ms a tick at 100k jobs on SQLite). A final state is now marked as such, and a partial index holds
only the others (running jobs' and those retention will drop).

ix_jobs_owner_id (owner_id alone) is a prefix of six other indexes of jobs: no statement of the API's tests plans
through it on SQLite (each takes the same range of another), and each insert and delete of a job updated it (a
retention tick of 200 wrote about 150 of its ~3,000 pages for it).

The column comes with the default TRUE, so that it costs no write per row (SQLite keeps an added column's default
in the schema, PostgreSQL 11+ in the catalog): the final states, nearly every checkpoint of a large history, read
it as they are; only the checkpoints of the jobs that did not succeed (few) are written, as not final. Setting
TRUE on each succeeded job's checkpoint instead rewrote ~950k rows of ~7 KB each on a 1M-job SQLite database (134
s). On PostgreSQL the column's default then becomes FALSE, as the model's. On SQLite it stays TRUE in the schema:
changing it there would change what every old row reads; every insert into checkpoints is SQLAlchemy's, with the
model's Python-side default=False (repositories/jobs.py, a running job's checkpoint) or an explicit value
(repositories/members.py, a final state), so no insert reads the stored default.
"""

import sqlalchemy as sa

from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None

NOT_SUCCEEDED = ("queued", "running", "failed", "cancelled")  # found by an index on status, not a walk of jobs


def upgrade() -> None:
    # a succeeded job's last checkpoint gave way to its final state as it finished: any checkpoint it has is that
    op.add_column("checkpoints", sa.Column("final", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.execute(sa.text("UPDATE checkpoints SET final = :final WHERE job_id IN (SELECT id FROM jobs"
                       " WHERE status IN :statuses)")
               .bindparams(sa.bindparam("statuses", NOT_SUCCEEDED, expanding=True), final=False))
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("checkpoints", "final", server_default=sa.false())
    # each as the back end's `~Checkpoint.final` reads (SQLite has no boolean type)
    op.create_index("ix_checkpoints_not_final", "checkpoints", ["job_id"], postgresql_where=sa.text("NOT final"),
                    sqlite_where=sa.text("final = 0"))
    op.drop_index("ix_jobs_owner_id", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_owner_id", "jobs", ["owner_id"])
    op.drop_index("ix_checkpoints_not_final", table_name="checkpoints")
    op.drop_column("checkpoints", "final")

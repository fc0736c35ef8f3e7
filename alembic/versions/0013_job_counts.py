"""job_counts and job_count_changes: jobs, training seconds and stored bytes per owner and status, kept by triggers

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

Every statement that inserts, deletes or changes the status of a job, or writes a curve chunk or weights, appends
a change row in its own transaction (the triggers below, one set per back end); the maintenance tick folds the
changes into job_counts (service/repositories/job_counts.py). Appending, not updating one row per owner, keeps
concurrent claims and finishes from queueing (or deadlocking) on a shared row. The upgrade fills job_counts from
the history once.
"""

from alembic import op
import sqlalchemy as sa


revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

CHANGE_COLUMNS = "owner_key, status, jobs, training_seconds, curve_bytes, weights_bytes, last_started_at"
FINAL = "('succeeded', 'failed', 'cancelled')"


def columns() -> list[sa.Column]:
    return [
        sa.Column("owner_key", sa.String(length=32), nullable=False),  # "" for the anonymous owner
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("jobs", sa.BigInteger(), nullable=False),
        sa.Column("training_seconds", sa.Float(), nullable=False),
        sa.Column("curve_bytes", sa.BigInteger(), nullable=False),
        sa.Column("weights_bytes", sa.BigInteger(), nullable=False),
        sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=True),
    ]


def seconds(row: str, postgresql: bool) -> str:
    """A job's latest attempt's training seconds, counted once it ended."""
    span = (f"extract(epoch FROM {row}.finished_at - {row}.started_at)::float8" if postgresql
            else f"(julianday({row}.finished_at) - julianday({row}.started_at)) * 86400.0")
    return (f"(CASE WHEN {row}.status IN {FINAL} AND {row}.started_at IS NOT NULL AND {row}.finished_at IS NOT NULL"
            f" THEN {span} ELSE 0 END)")


def blob_bytes(table: str, job: str, postgresql: bool) -> str:
    length = "octet_length" if postgresql else "length"
    return f"(SELECT coalesce(sum({length}(data)), 0) FROM {table} WHERE job_id = {job})"


def job_change(row: str, sign: str, postgresql: bool, deleted: bool = False) -> str:
    """VALUES of one change row for a job entering (+) or leaving (-) its (owner, status); a deleted job takes
    its curve and weights with it (read before the delete cascades)."""
    curves = f"-{blob_bytes('metric_chunks', 'OLD.id', postgresql)}" if deleted else "0"
    weights = f"-{blob_bytes('job_weights', 'OLD.id', postgresql)}" if deleted else "0"
    started = f"CASE WHEN {row}.status = 'running' THEN {row}.started_at END" if sign == "" else "NULL"
    return (f"(coalesce({row}.owner_id, ''), {row}.status, {sign}1, {sign}{seconds(row, postgresql)}, {curves},"
            f" {weights}, {started})")


def blob_change(column: str, new: str, old: str, job: str) -> str:
    """INSERT of one change row for a blob written, rewritten or deleted; none once its job is gone (a cascade:
    the job's delete counted it)."""
    curve, weights = (f"{new} - {old}", "0") if column == "curve_bytes" else ("0", f"{new} - {old}")
    return (f"INSERT INTO job_count_changes ({CHANGE_COLUMNS}) SELECT coalesce(owner_id, ''), status, 0, 0,"
            f" {curve}, {weights}, NULL FROM jobs WHERE id = {job}")


UPDATED = ("OLD.status IS DISTINCT FROM NEW.status OR OLD.started_at IS DISTINCT FROM NEW.started_at"
           " OR OLD.finished_at IS DISTINCT FROM NEW.finished_at OR OLD.owner_id IS DISTINCT FROM NEW.owner_id")
BLOBS = {"metric_chunks": "curve_bytes", "job_weights": "weights_bytes"}


def create_sqlite_triggers() -> None:
    insert = f"INSERT INTO job_count_changes ({CHANGE_COLUMNS}) VALUES"
    op.execute(f"CREATE TRIGGER jobs_counted_insert AFTER INSERT ON jobs BEGIN"
               f" {insert} {job_change('NEW', '', False)}; END")
    op.execute(f"CREATE TRIGGER jobs_counted_update AFTER UPDATE OF status, started_at, finished_at, owner_id ON jobs"
               f" WHEN {UPDATED.replace('IS DISTINCT FROM', 'IS NOT')} BEGIN"
               f" {insert} {job_change('OLD', '-', False)}, {job_change('NEW', '', False)}; END")
    op.execute(f"CREATE TRIGGER jobs_counted_delete BEFORE DELETE ON jobs BEGIN"
               f" {insert} {job_change('OLD', '-', False, deleted=True)}; END")
    for table, column in BLOBS.items():
        op.execute(f"CREATE TRIGGER {table}_counted_insert AFTER INSERT ON {table} BEGIN"
                   f" {blob_change(column, 'length(NEW.data)', '0', 'NEW.job_id')}; END")
        op.execute(f"CREATE TRIGGER {table}_counted_update AFTER UPDATE OF data ON {table} BEGIN"
                   f" {blob_change(column, 'length(NEW.data)', 'length(OLD.data)', 'NEW.job_id')}; END")
        op.execute(f"CREATE TRIGGER {table}_counted_delete AFTER DELETE ON {table} BEGIN"
                   f" {blob_change(column, '0', 'length(OLD.data)', 'OLD.job_id')}; END")


def create_postgresql_triggers() -> None:
    insert = f"INSERT INTO job_count_changes ({CHANGE_COLUMNS}) VALUES"
    op.execute(f"""
        CREATE FUNCTION jobs_counted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                {insert} {job_change('NEW', '', True)};
            ELSIF TG_OP = 'UPDATE' THEN
                {insert} {job_change('OLD', '-', True)}, {job_change('NEW', '', True)};
            ELSE
                {insert} {job_change('OLD', '-', True, deleted=True)};
                RETURN OLD;
            END IF;
            RETURN NULL;
        END $$""")
    op.execute("CREATE TRIGGER jobs_counted_insert AFTER INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_counted()")
    op.execute(f"CREATE TRIGGER jobs_counted_update AFTER UPDATE OF status, started_at, finished_at, owner_id ON jobs"
               f" FOR EACH ROW WHEN ({UPDATED}) EXECUTE FUNCTION jobs_counted()")
    op.execute("CREATE TRIGGER jobs_counted_delete BEFORE DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_counted()")
    create_postgresql_blob_triggers()


def create_postgresql_blob_triggers() -> None:
    for table, column in BLOBS.items():
        new = "CASE WHEN TG_OP = 'DELETE' THEN 0 ELSE octet_length(NEW.data) END"
        old = "CASE WHEN TG_OP = 'INSERT' THEN 0 ELSE octet_length(OLD.data) END"
        job = "CASE WHEN TG_OP = 'DELETE' THEN OLD.job_id ELSE NEW.job_id END"
        op.execute(f"""
            CREATE FUNCTION {table}_counted() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                {blob_change(column, new, old, job)};
                RETURN NULL;
            END $$""")
        op.execute(f"CREATE TRIGGER {table}_counted AFTER INSERT OR DELETE OR UPDATE OF data ON {table}"
                   f" FOR EACH ROW EXECUTE FUNCTION {table}_counted()")


def fill_counts(postgresql: bool) -> None:
    """job_counts from the history: each (owner, status) with its jobs, seconds and blobs; an owner's latest
    start on its 'running' row."""
    owner, by = "coalesce(j.owner_id, '')", "GROUP BY coalesce(j.owner_id, ''), j.status"
    jobs = f"SELECT {owner}, j.status, count(*), sum({seconds('j', postgresql)})"
    parts = [(f"SELECT {owner}, 'running', 0, 0, 0, 0, max(j.started_at) FROM jobs j WHERE j.started_at IS NOT NULL"
              f" GROUP BY {owner}")]
    if postgresql:  # hash joins: each table read once
        parts += [f"{jobs}, 0, 0, NULL FROM jobs j {by}",
                  (f"SELECT {owner}, j.status, 0, 0, sum(octet_length(c.data)), 0, NULL FROM metric_chunks c"
                   f" JOIN jobs j ON j.id = c.job_id {by}"),
                  (f"SELECT {owner}, j.status, 0, 0, 0, sum(octet_length(w.data)), NULL FROM job_weights w"
                   f" JOIN jobs j ON j.id = w.job_id {by}")]
    else:  # no hash join: one read of the jobs, each job's blobs by their keys (28 s at 1M jobs, not 43)
        parts += [(f"{jobs}, sum((SELECT coalesce(sum(length(data)), 0) FROM metric_chunks WHERE job_id = j.id)),"
                   f" sum((SELECT coalesce(sum(length(data)), 0) FROM job_weights WHERE job_id = j.id)), NULL"
                   f" FROM jobs j {by}")]
    op.execute(f"INSERT INTO job_count_changes ({CHANGE_COLUMNS}) " + " UNION ALL ".join(parts))
    op.execute(f"""
        INSERT INTO job_counts ({CHANGE_COLUMNS})
        SELECT owner_key, status, sum(jobs), sum(training_seconds), sum(curve_bytes), sum(weights_bytes),
            max(last_started_at)
        FROM job_count_changes GROUP BY owner_key, status""")
    op.execute("DELETE FROM job_count_changes")


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.create_table("job_counts", *columns(), sa.PrimaryKeyConstraint("owner_key", "status"))
    op.create_index("ix_job_counts_status_owner_key", "job_counts", ["status", "owner_key"])
    op.create_table(
        "job_count_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        *columns(),
    )
    op.create_index("ix_job_count_changes_owner_key", "job_count_changes", ["owner_key"])
    # an owner's training time today: its jobs that ended since midnight, without reading the others
    op.create_index("ix_jobs_owner_id_finished_at", "jobs", ["owner_id", "finished_at"])
    fill_counts(postgresql)
    if postgresql:
        create_postgresql_triggers()
    else:
        create_sqlite_triggers()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("jobs", "metric_chunks", "job_weights"):
            op.execute(f"DROP FUNCTION {table}_counted() CASCADE")  # its triggers with it
    else:
        for name in ("jobs_counted_insert", "jobs_counted_update", "jobs_counted_delete"):
            op.execute(f"DROP TRIGGER {name}")
        for table in BLOBS:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_counted_{event}")
    op.drop_index("ix_jobs_owner_id_finished_at", table_name="jobs")
    op.drop_index("ix_job_count_changes_owner_key", table_name="job_count_changes")
    op.drop_table("job_count_changes")
    op.drop_index("ix_job_counts_status_owner_key", table_name="job_counts")
    op.drop_table("job_counts")

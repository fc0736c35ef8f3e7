"""job_counts.checkpoint_bytes and dataset_bytes: an owner's checkpoints and datasets counted as they are written

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-07

A succeeded job keeps its final state in checkpoints while it is retained (0035), so the storage-budget check at
every submit, which summed the lengths of the checkpoints of the owner's jobs (SQLite: every checkpoint, each
checked for its owner), read a table that grows with the history. Datasets have no cap on their number either.
Both are now counted as curves and weights are (0013, 0016): triggers append a change row in the transaction that
writes or deletes a checkpoint or a dataset, and a deleted job takes its checkpoint's bytes with it (its row
trigger reads them before the delete cascades). A dataset belongs to no job: its change rows have the status ''.
The upgrade fills both columns from the history.
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa

from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None

NO_JOB = "''"  # the status of a dataset's counters: it belongs to no job
INTO = ("INSERT INTO job_count_changes (owner_key, status, jobs, training_seconds, curve_bytes, weights_bytes,"
        " checkpoint_bytes, dataset_bytes, last_started_at)")


def revision_0013():
    """0013's trigger text, which this revision extends (and its downgrade restores)."""
    spec = importlib.util.spec_from_file_location("job_counts_0013", Path(__file__).with_name("0013_job_counts.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def deleted_job(counts, postgresql: bool) -> str:
    """VALUES of the change row of a deleted job: it leaves its (owner, status) with its blobs, checkpoint included."""
    blobs = ", ".join(f"-{counts.blob_bytes(table, 'OLD.id', postgresql)}"
                      for table in ("metric_chunks", "job_weights", "checkpoints"))
    return f"(coalesce(OLD.owner_id, ''), OLD.status, -1, -{counts.seconds('OLD', postgresql)}, {blobs}, 0, NULL)"


def sqlite_triggers(counts) -> None:
    op.execute("DROP TRIGGER jobs_counted_delete")
    op.execute(f"CREATE TRIGGER jobs_counted_delete BEFORE DELETE ON jobs BEGIN {INTO} VALUES"
               f" {deleted_job(counts, False)}; END")
    # a checkpoint's change goes to its job's (owner, status); none once its job is gone (the job's delete counted it)
    of_job = (f"{INTO} SELECT coalesce(owner_id, ''), status, 0, 0, 0, 0, {{delta}}, 0, NULL"
              f" FROM jobs WHERE id = {{job}}")
    for event, delta, job in (("INSERT", "length(NEW.data)", "NEW.job_id"),
                              ("UPDATE OF data", "length(NEW.data) - length(OLD.data)", "NEW.job_id"),
                              ("DELETE", "-length(OLD.data)", "OLD.job_id")):
        op.execute(f"CREATE TRIGGER checkpoints_counted_{event.split()[0].lower()} AFTER {event} ON checkpoints"
                   f" BEGIN {of_job.format(delta=delta, job=job)}; END")
    dataset = f"(coalesce({{row}}.owner_id, ''), {NO_JOB}, 0, 0, 0, 0, 0, {{sign}}length({{row}}.data), NULL)"
    new, old = dataset.format(row="NEW", sign=""), dataset.format(row="OLD", sign="-")
    for event, rows in (("INSERT", new), ("UPDATE OF data, owner_id", f"{old}, {new}"), ("DELETE", old)):
        op.execute(f"CREATE TRIGGER datasets_counted_{event.split()[0].lower()} AFTER {event} ON datasets"
                   f" BEGIN {INTO} VALUES {rows}; END")


def postgresql_jobs_function(counts, with_checkpoints: bool) -> None:
    """jobs_counted() as 0013 made it, its delete counting the job's checkpoint too (or not: the downgrade)."""
    insert = f"INSERT INTO job_count_changes ({counts.CHANGE_COLUMNS}) VALUES"
    deleted = (f"{INTO} VALUES {deleted_job(counts, True)}" if with_checkpoints
               else f"{insert} {counts.job_change('OLD', '-', True, deleted=True)}")
    op.execute(f"""
        CREATE OR REPLACE FUNCTION jobs_counted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                {insert} {counts.job_change('NEW', '', True)};
            ELSIF TG_OP = 'UPDATE' THEN
                {insert} {counts.job_change('OLD', '-', True)}, {counts.job_change('NEW', '', True)};
            ELSE
                {deleted};
                RETURN OLD;
            END IF;
            RETURN NULL;
        END $$""")


def postgresql_triggers(counts) -> None:
    postgresql_jobs_function(counts, with_checkpoints=True)
    # once a statement over its transition table, as 0016's curve and weight triggers (a sweep writes its members'
    # final states in one statement)
    def change(delta: str, rows: str) -> str:
        return (f"{INTO} SELECT coalesce(j.owner_id, ''), j.status, 0, 0, 0, 0, {delta}, 0, NULL"
                f" FROM {rows} JOIN jobs j ON j.id = n.job_id GROUP BY 1, 2")

    rewritten = change("sum(octet_length(n.data) - octet_length(o.data))", "new_rows n JOIN old_rows o USING (job_id)")
    op.execute(f"""
        CREATE FUNCTION checkpoints_counted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                {change("sum(octet_length(n.data))", "new_rows n")};
            ELSIF TG_OP = 'DELETE' THEN
                {change("-sum(octet_length(n.data))", "old_rows n")};
            ELSE
                {rewritten};
            END IF;
            RETURN NULL;
        END $$""")
    for event, tables in (("INSERT", "NEW TABLE AS new_rows"), ("DELETE", "OLD TABLE AS old_rows"),
                          ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows")):
        op.execute(f"CREATE TRIGGER checkpoints_counted_{event.lower()} AFTER {event} ON checkpoints"
                   f" REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION checkpoints_counted()")
    dataset = f"(coalesce({{row}}.owner_id, ''), {NO_JOB}, 0, 0, 0, 0, 0, {{sign}}octet_length({{row}}.data), NULL)"
    new, old = dataset.format(row="NEW", sign=""), dataset.format(row="OLD", sign="-")
    op.execute(f"""
        CREATE FUNCTION datasets_counted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                {INTO} VALUES {new};
            ELSIF TG_OP = 'DELETE' THEN
                {INTO} VALUES {old};
            ELSE
                {INTO} VALUES {old}, {new};
            END IF;
            RETURN NULL;
        END $$""")
    op.execute("CREATE TRIGGER datasets_counted AFTER INSERT OR DELETE OR UPDATE OF data, owner_id ON datasets"
               " FOR EACH ROW EXECUTE FUNCTION datasets_counted()")


def fill(postgresql: bool) -> None:
    """Both columns from the history, straight into job_counts (no change is pending for them yet)."""
    length = "octet_length" if postgresql else "length"
    into = ("INSERT INTO job_counts (owner_key, status, jobs, training_seconds, curve_bytes, weights_bytes,"
            " checkpoint_bytes, dataset_bytes, last_started_at)")
    op.execute(f"{into} SELECT coalesce(j.owner_id, ''), j.status, 0, 0, 0, 0, sum({length}(c.data)), 0, NULL"
               f" FROM checkpoints c JOIN jobs j ON j.id = c.job_id WHERE true GROUP BY 1, 2"
               f" ON CONFLICT (owner_key, status) DO UPDATE SET checkpoint_bytes = excluded.checkpoint_bytes")
    op.execute(f"{into} SELECT coalesce(owner_id, ''), {NO_JOB}, 0, 0, 0, 0, 0, sum({length}(data)), NULL"
               f" FROM datasets WHERE true GROUP BY 1"
               f" ON CONFLICT (owner_key, status) DO UPDATE SET dataset_bytes = excluded.dataset_bytes")


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in ("job_counts", "job_count_changes"):
        for name in ("checkpoint_bytes", "dataset_bytes"):
            op.add_column(table, sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
    fill(postgresql)
    counts = revision_0013()
    if postgresql:
        postgresql_triggers(counts)
    else:
        sqlite_triggers(counts)


def downgrade() -> None:
    counts = revision_0013()
    if op.get_bind().dialect.name == "postgresql":
        for table in ("checkpoints", "datasets"):
            op.execute(f"DROP FUNCTION {table}_counted() CASCADE")  # its triggers with it
        postgresql_jobs_function(counts, with_checkpoints=False)
    else:
        for table in ("checkpoints", "datasets"):
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_counted_{event}")
        op.execute("DROP TRIGGER jobs_counted_delete")
        op.execute(f"CREATE TRIGGER jobs_counted_delete BEFORE DELETE ON jobs BEGIN"
                   f" INSERT INTO job_count_changes ({counts.CHANGE_COLUMNS}) VALUES"
                   f" {counts.job_change('OLD', '-', False, deleted=True)}; END")
    for table in ("job_counts", "job_count_changes"):
        for name in ("checkpoint_bytes", "dataset_bytes"):
            op.drop_column(table, name)

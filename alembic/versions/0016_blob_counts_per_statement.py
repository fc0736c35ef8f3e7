"""PostgreSQL: curve and weight writes counted once a statement, not once a row

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

0013's triggers on metric_chunks and job_weights ran once per row: a retention tick deleting 200 jobs ran one for
each of their chunks (each finding its job gone: the job's own trigger counted them), 4x the tick's time. Once a
statement, over its transition table, they run once per job deleted, and once for a sweep's report of all its
members. SQLite keeps its row triggers (it has no others; they cost it far less).
"""

import importlib.util
from pathlib import Path

from alembic import op


revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

BLOBS = {"metric_chunks": ("curve_bytes", "job_id, first_step"), "job_weights": ("weights_bytes", "job_id")}
INTO = ("INSERT INTO job_count_changes (owner_key, status, jobs, training_seconds, curve_bytes, weights_bytes,"
        " last_started_at)")


def change(column: str, delta: str, rows: str) -> str:
    """One change row per (owner, status) of the jobs these rows belong to; none for a job gone (its delete
    counted them)."""
    curve, weights = (delta, "0") if column == "curve_bytes" else ("0", delta)
    return (f"{INTO} SELECT coalesce(j.owner_id, ''), j.status, 0, 0, {curve}, {weights}, NULL"
            f" FROM {rows} JOIN jobs j ON j.id = n.job_id GROUP BY 1, 2")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, (column, key) in BLOBS.items():
        op.execute(f"DROP FUNCTION {table}_counted() CASCADE")  # 0013's row triggers with it
        joined = f"new_rows n JOIN old_rows o USING ({key})"
        op.execute(f"""
            CREATE FUNCTION {table}_counted() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    {change(column, "sum(octet_length(n.data))", "new_rows n")};
                ELSIF TG_OP = 'DELETE' THEN
                    {change(column, "-sum(octet_length(n.data))", "old_rows n")};
                ELSE
                    {change(column, "sum(octet_length(n.data) - octet_length(o.data))", joined)};
                END IF;
                RETURN NULL;
            END $$""")
        for event, tables in (("INSERT", "NEW TABLE AS new_rows"), ("DELETE", "OLD TABLE AS old_rows"),
                              ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows")):
            op.execute(f"CREATE TRIGGER {table}_counted_{event.lower()} AFTER {event} ON {table}"
                       f" REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION {table}_counted()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in BLOBS:
        op.execute(f"DROP FUNCTION {table}_counted() CASCADE")
    path = Path(__file__).with_name("0013_job_counts.py")
    spec = importlib.util.spec_from_file_location("job_counts_0013", path)
    counts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(counts)
    counts.create_postgresql_blob_triggers()

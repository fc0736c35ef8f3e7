"""Where a retention tick's time goes: the 200 oldest ended jobs deleted, piece by piece, at N stored jobs.

    .venv/bin/python -m bench.retention_tick [--sizes 100000] [--backends sqlite postgresql] [--calls 6]
        [--random-ids]

The database is bench/fill.py's (bench/scale.py's fill), upgraded to head. SQLite: each piece of a tick (each
table the delete of a job cascades into, deleted first by job id, then the name's trigrams, then the jobs) in a
transaction of its own, with the service's pragmas and the WAL checkpointed before each: its milliseconds, the
WAL pages its commit wrote, and the milliseconds of the checkpoint that copies them into the file. Then whole
ticks (services/retention.py's statements in one transaction, the WAL checkpointed as SQLite does by itself),
with secure_delete on (Debian's default) and FAST (the service's) alternated tick by tick. PostgreSQL: the
delete's trigger times from EXPLAIN ANALYZE (each cascade is a trigger per deleted job). --calls ticks each.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import time

from bench.fill import filled_databases
from bench.scale import arguments

OLDEST = "SELECT id FROM jobs WHERE finished_at IS NOT NULL ORDER BY finished_at, id LIMIT 200"
CASCADES = ("metric_chunks", "job_weights", "checkpoints", "job_tags", "job_params", "job_attempts",
            "webhook_deliveries")
NAME_TRIGRAMS = ("INSERT INTO job_name_trigrams (job_name_trigrams, rowid, name) SELECT 'delete', n.id, j.name"
                 " FROM job_names n JOIN jobs j ON j.id = n.job_id WHERE j.id IN ({})")
WAL_FRAME = 4096 + 24


def sqlite_connection(path: str, secure_delete: str) -> sqlite3.Connection:
    """service/db.py's pragmas (secure_delete as asked), in autocommit."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", f"secure_delete={secure_delete}"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def sqlite_pieces(path: str, ticks: int) -> list[list]:
    """Per piece: median ms, WAL pages and checkpoint ms over `ticks` ticks."""
    conn = sqlite_connection(path, "FAST")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    spent: dict[str, list[tuple[float, float, float]]] = {}
    for _ in range(ticks):
        ids = [row[0] for row in conn.execute(OLDEST)]
        marks = ",".join("?" * len(ids))
        pieces = [(table, f"DELETE FROM {table} WHERE job_id IN ({marks})") for table in CASCADES]
        pieces += [("job_name_trigrams (FTS5)", NAME_TRIGRAMS.format(marks)),
                   ("job_names", f"DELETE FROM job_names WHERE job_id IN ({marks})"),
                   ("jobs (its indexes, counters trigger)", f"DELETE FROM jobs WHERE id IN ({marks})")]
        for label, sql in pieces:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(sql, ids)
            conn.execute("COMMIT")
            ms = (time.perf_counter() - started) * 1000
            pages = os.path.getsize(f"{path}-wal") / WAL_FRAME
            started = time.perf_counter()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            spent.setdefault(label, []).append((ms, pages, (time.perf_counter() - started) * 1000))
    conn.close()
    return [[label, *(statistics.median(v[i] for v in values) for i in range(3))] for label, values in spent.items()]


def sqlite_ticks(path: str, ticks: int) -> list[list]:
    """Whole ticks, secure_delete on and FAST alternated, each on a connection of its own kept open (as the
    service's pool keeps them): p50 and max ms of each."""
    spent: dict[str, list[float]] = {"1": [], "FAST": []}
    conns = {secure: sqlite_connection(path, secure) for secure in spent}
    for _ in range(ticks):
        for secure, times in spent.items():
            conn = conns[secure]
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            ids = [row[0] for row in conn.execute(OLDEST)]
            marks = ",".join("?" * len(ids))
            conn.execute(f"DELETE FROM idempotency_keys WHERE location IN ({marks})", [f"/v1/jobs/{i}" for i in ids])
            conn.execute(f"UPDATE alias_assignments SET released_at = CURRENT_TIMESTAMP WHERE job_id IN ({marks})"
                         " AND released_at IS NULL", ids)
            conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids)
            conn.execute("COMMIT")
            times.append((time.perf_counter() - started) * 1000)
    for conn in conns.values():
        conn.close()
    return [[f"whole tick, secure_delete={secure}", statistics.median(v), max(v)] for secure, v in spent.items()]


def postgresql_triggers(url: str, ticks: int) -> list[list]:
    """The delete's own time and each trigger's (median ms over `ticks`), from EXPLAIN ANALYZE, committed."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    spent: dict[str, list[float]] = {}
    with engine.connect() as conn:
        for _ in range(ticks):
            ids = list(conn.execute(text(OLDEST)).scalars())
            started = time.perf_counter()
            plan = conn.execute(text("EXPLAIN ANALYZE DELETE FROM jobs WHERE id = ANY(:ids)"), {"ids": ids}).scalars()
            conn.commit()
            spent.setdefault("whole delete, committed", []).append((time.perf_counter() - started) * 1000)
            for line in plan:
                if line.startswith("Trigger"):
                    name, ms = line.split(": time=")
                    spent.setdefault(name, []).append(float(ms.split()[0]))
    engine.dispose()
    return [[label, statistics.median(values)] for label, values in spent.items()]


def main() -> None:
    from bench.common import header, load_average, print_table
    from service.migrations import upgrade

    args = arguments(__doc__, [100_000], None, None)
    ids = "uuid4" if args.random_ids else "UUIDv7"
    header(f"A retention tick of 200, piece by piece: sizes {args.sizes}, {ids} job ids, {args.calls} ticks each")
    print(f"load average before: {load_average()}\n")
    for db in filled_databases(args, "retention"):
        upgrade(db.url)
        print(f"### {db.backend}, {db.size} jobs (load {load_average()})\n")
        if db.backend == "sqlite":
            path = db.url.removeprefix("sqlite:///")
            print_table(["piece (own transaction)", "ms", "WAL pages", "checkpoint ms"], sqlite_pieces(path, args.calls))
            print()
            print_table(["tick (one transaction)", "p50 ms", "max ms"], sqlite_ticks(path, args.calls))
        else:
            print_table(["delete of 200 jobs", "median ms"], postgresql_triggers(db.url, args.calls))
        print()
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()

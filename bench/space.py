"""Space given back by deleting 1000 jobs, on SQLite and PostgreSQL.

Each job holds a curve (10 chunks of 4.8 KB: 1000 points x 6 columns) and 20 KB of weights, as random
(incompressible) bytes. The jobs are deleted one per transaction, as `DELETE /v1/jobs/{id}` does. Then:
SQLite: the maintenance loop's reclaim step (VACUUM once, then incremental vacuum), and the files' sizes;
PostgreSQL: wait for autovacuum, and write the same volume again to see whether the space is reused.

    .venv/bin/python -m bench.space [--jobs 1000] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

CHUNKS, CHUNK_BYTES, WEIGHT_BYTES = 10, 4800, 20_000


def use_database(url: str) -> None:
    """Point fitserve's one engine at `url` and create the schema."""
    os.environ["FITSERVE_DATABASE_URL"] = url
    from service.db import get_engine, get_sessionmaker
    from service.migrations import upgrade
    from service.settings import get_settings

    for cached in (get_settings, get_engine, get_sessionmaker):
        cached.cache_clear()
    upgrade(url)


def fill(n: int) -> list[str]:
    from service.db import session_scope
    from service.models import Job, JobWeights, MetricChunk

    ids = []
    with session_scope() as s:
        for _ in range(n):
            job = Job(spec={}, epochs=1000, status="succeeded")
            s.add(job)
            s.flush()
            ids.append(job.id)
            s.add(JobWeights(job_id=job.id, data=os.urandom(WEIGHT_BYTES)))
            s.add_all(MetricChunk(job_id=job.id, first_step=i * 100 + 1, last_step=(i + 1) * 100, count=100,
                                  columns="step,epoch,loss", data=os.urandom(CHUNK_BYTES)) for i in range(CHUNKS))
    return ids


def delete_each(ids: list[str]) -> float:
    from service.db import session_scope
    from service.repositories.lifecycle import delete_jobs

    start = time.perf_counter()
    for job_id in ids:
        with session_scope() as s:
            delete_jobs(s, [job_id])
    return (time.perf_counter() - start) / len(ids)


def sqlite_sizes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def run_sqlite(n: int, made_before: bool) -> list[tuple[str, str]]:
    """`made_before`: a file made before incremental vacuum, which the maintenance loop switches with one VACUUM."""
    import sqlite3

    from service.services.retention import reclaim_space
    from service.settings import get_settings

    path = Path(tempfile.mkdtemp(prefix="fitserve-space-")) / "fitserve.db"
    if made_before:
        with sqlite3.connect(path) as older:
            older.execute("CREATE TABLE made_before (id INTEGER)")
    use_database(f"sqlite:///{path}")
    ids = fill(n)
    full = sqlite_sizes(path)
    per_delete = delete_each(ids)
    deleted = sqlite_sizes(path)
    rounds, start = 0, time.perf_counter()
    while reclaim_space(get_settings()):
        rounds += 1
    reclaimed = sqlite_sizes(path)
    refilled = fill(n) and sqlite_sizes(path)
    kind = "a file made before incremental vacuum" if made_before else "a new file"
    return [
        (f"SQLite, {kind}: file + WAL with the jobs", mib(full)),
        ("  after deleting them", mib(deleted)),
        (f"  after the maintenance loop's reclaim ({rounds} rounds, {time.perf_counter() - start:.2f} s)", mib(reclaimed)),
        ("  after writing as many jobs again", mib(refilled)),
        ("  one DELETE's transaction", f"{per_delete * 1000:.1f} ms"),
    ]


def pg_size(engine, what: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT {what}")).scalar()


def run_postgres(admin_url: str, n: int, wait_s: float) -> list[tuple[str, str]]:
    from sqlalchemy.engine import make_url

    name = f"fitserve_space_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        use_database(url)
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        sizes = "pg_database_size(current_database())"
        tables = "pg_total_relation_size('metric_chunks') + pg_total_relation_size('job_weights')"
        ids = fill(n)
        full_db, full_tables = pg_size(engine, sizes), pg_size(engine, tables)
        per_delete = delete_each(ids)
        deleted_db, deleted_tables = pg_size(engine, sizes), pg_size(engine, tables)
        start, vacuumed = time.monotonic(), None
        while time.monotonic() - start < wait_s:
            with engine.connect() as conn:
                counts = conn.execute(text(
                    "SELECT sum(autovacuum_count) FROM pg_stat_user_tables WHERE relname IN ('metric_chunks', 'job_weights')"
                )).scalar()
            if counts and counts >= 2:
                vacuumed = time.monotonic() - start
                break
            time.sleep(2)
        if vacuumed is None:  # autovacuum did not come in time: what it would do, by hand
            with engine.connect() as conn:
                conn.execute(text("VACUUM metric_chunks, job_weights"))
        fill(n)
        refilled_db, refilled_tables = pg_size(engine, sizes), pg_size(engine, tables)
        engine.dispose()
        how = f"autovacuum after {vacuumed:.0f} s" if vacuumed is not None else f"no autovacuum in {wait_s:.0f} s: VACUUM"
        return [
            ("PostgreSQL: database / curve+weight tables with the jobs", f"{mib(full_db)} / {mib(full_tables)}"),
            ("  after deleting them", f"{mib(deleted_db)} / {mib(deleted_tables)}"),
            (f"  after writing as many jobs again ({how})", f"{mib(refilled_db)} / {mib(refilled_tables)}"),
            ("  one DELETE's transaction", f"{per_delete * 1000:.1f} ms"),
        ]
    finally:
        from service.db import get_engine

        get_engine().dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--postgres", default=None, help="an admin URL; the run uses a database of its own")
    parser.add_argument("--autovacuum-wait", type=float, default=180.0)
    args = parser.parse_args()
    rows = run_sqlite(args.jobs, made_before=False) + run_sqlite(args.jobs, made_before=True)
    if args.postgres:
        rows += run_postgres(args.postgres, args.jobs, args.autovacuum_wait)
    width = max(len(label) for label, _ in rows)
    print(f"{args.jobs} jobs, each {CHUNKS * CHUNK_BYTES + WEIGHT_BYTES:,} bytes of curve and weights")
    for label, value in rows:
        print(f"{label:{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

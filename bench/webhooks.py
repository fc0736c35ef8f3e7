"""Webhooks flat at a million jobs: what each poll of the webhook thread asks the database, as stored jobs grow.

    .venv/bin/python -m bench.webhooks [--sizes 10000 1000000] [--backends sqlite postgresql] [--calls 20]

A database at head gets N jobs by SQL (every 20th queued, the others ended), 1,000 of them queued with a
notify (their notification open, nothing to tell yet), and N/10 deliveries of which 100 are pending and due.
Each of the poll's queries (services/webhooks.py `collect_events`, services/deliveries.py `claim_due`) then runs
--calls times on one connection: its median time, and the rows it found. The smallest size is the baseline: a
flat poll costs at N what it costs there.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bench.common import header, print_table
from service.db import make_engine
from service.migrations import upgrade
from service.models import utcnow
from service.repositories import webhooks as repo

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
QUERIES = {  # the poll's statements
    "jobs moved": lambda s: repo.jobs_moved(s, 200),
    "cancelled open sweeps": repo.cancelled_open_sweeps,
    "due deliveries": lambda s: repo.due_deliveries(s, utcnow(), [], 50),
}
SERIES = {  # 1..n as rows to insert from
    "postgresql": "SELECT g AS n FROM generate_series(1, {n}) g",
    "sqlite": "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {n}) SELECT n FROM g",
}


def fill(engine, n: int) -> None:
    pg = engine.dialect.name == "postgresql"
    series, key = SERIES[engine.dialect.name], "md5(n::text)" if pg else "printf('%032d', n)"
    now, false = ("now()", "false") if pg else ("CURRENT_TIMESTAMP", "0")
    open_every = n // 1000  # 1,000 queued jobs that notify, whatever n: the open work a poll reads
    due_every = n // 10 // 100  # and 100 deliveries due
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO jobs (id, status, spec, epochs, epoch, step, attempt, max_attempts, cancel_requested,"
            " created_at, priority, interruptions, tags, notified_status)"
            f" SELECT {key}, CASE WHEN n % 20 = 0 OR n % {open_every} = 0 THEN 'queued' ELSE 'succeeded' END, '{{}}',"
            f" 1, 0, 0, 1, 3, {false}, {now}, 0, 0, '{{}}', CASE WHEN n % {open_every} = 0 THEN 'queued' END"
            f" FROM ({series.format(n=n)}) s"))
        conn.execute(text(
            "INSERT INTO webhook_deliveries (id, owner_key, event, url, body, status, attempts, next_attempt_at,"
            f" created_at) SELECT {key}, '', 'succeeded', 'http://x/', '{{}}', CASE WHEN n % {due_every} = 0 THEN"
            f" 'pending' ELSE 'delivered' END, 1, CASE WHEN n % {due_every} = 0 THEN {now} END, {now}"
            f" FROM ({series.format(n=n // 10)}) s"))
        if pg:
            conn.execute(text("ANALYZE"))


def measure(url: str, n: int, calls: int) -> list[list]:
    upgrade(url)
    engine = make_engine(url)
    started = time.perf_counter()
    fill(engine, n)
    print(f"  {engine.dialect.name} {n:,} jobs filled in {time.perf_counter() - started:.0f} s")
    rows = []
    with Session(engine) as session:
        for name, query in QUERIES.items():
            found = query(session)
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                query(session)
                times.append((time.perf_counter() - start) * 1000)
            rows.append([engine.dialect.name, f"{n:,}", name, len(found), f"{statistics.median(times):.2f}"])
    engine.dispose()
    return rows


def run(backend: str, n: int, calls: int, folder: Path, postgres: str) -> list[list]:
    if backend == "sqlite":
        return measure(f"sqlite:///{folder / f'hooks-{n}.db'}", n, calls)
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    name = f"fitserve_hooks_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        return measure(make_url(postgres).set(database=name).render_as_string(hide_password=False), n, calls)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    header(f"Webhook polls at {', '.join(f'{n:,}' for n in args.sizes)} jobs")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends:
            for n in sorted(args.sizes):
                rows += run(backend, n, args.calls, Path(folder), args.postgres)
    print_table(["backend", "jobs", "query", "rows", "median ms"], rows)


if __name__ == "__main__":
    main()

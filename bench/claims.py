"""Claim throughput: jobs claimed per second by N worker processes, on PostgreSQL and on SQLite.

    .venv/bin/python -m bench.claims [--jobs 2000] [--workers 1 2 4 8] [--postgres-url URL]

Each round gets a fresh database (a SQLite file, or a PostgreSQL database created on the server at
--postgres-url and dropped after), migrated, holding --jobs queued jobs. Then N processes do the
worker loop without the training: `claim_next_job`, then `finish_job`, until the queue is empty.
Jobs per second runs from the first claim to the last. Baseline: SQLite with one worker. Every job
must have been claimed exactly once, or the round fails.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
import uuid
from datetime import timedelta

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.common import header, print_table

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def claim_until_empty(url: str, start, results) -> None:
    """One worker process: claim and close jobs until none is left; reports (count, first, last)."""
    os.environ["FITSERVE_DATABASE_URL"] = url  # read by the settings on first use, in this fresh process
    from service.db import session_scope
    from service.models import JobStatus
    from service.repositories import jobs as job_repo

    worker_id = f"bench-{os.getpid()}"
    count, first, last = 0, None, None
    start.wait()
    while True:
        with session_scope() as s:
            job = job_repo.claim_next_job(s, worker_id, 30.0)
        if job is None:
            break
        with session_scope() as s:
            job_repo.finish_job(s, job.id, worker_id, job.attempt, JobStatus.SUCCEEDED)
        first = first or time.time()
        count, last = count + 1, time.time()
    results.put((count, first, last))


def fill(url: str, n_jobs: int) -> None:
    from service.db import make_engine
    from service.migrations import upgrade
    from service.models import Job, new_id, utcnow

    upgrade(url)
    engine = make_engine(url)
    now = utcnow()
    rows = [
        {"id": new_id(), "status": "queued", "spec": {}, "epochs": 1, "created_at": now + timedelta(microseconds=i)}
        for i in range(n_jobs)
    ]
    with engine.begin() as conn:
        conn.execute(Job.__table__.insert(), rows)
    engine.dispose()


def run_round(url: str, n_jobs: int, n_workers: int) -> float:
    """Jobs claimed per second by `n_workers` processes on a database holding `n_jobs` queued jobs."""
    fill(url, n_jobs)
    ctx = mp.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=claim_until_empty, args=(url, start, results)) for _ in range(n_workers)]
    for proc in procs:
        proc.start()
    time.sleep(2.0)  # let every process import before the clock starts
    start.set()
    reports = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    engine = create_engine(url)
    with engine.connect() as conn:
        attempts = conn.execute(text("SELECT attempt, count(*) FROM jobs GROUP BY attempt")).all()
    engine.dispose()
    assert [tuple(row) for row in attempts] == [(1, n_jobs)], f"a job was claimed twice or never: {attempts}"
    assert sum(count for count, _, _ in reports) == n_jobs
    firsts = [first for count, first, _ in reports if count]
    lasts = [last for count, _, last in reports if count]
    return n_jobs / (max(lasts) - min(firsts))


class PostgresDatabase:
    """A fresh database on a PostgreSQL server, dropped on exit."""

    def __init__(self, admin_url: str):
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.name = f"fitserve_bench_{uuid.uuid4().hex[:12]}"
        self.url = make_url(admin_url).set(database=self.name).render_as_string(hide_password=False)

    def __enter__(self) -> str:
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {self.name}"))
        return self.url

    def __exit__(self, *exc) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"))
        self.admin.dispose()


def measure(backend: str, n_jobs: int, n_workers: int, postgres_url: str) -> float:
    if backend == "postgresql":
        with PostgresDatabase(postgres_url) as url:
            return run_round(url, n_jobs, n_workers)
    with tempfile.TemporaryDirectory(prefix="fitserve-bench-") as tmp:
        return run_round(f"sqlite:///{tmp}/claims.db", n_jobs, n_workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--postgres-url", default=os.environ.get("FITSERVE_TEST_POSTGRES_URL", DEFAULT_POSTGRES))
    args = parser.parse_args()

    header(f"Claim throughput: {args.jobs} queued jobs, claimed and closed by N worker processes")
    baseline = measure("sqlite", args.jobs, 1, args.postgres_url)
    rows = []
    for backend in ("sqlite", "postgresql"):
        for n in args.workers:
            rate = baseline if (backend, n) == ("sqlite", 1) else measure(backend, args.jobs, n, args.postgres_url)
            rows.append([backend, n, args.jobs, rate, rate / baseline])
    print_table(["back end", "workers", "jobs", "jobs/s", "vs SQLite x1"], rows)


if __name__ == "__main__":
    main()

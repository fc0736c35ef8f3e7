"""What an idle worker's poll costs: a claim when no job is queued, on SQLite and on PostgreSQL.

    .venv/bin/python -m bench.idle_claims [--claims 500] [--rounds 5] [--stored 10000] [--postgres-url URL]

Every worker with nothing to do claims once a poll (FITSERVE_POLL_SECONDS, and whenever a wake-up arrives), so a
pool's idle cost is this figure times its workers times the polls a second. Each back end gets a fresh database,
migrated, holding --stored finished jobs and none queued. Two ways are timed in this process, alternating round
by round (the machine's drift falls on both alike):
- baseline: the claim's write transaction, as every poll opened it before (`claim_next_job` in a session);
- claim: `workers.claims.claim`, which reads first whether any job is queued and opens no transaction if not.
Printed: CPU milliseconds of this process per claim (the median round; PostgreSQL's own backend CPU is not in it)
and wall milliseconds, and baseline / claim.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta

from bench.claims import DEFAULT_POSTGRES, PostgresDatabase
from bench.common import header, load_average, print_table


def store_finished(url: str, n_jobs: int) -> None:
    from service.db import make_engine
    from service.migrations import upgrade
    from service.models import Job, new_id, utcnow

    upgrade(url)
    now = utcnow()
    rows = [
        {"id": new_id(), "status": "succeeded", "spec": {}, "epochs": 1, "created_at": now + timedelta(microseconds=i)}
        for i in range(n_jobs)
    ]
    engine = make_engine(url)
    with engine.begin() as conn:
        if rows:
            conn.execute(Job.__table__.insert(), rows)
    engine.dispose()


def timed(claim_once, claims: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per claim over `claims` claims."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(claims):
        assert not claim_once(), "a job was claimed: the queue must stay empty"
    return 1e3 * (time.process_time() - cpu) / claims, 1e3 * (time.perf_counter() - wall) / claims


def measure(url: str, stored: int, claims: int, rounds: int) -> dict[str, tuple[float, float]]:
    """In a fresh process (its settings and engine are this database's)."""
    os.environ["FITSERVE_DATABASE_URL"] = url
    from service.db import session_scope
    from service.repositories import jobs as job_repo
    from service.settings import get_settings
    from workers.claims import claim, running_cap

    store_finished(url, stored)
    settings = get_settings()

    def transaction():
        with session_scope() as s:
            return job_repo.claim_next_job(s, "bench", settings.LEASE_SECONDS, settings.CLAIM_ORDER,
                                           running_cap(settings))

    ways = {"baseline": transaction, "claim": lambda: claim("bench", settings)}
    for way in ways.values():  # connections opened, statements compiled
        timed(way, 20)
    times = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            times[name].append(timed(way, claims))
    return {name: (statistics.median(c for c, _ in t), statistics.median(w for _, w in t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, default=500, help="claims a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stored", type=int, default=10_000, help="finished jobs in the database")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    header("An idle worker's claim (bench/idle_claims.py)")
    print(f"{args.claims} claims a round, {args.rounds} rounds alternating, {args.stored} finished jobs stored, "
          f"none queued; load average before: {load_average()}\n")
    rows = []
    for backend in args.backends:
        with contextlib.ExitStack() as stack:
            if backend == "postgresql":
                url = stack.enter_context(PostgresDatabase(args.postgres_url))
            else:
                url = f"sqlite:///{stack.enter_context(tempfile.TemporaryDirectory(prefix='fitserve-bench-'))}/idle.db"
            pool = stack.enter_context(ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")))
            got = pool.submit(measure, url, args.stored, args.claims, args.rounds).result()
        (base_cpu, base_wall), (cpu, wall) = got["baseline"], got["claim"]
        rows.append([backend, base_cpu, cpu, base_cpu / cpu, base_wall, wall, base_wall / wall])
    print_table(["back end", "baseline CPU ms", "claim CPU ms", "CPU ratio", "baseline wall ms", "claim wall ms",
                 "wall ratio"], rows)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()

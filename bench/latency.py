"""Submit to `running` with an idle, warm worker: p50 and p99 on SQLite and on PostgreSQL.

    .venv/bin/python -m bench.latency [--jobs 200] [--postgres-url URL]

`fitserve serve` with one worker on each back end (a fresh SQLite file; a fresh PostgreSQL database on
--postgres-url, dropped after). Each round waits until the worker is idle again (the previous job
finished, then IDLE_SECONDS more, so it waits on its wake-up), then submits a one-epoch job. Latency:
from just before the POST to the job's `started_at` (its claim), both on this machine's clock; also
from `created_at` (the API's insert) to `started_at`. Reference in the same run: the POST's own round
trip (submit to 201), which no claim can beat. Targets: p50 under 20 ms, p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import datetime

from bench.claims import DEFAULT_POSTGRES, PostgresDatabase
from bench.common import Service, header, load_average, print_table
from bench.fairness import TINY

SPEC = {**TINY, "data": {**TINY["data"], "n": 20}, "epochs": 1}  # bench.fairness's tiny job, as short as a job gets
IDLE_SECONDS = 0.1


def stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rounds(service: Service, n_jobs: int) -> dict[str, list[float]]:
    ms = {"post": [], "submit_to_running": [], "created_to_running": []}
    for _ in range(n_jobs):
        time.sleep(IDLE_SECONDS)
        sent = time.time()
        job_id = service.submit(SPEC)
        ms["post"].append((time.time() - sent) * 1e3)
        job = service.wait(job_id, poll=0.005)
        ms["submit_to_running"].append((stamp(job["started_at"]) - sent) * 1e3)
        ms["created_to_running"].append((stamp(job["started_at"]) - stamp(job["created_at"])) * 1e3)
    return ms


def measure(backend: str, n_jobs: int, postgres_url: str) -> list[list]:
    if backend == "postgresql":
        with PostgresDatabase(postgres_url) as url, Service(workers=1, FITSERVE_DATABASE_URL=url) as service:
            ms = rounds(service, n_jobs)
    else:
        with Service(workers=1) as service:
            ms = rounds(service, n_jobs)
    return [
        [backend, what, n_jobs, statistics.median(values), percentile(values, 0.99), max(values)]
        for what, values in ms.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--postgres-url", default=os.environ.get("FITSERVE_TEST_POSTGRES_URL", DEFAULT_POSTGRES))
    args = parser.parse_args()
    header(f"Submit to running with an idle warm worker ({args.jobs} jobs, one at a time)")
    print(f"load average before: {load_average()}\n")
    rows = [row for backend in ("sqlite", "postgresql") for row in measure(backend, args.jobs, args.postgres_url)]
    print_table(["back end", "interval", "jobs", "p50 ms", "p99 ms", "max ms"], rows)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()

"""Fair share between owners: how long a second owner waits behind a backlog, and what a claim costs.

    .venv/bin/python -m bench.fairness [--backlog 500] [--theirs 5] [--queued 10000] [--owners 100]

1. Waits. `fitserve serve --workers 1` on SQLite with keys for owners A and B: A queues --backlog tiny
   jobs, then B submits --theirs. B's wait to start (its first job's started_at - its submit) and to
   finish (its last job's finished_at - its first submit), with FITSERVE_CLAIM_ORDER=fair against
   fifo (the claim before fair share, oldest first), in the same run. The target: B's first job starts
   within one job's duration of being submitted: A's median job, claim to claim (the job's training and
   what the worker does around it), and its training alone (started_at to finished_at).
2. Claim cost. A database holding --queued queued jobs of --owners owners (and as many finished ones,
   so each owner has a history), SQLite and PostgreSQL: milliseconds per claim (its transaction, one
   process, one claim after another, each job left running), fair against fifo, and fair under
   FITSERVE_MAX_RUNNING_PER_OWNER (one more statement: the owner's running count, under its lock).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta

from sqlalchemy import text

from bench.claims import DEFAULT_POSTGRES, PostgresDatabase
from bench.common import ROOT, Service, header, print_table, seconds_between

TINY = {
    "model": {"kind": "linear", "in_features": 1, "out_features": 1},
    "task": "regression",
    "data": {"source": "synthetic", "generator": "linear", "n": 50, "slope": 2.0, "intercept": 1.0},
    "loss": "mse",
    "optimizer": {"kind": "sgd", "lr": 0.05},
    "epochs": 50,  # some tens of milliseconds: the worker does not drain A's queue as fast as A fills it
}


class KeyedService(Service):
    """A Service whose callers are owners with keys: A (the client's default) and B."""

    def __init__(self, **env: str):
        super().__init__(workers=1, **env)
        self.keys = {owner: self.create_key(owner) for owner in ("A", "B")}
        self.client.headers["Authorization"] = f"Bearer {self.keys['A']}"

    def create_key(self, owner: str) -> str:
        cmd = [sys.executable, "-m", "fitserve.cli", "keys", "create", "--owner", owner]
        done = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, check=True)
        return done.stdout.strip().splitlines()[-1]

    def submit_as(self, owner: str, spec: dict) -> str:
        response = self.client.post("/v1/jobs", json=spec, headers={"Authorization": f"Bearer {self.keys[owner]}"})
        response.raise_for_status()
        return response.json()["id"]

    def job(self, job_id: str, owner: str) -> dict:
        return self.client.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {self.keys[owner]}"}).json()

    def wait_as(self, owner: str, job_id: str, timeout: float = 3600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id, owner)
            if job["status"] == "succeeded":
                return job
            if job["status"] in ("failed", "cancelled"):
                raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} not done after {timeout}s")


def measure_waits(order: str, backlog: int, theirs: int) -> dict:
    """B's waits behind A's backlog, under one claim order."""
    with KeyedService(FITSERVE_CLAIM_ORDER=order) as service:
        a_ids = [service.submit_as("A", TINY) for _ in range(backlog)]
        b_ids = [service.submit_as("B", TINY) for _ in range(theirs)]
        b_jobs = [service.wait_as("B", job_id) for job_id in b_ids]
        ran_or_not = [service.job(job_id, "A") for job_id in a_ids]
        ran = [job for job in ran_or_not if job["finished_at"] is not None]
    first_submit = min(job["created_at"] for job in b_jobs)
    starts = sorted(job["started_at"] for job in ran)
    return {
        "start": min(seconds_between(job["created_at"], job["started_at"]) for job in b_jobs),
        "finish": max(seconds_between(first_submit, job["finished_at"]) for job in b_jobs),
        "a_done": len(ran),
        "backlog": sum(job["started_at"] is None or seconds_between(first_submit, job["started_at"]) > 0
                       for job in ran_or_not),
        "job": statistics.median(seconds_between(job["started_at"], job["finished_at"]) for job in ran),
        # claim to claim: a job's training plus what the worker does around it (finish, claim, load the data)
        "cycle": statistics.median(seconds_between(a, b) for a, b in zip(starts, starts[1:])),
    }


def fill(url: str, queued: int, owners: int) -> None:
    """`queued` queued jobs and as many finished ones, spread over `owners` owners, oldest first."""
    from sqlalchemy.orm import Session

    from service.db import make_engine
    from service.migrations import upgrade
    from service.models import Job, new_id, utcnow
    from service.repositories import job_counts

    upgrade(url)
    engine = make_engine(url)
    now = utcnow()
    rows = []
    for i in range(2 * queued):
        done = i < queued
        at = now - timedelta(hours=1) + timedelta(microseconds=i)
        rows.append({
            "id": new_id(), "owner_id": f"owner{i % owners:03d}", "status": "succeeded" if done else "queued",
            "spec": {}, "epochs": 1, "created_at": at, "priority": 0, "tags": {}, "attempt": int(done),
            "started_at": at if done else None, "finished_at": at if done else None,
        })
    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(Job.__table__.insert(), rows[start:start + 5000])
    with Session(engine) as session, session.begin():  # as a running service's maintenance tick has
        job_counts.fold(session)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE jobs"))  # the planner sees the jobs as a running service's would
    engine.dispose()


def time_claims(url: str, order: str, max_running: int | None, claims: int) -> list[float]:
    """Milliseconds of each of `claims` claims, one after another (each a transaction of its own)."""
    from sqlalchemy.orm import Session

    from service.db import make_engine
    from service.repositories import jobs as job_repo

    engine = make_engine(url)
    spent = []
    for _ in range(claims):
        started = time.perf_counter()
        with Session(engine) as session, session.begin():
            job = job_repo.claim_next_job(session, "bench", 30.0, order, max_running)
        spent.append((time.perf_counter() - started) * 1000)
        assert job is not None
    engine.dispose()
    return spent


def claim_cost(backend: str, postgres_url: str, queued: int, owners: int, claims: int) -> list[list]:
    rows = []
    for order, cap in (("fifo", None), ("fair", None), ("fair", 1000)):
        if backend == "postgresql":
            with PostgresDatabase(postgres_url) as url:
                fill(url, queued, owners)
                spent = time_claims(url, order, cap, claims)
        else:
            with tempfile.TemporaryDirectory(prefix="fitserve-bench-") as tmp:
                url = f"sqlite:///{tmp}/claims.db"
                fill(url, queued, owners)
                spent = time_claims(url, order, cap, claims)
        spent.sort()
        label = order if cap is None else f"{order}, with a running cap"
        rows.append([backend, label, queued, owners, statistics.median(spent), spent[int(0.95 * len(spent))]])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=500)
    parser.add_argument("--theirs", type=int, default=5)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--owners", type=int, default=100)
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--postgres-url", default=os.environ.get("FITSERVE_TEST_POSTGRES_URL", DEFAULT_POSTGRES))
    args = parser.parse_args()

    header(f"Fair share: owner A queues {args.backlog} tiny jobs, then owner B submits {args.theirs} "
           "(1 worker, SQLite)")
    waits = {order: measure_waits(order, args.backlog, args.theirs) for order in ("fifo", "fair")}
    rows = [
        [order, w["backlog"], w["start"], w["finish"], w["job"], w["cycle"], w["start"] / w["cycle"], w["a_done"]]
        for order, w in waits.items()
    ]
    print_table(["claim order", "A's queued at B's submit", "B waits to start (s)", "B waits to finish (s)",
                 "one job trains (s)", "one job, claim to claim (s)", "start wait / claim to claim",
                 "A's done when B is"], rows)
    fifo, fair = waits["fifo"], waits["fair"]
    print(f"\nfair vs fifo: B starts {fifo['start'] / fair['start']:.0f}x sooner, "
          f"finishes {fifo['finish'] / fair['finish']:.0f}x sooner\n")

    print(f"Claim cost: {args.queued} queued jobs (and {args.queued} finished) of {args.owners} owners, "
          f"{args.claims} claims one after another\n")
    rows = []
    for backend in ("sqlite", "postgresql"):
        rows += claim_cost(backend, args.postgres_url, args.queued, args.owners, args.claims)
    print_table(["back end", "claim order", "queued", "owners", "ms per claim (median)", "p95"], rows)


if __name__ == "__main__":
    main()

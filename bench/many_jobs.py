"""Throughput of many tiny jobs submitted one by one, and what each job costs beyond its training.

    .venv/bin/python -m bench.many_jobs [--jobs 200] [--epochs 50] [--repeat 2]

Baselines, in this process, one job after another (1 torch thread, as each worker of two gets): the
worker's trainer alone (no database, no HTTP) and the hand-written loop (bench/loops.py).
Through the service: 200 jobs, a mix of 8 compatible configurations (learning rate x momentum, each
job its own seed) from 4 owners, each owner submitting its jobs separately from a thread of its own
(`POST /v1/jobs` per job), with auto-batching on (FITSERVE_AUTO_BATCH=auto, the default) and off.
Jobs per minute two ways: wall (first submit to last `finished_at`, what the users wait) and span
(first `started_at` to last `finished_at`, the workers' share). Best of `--repeat` per row.
Part 2, in this process over its own SQLite file: one job's claim, set-up, training and final write.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from bench.common import Service, header, load_average, print_table, seconds_between
from bench.loops import hand_loop

SPEC = {
    "model": {"kind": "linear", "in_features": 1, "out_features": 1},
    "task": "regression",
    "data": {"source": "synthetic", "generator": "linear", "n": 50, "slope": 2.0, "intercept": 1.0, "noise": 0.1},
    "loss": "mse",
    "optimizer": {"kind": "sgd", "lr": 0.05},
}
OWNERS = ("ada", "bob", "cy", "dee")
CONFIGS = [(lr, momentum) for lr in (0.01, 0.02, 0.05, 0.1) for momentum in (0.0, 0.9)]


def job_specs(n_jobs: int, epochs: int) -> list[dict]:
    """Job i: configuration i % 8, seed i."""
    return [
        {**SPEC, "epochs": epochs, "seed": i, "optimizer": {"kind": "sgd", "lr": lr, "momentum": momentum}}
        for i, (lr, momentum) in ((i, CONFIGS[i % len(CONFIGS)]) for i in range(n_jobs))
    ]


def trainer_only(specs: list[dict]) -> float:
    """Seconds for the jobs' set-up and training by the worker's trainer, one after another."""
    from modelzoo import build_network
    from service.schemas.spec import JobSpec
    from workers.data import load_data
    from workers.engines.eager import Trainer
    from workers.run import train_here

    start = time.perf_counter()
    for spec in specs:
        job_spec = JobSpec.model_validate(spec)
        torch.manual_seed(job_spec.seed)
        data = load_data(job_spec, fetch_dataset=None)
        net = build_network(job_spec.model)
        train_here(Trainer(job_spec, net, data, torch.device("cpu")))
    return time.perf_counter() - start


def hand_only(specs: list[dict]) -> float:
    start = time.perf_counter()
    for spec in specs:
        hand_loop(spec)
    return time.perf_counter() - start


def through_service(specs: list[dict], workers: int, auto_batch: str) -> list:
    with Service(workers=workers, owners=OWNERS, FITSERVE_AUTO_BATCH=auto_batch) as service:
        mine = {owner: [(i, s) for i, s in enumerate(specs) if i % len(OWNERS) == k] for k, owner in enumerate(OWNERS)}
        go = threading.Barrier(len(OWNERS))

        def submit_all(owner: str) -> list[tuple[str, str]]:
            go.wait()
            return [(owner, service.submit(spec, owner)) for _, spec in mine[owner]]

        start = time.time()
        with ThreadPoolExecutor(len(OWNERS)) as pool:
            ids = [job for jobs in pool.map(submit_all, OWNERS) for job in jobs]
        submitted = time.time() - start
        jobs = [service.wait(job_id, poll=0.05, owner=owner) for owner, job_id in ids]
    first_start = min(j["started_at"] for j in jobs)
    last_finish = max(j["finished_at"] for j in jobs)
    span = seconds_between(first_start, last_finish)
    wall = time_of(last_finish) - start
    batched = sum("batched" in (j["execution"] or "") for j in jobs)
    return [f"service, {workers} worker(s), auto-batch {auto_batch}", len(jobs), submitted / len(jobs) * 1e3,
            wall, len(jobs) / wall * 60, span, len(jobs) / span * 60, batched]


def time_of(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


def breakdown(spec: dict, n_jobs: int) -> list[list]:
    """Median milliseconds of each phase of a job, run by the worker's own functions in this process."""
    from service.db import session_scope
    from service.migrations import upgrade
    from service.schemas.spec import JobSpec
    from service.services.jobs import submit_job
    from service.settings import get_settings
    from workers.attempt import build_trainer
    from workers.claims import claim
    from workers.ledger import Ledger, Member
    from workers.run import Run

    class TimedLedger(Ledger):
        """The worker's ledger, timing the final write."""

        def succeed(self, entries):
            started = time.perf_counter()
            super().succeed(entries)
            self.final_write = time.perf_counter() - started

    settings = get_settings().model_copy(update={"AUTO_BATCH": "off"})
    upgrade(settings.DATABASE_URL)
    with session_scope() as s:
        for _ in range(n_jobs):
            submit_job(s, JobSpec.model_validate(spec), None, settings)
    phases: dict[str, list[float]] = {"claim": [], "set-up": [], "training": [], "final write": []}
    cpu = torch.device("cpu")
    for _ in range(n_jobs):
        t0 = time.perf_counter()
        [job] = claim("bench-worker", settings)
        t1 = time.perf_counter()
        ledger = TimedLedger("bench-worker")
        run = Run([Member.of(job)], build_trainer(job, cpu), ledger, settings)
        run.start(str(cpu), "eager on cpu", "bench")
        t2 = time.perf_counter()
        run.train()
        t3 = time.perf_counter()
        for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2 - ledger.final_write, ledger.final_write)):
            phases[name].append(seconds * 1e3)
    return [[name, statistics.median(ms), max(ms)] for name, ms in phases.items()]


def best_of(repeat: int, run) -> list:
    rows = [run() for _ in range(repeat)]
    return max(rows, key=lambda row: row[4])  # the highest jobs/min (wall): the least disturbed run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    specs = job_specs(args.jobs, args.epochs)
    torch.set_num_threads(1)
    header(f"{args.jobs} tiny jobs ({args.epochs} epochs of a 50-point linear regression; 8 configurations, 4 owners)")
    print(f"load average before: {load_average()}\n")
    trainer_only(specs[:5])
    hand_only(specs[:5])
    floor = min(trainer_only(specs) for _ in range(args.repeat))
    hand = min(hand_only(specs) for _ in range(args.repeat))
    n = args.jobs
    rows = [["trainer alone, in-process, one by one", n, "-", floor, n / floor * 60, "-", "-", "-"],
            ["hand loop, in-process, one by one", n, "-", hand, n / hand * 60, "-", "-", "-"]]
    for workers in args.workers:
        for auto in ("auto", "off"):
            rows.append(best_of(args.repeat, lambda: through_service(specs, workers, auto)))
    for row in rows:
        row.append(row[4] / (n / floor * 60))
    print_table(["run", "jobs", "submit ms/job", "wall s", "jobs/min (wall)", "span s", "jobs/min (span)",
                 "jobs batched", "wall rate / trainer"], rows)
    print(f"\nload average after: {load_average()}")
    print("\nOne job's phases (auto-batch off), in this process over its own SQLite file (ms):\n")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FITSERVE_DATABASE_URL"] = f"sqlite:///{tmp}/fitserve.db"
        print_table(["phase", "median ms", "max ms"], breakdown({**SPEC, "epochs": args.epochs}, min(args.jobs, 50)))


if __name__ == "__main__":
    main()

"""Throughput of many tiny jobs, and what each job costs beyond its training.

    .venv/bin/python -m bench.many_jobs [--jobs 200] [--epochs 50]

Part 1, through the service with 1 and 2 workers: all jobs submitted at once, jobs per minute from
the jobs' own timestamps (first started_at to last finished_at). Baseline: the same jobs trained one
after another in this process by the trainer alone (no database, no HTTP).
Part 2, in this process over its own SQLite file: one job's claim, set-up (device, spec, network,
data, checkpoint look-up), training and final write (weights and status), timed apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time

import torch

from bench.common import Service, header, print_table, seconds_between

SPEC = {
    "model": {"kind": "linear", "in_features": 1, "out_features": 1},
    "task": "regression",
    "data": {"source": "synthetic", "generator": "linear", "n": 50, "slope": 2.0, "intercept": 1.0, "noise": 0.1},
    "loss": "mse",
    "optimizer": {"kind": "sgd", "lr": 0.05},
}


def trainer_only(spec: dict, n_jobs: int) -> float:
    """Seconds for the jobs' training alone: the floor the service's throughput is measured against."""
    from modelzoo import build_network
    from service.schemas.spec import JobSpec
    from workers.data import load_data
    from workers.trainer import Callbacks, Trainer

    start = time.perf_counter()
    for _ in range(n_jobs):
        job_spec = JobSpec.model_validate(spec)
        torch.manual_seed(job_spec.seed)
        data = load_data(job_spec, fetch_dataset=None)
        net = build_network(job_spec.model)
        Trainer(job_spec, net, data, torch.device("cpu"), Callbacks(report=lambda points, progress: True)).run()
    return time.perf_counter() - start


def through_service(spec: dict, n_jobs: int, workers: int) -> list:
    with Service(workers=workers) as service:
        service.train(spec)  # warm: first job pays imports in the worker
        submit_start = time.perf_counter()
        ids = [service.submit(spec) for _ in range(n_jobs)]
        submit_s = time.perf_counter() - submit_start
        jobs = [service.wait(job_id, poll=0.05) for job_id in ids]
    span = seconds_between(min(j["started_at"] for j in jobs), max(j["finished_at"] for j in jobs))
    per_job = statistics.median(seconds_between(j["started_at"], j["finished_at"]) for j in jobs)
    return [workers, n_jobs, submit_s / n_jobs * 1e3, span, n_jobs / span * 60, per_job * 1e3]


def breakdown(spec: dict, n_jobs: int) -> list[list]:
    """Median milliseconds of each phase of a job, run by the worker's own functions in this process."""
    from service.db import session_scope
    from service.migrations import upgrade
    from service.models import JobStatus
    from service.repositories import jobs as job_repo
    from service.schemas.spec import JobSpec
    from service.services.jobs import submit_job
    from service.settings import get_settings
    from workers.worker import Attempt, build_trainer, claim
    from modelzoo.weights import weights_to_bytes

    settings = get_settings()
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
        attempt = Attempt(job, "bench-worker", settings, threading.Event())
        with session_scope() as s:
            job_repo.set_device(s, job.id, "bench-worker", job.attempt, str(cpu))
        trainer = build_trainer(job, attempt, cpu, settings)
        t2 = time.perf_counter()
        trainer.run()
        t3 = time.perf_counter()
        attempt.finish(JobStatus.SUCCEEDED, weights=weights_to_bytes(trainer.net, job.spec))
        t4 = time.perf_counter()
        for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            phases[name].append(seconds * 1e3)
    return [[name, statistics.median(ms), max(ms)] for name, ms in phases.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args()
    spec = {**SPEC, "epochs": args.epochs}
    torch.set_num_threads(1)
    header(f"{args.jobs} tiny jobs ({args.epochs} epochs of a 50-point linear regression)")
    trainer_only(spec, 5)
    floor = trainer_only(spec, args.jobs)
    rows = [["trainer alone, in-process", args.jobs, "-", floor, args.jobs / floor * 60, floor / args.jobs * 1e3]]
    rows += [through_service(spec, args.jobs, workers) for workers in (1, 2)]
    print_table(["workers", "jobs", "submit ms/job", "span s", "jobs/min", "median job ms (started→finished)"], rows)
    print("\nOne job's phases, in this process over its own SQLite file (ms):\n")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FITSERVE_DATABASE_URL"] = f"sqlite:///{tmp}/fitserve.db"
        print_table(["phase", "median ms", "max ms"], breakdown(spec, min(args.jobs, 50)))


if __name__ == "__main__":
    main()

"""Chaos: jobs keep running while random processes of `fitserve serve` are SIGKILLed.

`fitserve serve --workers 2` on SQLite gets `--jobs` small jobs (about a second of training each); while they
run, a random child process of `serve` (the pool's supervisor, a worker, multiprocessing's resource tracker) is
SIGKILLed every 1-3 s for `--minutes`. Then every job must end `succeeded` with its curve whole (each epoch
exactly once). For each kill of a process that held jobs, the time from the kill until each of those jobs was
back in the queue (or claimed again, or had ended) is its rescue time; the worst is compared with the bound the
README promises (FITSERVE_LEASE_SECONDS + FITSERVE_SWEEP_SECONDS). The time until it trained again is printed too:
it includes waiting for a worker to start. The baseline is the same jobs with no kills, in the same run.

    .venv/bin/python -m bench.chaos [--jobs 300] [--minutes 4] [--no-baseline]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import threading
import time

from bench.common import FINAL, Service, header, print_table
from service.settings import Settings
from tests.conftest import descendants, is_spawned_worker, process_children

EPOCHS = 20_000


def job_spec(i: int) -> dict:
    return {
        "model": {"kind": "linear", "in_features": 1, "out_features": 1},
        "task": "regression",
        "data": {"source": "synthetic", "generator": "linear", "n": 50, "slope": 2.0, "intercept": 1.0, "noise": 0.1},
        "loss": "mse",
        "optimizer": {"kind": "sgd", "lr": 0.01},
        "epochs": EPOCHS,
        "seed": i,
    }


class Chaos:
    """Kills a random child of `serve` every 1-3 s until `minutes` have passed, and times each rescue."""

    def __init__(self, svc: Service, minutes: float):
        self.svc, self.until = svc, time.monotonic() + 60 * minutes
        self.kills: list[str] = []  # what each kill hit: pool, worker or other
        self.rescues: list[float] = []  # kill -> the job back in the queue (or claimed again, or ended)
        self.restarts: list[float] = []  # kill -> the job claimed again (or ended)
        self.lock = threading.Lock()
        self.watchers: list[threading.Thread] = []

    def victims(self) -> dict[int, str]:
        """Every process under `serve`, named by its place: the pool is a child of `serve`, workers are its children."""
        children = process_children()
        named = {}
        for child in children.get(self.svc.proc.pid, []):
            grandchildren = descendants(child)
            named[child] = "pool" if is_spawned_worker(child) else "other"  # other: the resource tracker
            named.update({pid: "worker" for pid in grandchildren})
        return named

    def held_jobs(self, pid: int) -> list[str]:
        """The jobs a kill of `pid` takes from their workers: its own, or, for a pool, its workers'."""
        under = set(descendants(pid)) | {pid}
        workers = self.svc.client.get("/v1/workers").json()["workers"]
        return [w["job_id"] for w in workers if w["pid"] in under and w["job_id"]]

    def run(self) -> None:
        while time.monotonic() < self.until:
            time.sleep(random.uniform(1.0, 3.0))
            named = self.victims()
            if not named:
                continue
            pid = random.choice(sorted(named))
            attempts = {job_id: self.job(job_id)["attempt"] for job_id in self.held_jobs(pid)}
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed_at = time.monotonic()
            self.kills.append(named[pid])
            for job_id, attempt in attempts.items():
                watcher = threading.Thread(target=self.watch, args=(job_id, attempt, killed_at), daemon=True)
                watcher.start()
                self.watchers.append(watcher)

    def job(self, job_id: str) -> dict:
        return self.svc.client.get(f"/v1/jobs/{job_id}").json()

    def watch(self, job_id: str, attempt: int, killed_at: float) -> None:
        """Until the job is rescued (back in the queue, claimed again, or ended), then until it trains again."""
        rescued = None
        while True:
            job = self.job(job_id)
            again = job["attempt"] > attempt or job["status"] in FINAL
            if rescued is None and (again or job["status"] == "queued"):
                rescued = time.monotonic() - killed_at
            if again:
                with self.lock:
                    self.rescues.append(rescued)
                    self.restarts.append(time.monotonic() - killed_at)
                return
            time.sleep(0.05)


def final(svc: Service, job_id: str, timeout: float = 1800) -> dict:
    deadline = time.monotonic() + timeout
    while (job := svc.client.get(f"/v1/jobs/{job_id}").json())["status"] not in FINAL and time.monotonic() < deadline:
        time.sleep(0.2)
    return job


def check_jobs(svc: Service, ids: list[str]) -> tuple[dict, int]:
    """Every job's final status, and how many curves are not exactly epochs 1..EPOCHS."""
    statuses: dict[str, int] = {}
    broken = 0
    for job_id in ids:
        status = final(svc, job_id)["status"]
        statuses[status] = statuses.get(status, 0) + 1
        points = svc.client.get(f"/v1/jobs/{job_id}/metrics", params={"since_step": 0}).json()["points"]
        broken += [p["epoch"] for p in points] != list(range(1, EPOCHS + 1))
    return statuses, broken


def run(n_jobs: int, minutes: float | None) -> dict:
    with Service(workers=2, FITSERVE_TORCH_THREADS="1") as svc:
        started = time.monotonic()
        ids = [svc.submit(job_spec(i)) for i in range(n_jobs)]
        chaos = Chaos(svc, minutes) if minutes else None
        if chaos is not None:
            chaos.run()
        statuses, broken = check_jobs(svc, ids)
        makespan = time.monotonic() - started
        if chaos is not None:
            for watcher in chaos.watchers:
                watcher.join(60)
        attempts = [svc.client.get(f"/v1/jobs/{i}").json()["attempt"] for i in ids]
        log = svc.read_log()
        return {
            "makespan": makespan, "statuses": statuses, "broken": broken, "chaos": chaos,
            "reclaimed": sum(a > 1 for a in attempts), "lost_writes": log.count(": lost in "),
            "deaths": log.count("died with exit code"),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    header(f"Chaos: {args.jobs} jobs of {EPOCHS} epochs, a random child of `serve` SIGKILLed every 1-3 s")
    settings = Settings()
    bound = settings.LEASE_SECONDS + settings.SWEEP_SECONDS
    calm = None if args.no_baseline else run(args.jobs, None)
    wild = run(args.jobs, args.minutes)
    chaos: Chaos = wild["chaos"]
    rescues, restarts = sorted(chaos.rescues), sorted(chaos.restarts)
    rows = [
        ["kills (pool / worker / other)", " / ".join(str(chaos.kills.count(k)) for k in ("pool", "worker", "other"))],
        ["jobs taken from a worker by a kill", len(rescues)],
        ["rescue time p50 / worst (s)", f"{statistics.median(rescues):.2f} / {rescues[-1]:.2f}" if rescues else "-"],
        ["worst rescue / promised bound", f"{rescues[-1] / bound:.2f} (bound {bound:g} s)" if rescues else "-"],
        ["kill to training again p50 / worst (s)", f"{statistics.median(restarts):.2f} / {restarts[-1]:.2f}" if restarts else "-"],
        ["final statuses", wild["statuses"]],
        ["curves not exactly epochs 1..N", wild["broken"]],
        ["jobs claimed more than once", wild["reclaimed"]],
        ["writes refused to a worker that lost its job", wild["lost_writes"]],
        ["process deaths logged (pool or worker)", wild["deaths"]],
        ["makespan with kills (s)", f"{wild['makespan']:.1f}"],
    ]
    if calm is not None:
        rows += [
            ["makespan without kills (s)", f"{calm['makespan']:.1f} (statuses {calm['statuses']})"],
            ["with kills / without", f"{wild['makespan'] / calm['makespan']:.2f}"],
        ]
    print_table(["", "value"], rows)
    ok = wild["statuses"] == {"succeeded": args.jobs} and wild["broken"] == 0
    print("\nPASS: every job succeeded with a whole curve" if ok else "\nFAIL: see the table")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()

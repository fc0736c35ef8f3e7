"""The six tutorial jobs through the service, against a hand-written eager loop and Lightning's Trainer.

    .venv/bin/python -m bench.training [--epochs-scale 0.1] [--repeat 3] [--no-lightning]

Per job, back to back: the service end to end (submit until `succeeded`, polled every 10 ms), the
service's own training time (the job's finished_at - started_at: set-up, training and final write),
the trainer alone in this process (set-up and its run with no database, `workers.run.train_here`), the hand-written loop in
this process at 1 thread and at every core, and Lightning (CPU). `service threads` is the count each
service run kept after timing its own epochs at 1 and at all its threads (`-`: too short a job to measure). The baseline is the faster hand loop
(its best thread count on this machine): every ratio divides by it. Best of `--repeat` for each
contender (the machine is shared: the best run is the one least disturbed). The trainer and Lightning
use the threads a worker gets (`--workers`), and every in-process contender the allocator setting a worker
has (`workers.devices.keep_freed_memory`); each contender is warmed up once first, as a running service is.
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from contextlib import contextmanager

import torch

from bench.common import EXAMPLES, Service, header, load_average, load_example, print_table
from bench.loops import hand_loop, lightning_loop, trainer_loop
from workers.devices import keep_freed_memory, threads_per_worker


def tiny(spec: dict) -> dict:
    return {**spec, "epochs": 2}


@contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def hand_at(spec: dict, n_threads: int) -> tuple[float, float]:
    with threads(n_threads):
        return hand_loop(spec)


def service_threads(job: dict) -> str:
    """The torch threads the job trained with, when it measured them (workers/engines/threads.py); '-' when it did not."""
    note = (job.get("execution") or "").split("; ")
    return next((part.split()[0] for part in note if "torch thread(s)" in part), "-")


def measure(path, args, service: Service) -> list:
    spec = load_example(path, args.epochs_scale)
    cores = os.cpu_count() or 1
    runs = {"e2e": [], "train": [], "trainer": [], "hand1": [], "handN": [], "lightning": []}
    losses, kept = {}, []
    for _ in range(args.repeat):
        wall, trained, job = service.train(spec, poll=args.poll)
        runs["e2e"].append(wall)
        runs["train"].append(trained)
        losses["service"] = job["metrics"]["loss"]
        kept.append(service_threads(job))
        runs["trainer"].append(trainer_loop(spec)[0])
        seconds, losses["hand"] = hand_at(spec, 1)
        runs["hand1"].append(seconds)
        runs["handN"].append(hand_at(spec, cores)[0])
        if args.lightning:
            seconds, losses["lightning"] = lightning_loop(spec)
            runs["lightning"].append(seconds)
    best = {k: min(v) if v else None for k, v in runs.items()}
    hand = min(best["hand1"], best["handN"])
    hand_threads = 1 if best["hand1"] <= best["handN"] else cores
    row = [path.stem, spec["epochs"], best["e2e"], best["train"], best["trainer"], best["hand1"], best["handN"]]
    row += [hand_threads, ",".join(kept), best["lightning"] or "-", best["e2e"] / hand, best["train"] / hand, best["trainer"] / hand]
    row += [best["lightning"] / hand if best["lightning"] else "-"]
    row += [f"{losses['service']:.5g} / {losses['hand']:.5g}"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every job's epochs (e.g. 0.1)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-lightning", dest="lightning", action="store_false")
    parser.add_argument("--workers", type=int, default=1, help="service workers (loops get cores // workers threads)")
    parser.add_argument("--poll", type=float, default=0.25,
                        help="seconds between the client's status polls (the end is the job's finished_at)")
    parser.add_argument("--jobs", default="", help="comma-separated example prefixes, e.g. 1,4 (default: all)")
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads_per_worker(args.workers))
    keep_freed_memory()  # the allocator setting a worker trains with: the hand loop gets it too
    paths = [p for p in EXAMPLES if not args.jobs or p.name.split("_")[0] in args.jobs.split(",")]
    header(
        f"Tutorial jobs: service vs the best hand-written loop vs Lightning (epochs x {args.epochs_scale}, best of "
        f"{args.repeat}, {args.workers} worker(s) of {threads_per_worker(args.workers)} thread(s); hand loop at 1 "
        f"and {os.cpu_count()} threads)"
    )
    print(f"load average before: {load_average()}\n")
    with Service(workers=args.workers) as service:
        for path in paths:  # first runs pay one-time costs (imports, allocator, kernels) in every contender
            spec = tiny(load_example(path))
            service.train(spec)
            hand_at(spec, 1)
            hand_at(spec, os.cpu_count() or 1)
            trainer_loop(spec)
            if args.lightning:
                lightning_loop(spec)
        rows = [measure(path, args, service) for path in paths]
    print_table(
        ["job", "epochs", "service e2e s", "service train s", "trainer s", "hand 1t s", f"hand {os.cpu_count()}t s",
         "best hand threads", "service threads", "lightning s", "e2e/best hand", "train/best hand", "trainer/best hand",
         "lightning/best hand", "final loss service / hand"],
        rows,
    )
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()

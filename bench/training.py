"""The six tutorial jobs through the service, against a hand-written eager loop and Lightning's Trainer.

    .venv/bin/python -m bench.training [--epochs-scale 0.1] [--repeat 3] [--no-lightning]

Per job, back to back: the service end to end (submit until `succeeded`, polled every 10 ms), the
service's own training time (the job's finished_at - started_at: set-up, training and final write),
the trainer alone in this process (set-up and `Trainer.run`, no database), the hand-written loop in
this process, and Lightning (CPU). Medians over `--repeat`. All loops use the
threads a worker gets (`--workers`), and each is warmed up once first, as a running service is.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import warnings

import torch

from bench.common import EXAMPLES, Service, header, load_example, print_table
from bench.loops import hand_loop, lightning_loop, trainer_loop
from workers.devices import threads_per_worker


def tiny(spec: dict) -> dict:
    return {**spec, "epochs": 2}


def measure(path, args, service: Service) -> list:
    spec = load_example(path, args.epochs_scale)
    runs = {"e2e": [], "train": [], "trainer": [], "hand": [], "lightning": []}
    losses = {}
    for _ in range(args.repeat):
        wall, trained, job = service.train(spec)
        runs["e2e"].append(wall)
        runs["train"].append(trained)
        losses["service"] = job["metrics"]["loss"]
        runs["trainer"].append(trainer_loop(spec)[0])
        seconds, losses["hand"] = hand_loop(spec)
        runs["hand"].append(seconds)
        if args.lightning:
            seconds, losses["lightning"] = lightning_loop(spec)
            runs["lightning"].append(seconds)
    med = {k: statistics.median(v) if v else None for k, v in runs.items()}
    hand = med["hand"]
    row = [path.stem, spec["epochs"], med["e2e"], med["train"], med["trainer"], hand, med["lightning"]]
    row += [med["e2e"] / hand, med["train"] / hand, med["trainer"] / hand]
    row += [med["lightning"] / hand if med["lightning"] else "-"]
    row += [f"{losses['service']:.5g} / {losses['hand']:.5g}"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every job's epochs (e.g. 0.1)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-lightning", dest="lightning", action="store_false")
    parser.add_argument("--workers", type=int, default=1, help="service workers (loops get cores // workers threads)")
    parser.add_argument("--jobs", default="", help="comma-separated example prefixes, e.g. 1,4 (default: all)")
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads_per_worker(args.workers))
    paths = [p for p in EXAMPLES if not args.jobs or p.name.split("_")[0] in args.jobs.split(",")]
    header(
        f"Tutorial jobs: service vs hand-written loop vs Lightning (epochs x {args.epochs_scale}, median of "
        f"{args.repeat}, {args.workers} worker(s), {torch.get_num_threads()} torch thread(s) per loop)"
    )
    with Service(workers=args.workers) as service:
        for path in paths:  # first runs pay one-time costs (imports, allocator, kernels) in every contender
            spec = tiny(load_example(path))
            service.train(spec)
            hand_loop(spec)
            trainer_loop(spec)
            if args.lightning:
                lightning_loop(spec)
        rows = [measure(path, args, service) for path in paths]
    print_table(
        ["job", "epochs", "service e2e s", "service train s", "trainer s", "hand s", "lightning s",
         "e2e/hand", "train/hand", "trainer/hand", "lightning/hand", "final loss service / hand"],
        rows,
    )


if __name__ == "__main__":
    main()

"""How steady the batching probe's verdict is (workers/groups.py `measure_speedup`), against the truth.

For each sweep shape: the probe run REPEATS times on the members (its speedup's spread, and how often it chose
batched at MIN_SPEEDUP), and the truth it predicts: the members trained to their end stacked (one run) and one
by one (K runs of one), both through workers/run.py in this process, timed once. A verdict that flips is
harmless where the true speedup is near the margin (both paths cost about the same) and a defect elsewhere.

    .venv/bin/python -m bench.probe [--repeats 10] [--epochs 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from service.schemas.spec import JobSpec
from tests.specs import example
from workers.attempt import prepare
from workers.devices import keep_freed_memory
from workers.engines.eager import Trainer
from workers.engines.stacked import StackedTrainer
from workers.engines.threads import thread_counts
from workers.groups import MIN_SPEEDUP, measure_speedup
from workers.run import train_here

SHAPES = [("2_linear_regression", 8), ("3_nonlinear_mlp", 32), ("4_logistic_regression", 16),
          ("5_softmax_classification", 8)]


def members(name: str, k: int, epochs: int):
    specs = [JobSpec.model_validate(example(name, seed=seed, epochs=epochs)) for seed in range(k)]
    nets, datas = zip(*(prepare(spec, torch.device("cpu")) for spec in specs))
    return specs, list(nets), list(datas)


def truth(name: str, k: int, epochs: int) -> tuple[float, float]:
    """Seconds one by one and seconds stacked, each trained to the end from fresh members."""
    specs, nets, datas = members(name, k, epochs)
    start = time.perf_counter()
    for spec, net, data in zip(specs, nets, datas):
        train_here(Trainer(spec, net, data, torch.device("cpu")))
    solo = time.perf_counter() - start
    specs, nets, datas = members(name, k, epochs)
    start = time.perf_counter()
    train_here(StackedTrainer(specs, nets, datas, torch.device("cpu")))
    return solo, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--untuned", dest="tuned", action="store_false",
                        help="probe at the present thread count only (as before the run chose its threads)")
    parser.add_argument("--plain-malloc", dest="tuned_malloc", action="store_false",
                        help="leave glibc's malloc as it is (before workers kept freed memory)")
    args = parser.parse_args()
    if args.tuned_malloc:
        keep_freed_memory()  # as every worker does
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}, "
          f"margin {MIN_SPEEDUP}x, {args.repeats} probes per shape, probe threads "
          f"{'1 and all' if args.tuned else 'all'}, malloc {'kept freed memory' if args.tuned_malloc else 'plain'}")
    print(f"{'shape':<28} {'K':>3} {'probe min':>9} {'median':>7} {'max':>6} {'batched':>8} {'probe s':>8} "
          f"{'one by one s':>12} {'stacked s':>9} {'true speedup':>12}")
    for name, k in SHAPES:
        specs, nets, datas = members(name, k, args.epochs)
        cpu = torch.device("cpu")
        threads = thread_counts(True, cpu) if args.tuned else [torch.get_num_threads()]
        speedups, seconds = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            speedups.append(measure_speedup(specs, nets, datas, cpu, threads))
            seconds.append(time.perf_counter() - start)
        chose = sum(s >= MIN_SPEEDUP for s in speedups)
        solo, stacked = truth(name, k, args.epochs)
        print(f"{name:<28} {k:>3} {min(speedups):>9.2f} {statistics.median(speedups):>7.2f} {max(speedups):>6.2f} "
              f"{chose:>5}/{args.repeats} {statistics.median(seconds):>8.3f} {solo:>12.2f} {stacked:>9.2f} "
              f"{solo / stacked:>12.2f}")


if __name__ == "__main__":
    main()

"""What a job's `metrics` cost: the same job trained with and without them, in one run, as a ratio.

    .venv/bin/python -m bench.epoch_metrics [--rounds 3] [--device cpu|cuda]

Each case trains in a worker's loop (`train_here`, curves kept in memory) with `metrics: []` and with every
metric of its task, every epoch recorded (metrics_every 1: the most they can cost), alternating the two in each
round; the table gives each side's median seconds and their ratio. Cases: a single job on one full batch and on
mini-batches (eager; a CUDA graph on a GPU), and a batched sweep of 16 members (stacked).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.common import header, load_average, print_table
from modelzoo.metrics import EPOCH_METRICS
from service.schemas.spec import JobSpec
from workers.attempt import prepare
from workers.engines.eager import Trainer
from workers.engines.stacked import StackedTrainer
from workers.run import train_here

BLOBS = {
    "model": {"kind": "mlp", "in_features": 2, "hidden": [32], "out_features": 2},
    "task": "classification",
    "data": {"source": "synthetic", "generator": "blobs", "validation_fraction": 0.2,
             "clusters": [{"mean": [1, 1], "std": 2, "n": 1000}, {"mean": [-1, -1], "std": 2, "n": 1000}]},
    "loss": "cross_entropy",
    "optimizer": {"kind": "adam", "lr": 0.01},
}
CUBIC = {
    "model": {"kind": "mlp", "in_features": 1, "hidden": [32, 32], "out_features": 1},
    "task": "regression",
    "data": {"source": "synthetic", "generator": "polynomial", "n": 2000, "coefficients": [0, -1, 0, 1],
             "low": -2, "high": 2, "noise": 0.3, "validation_fraction": 0.2},
    "loss": "mse",
    "optimizer": {"kind": "adam", "lr": 0.01},
}
# name, base spec, epochs, batch size, members (1: a job alone, eager; more: one stacked computation)
CASES = [
    ("classifier, full batch", BLOBS, 300, None, 1),
    ("classifier, batches of 100", BLOBS, 20, 100, 1),
    ("classifier, 16 stacked", BLOBS, 100, None, 16),
    ("regression, full batch", CUBIC, 300, None, 1),
    ("regression, batches of 100", CUBIC, 20, 100, 1),
    ("regression, 16 stacked", CUBIC, 100, None, 16),
]


def engine(base: dict, epochs: int, batch_size: int | None, members: int, metrics: list[str], device):
    specs = [JobSpec.model_validate(base | {"epochs": epochs, "batch_size": batch_size, "seed": seed,
                                            "metrics": metrics}) for seed in range(members)]
    nets, datas = zip(*(prepare(s, device) for s in specs))
    if members == 1:
        return Trainer(specs[0], nets[0], datas[0], device)
    return StackedTrainer(specs, list(nets), list(datas), device)


def seconds(base, epochs, batch_size, members, metrics, device) -> float:
    trainer = engine(base, epochs, batch_size, members, metrics, device)
    start = time.perf_counter()
    ledger = train_here(trainer)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    assert ledger.succeeded() and (not metrics or ledger.points["0"][-1].as_dict().keys() >= set(metrics))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    header(f"A job's per-epoch metrics: with against without ({args.device})")
    print(f"load average before: {load_average()}\n")
    rows = []
    for name, base, epochs, batch_size, members in CASES:
        every = list(EPOCH_METRICS[base["task"]])
        seconds(base, 2, batch_size, members, every, device)  # warm-up: kernels, allocator
        plain, with_metrics = [], []
        for _ in range(args.rounds):
            plain.append(seconds(base, epochs, batch_size, members, [], device))
            with_metrics.append(seconds(base, epochs, batch_size, members, every, device))
        without, within = statistics.median(plain), statistics.median(with_metrics)
        rows.append([name, epochs, ", ".join(every), f"{without:.3f}", f"{within:.3f}", f"{within / without:.2f}"])
    print_table(["case", "epochs", "metrics (all recorded every epoch)", "without s", "with s", "ratio"], rows)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()

"""What a time limit that is never reached costs a run: the same job with and without `max_seconds`.

With a limit the run reads the clock before each epoch and between mini-batches, and (mini-batch epochs) each epoch
keeps the weights it started from, so a member stopped inside it keeps its last whole epoch's (workers/run.py,
workers/time_limits.py). Rounds alternate without and with, on one engine each, and each keeps its best round;
the ratio is with / without (1.00: free).

    PYTHONPATH=client:. python -m bench.time_limits [--rounds 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from service.schemas.spec import JobSpec
from workers.attempt import prepare
from workers.engines.eager import Trainer
from workers.engines.stacked import StackedTrainer
from workers.run import train_here

LINEAR = {"source": "synthetic", "generator": "linear", "n": 2000, "noise": 0.5}
CASES = {
    # (spec, members): full-batch epochs (a clock read an epoch), mini-batch epochs (and a copy of the weights each)
    "eager, full batch, 3000 epochs": ({"epochs": 3000}, 1),
    "eager, 63 mini-batches, 40 epochs": ({"epochs": 40, "batch_size": 32}, 1),
    "stacked x8, 63 mini-batches, 20 epochs": ({"epochs": 20, "batch_size": 32}, 8),
}


def spec_dict(fields: dict, seed: int, limited: bool) -> dict:
    spec = {"model": {"kind": "mlp", "in_features": 1, "hidden": [32, 32], "out_features": 1}, "task": "regression",
            "data": LINEAR, "loss": "mse", "optimizer": {"kind": "sgd", "lr": 0.01}, "seed": seed, **fields}
    return spec | ({"max_seconds": 1_000_000} if limited else {})


def seconds(fields: dict, members: int, limited: bool) -> float:
    specs = [JobSpec.model_validate(spec_dict(fields, seed, limited)) for seed in range(members)]
    built = [prepare(spec, torch.device("cpu")) for spec in specs]
    nets, datas = [net for net, _ in built], [data for _, data in built]
    engine = (Trainer(specs[0], nets[0], datas[0], torch.device("cpu")) if members == 1
              else StackedTrainer(specs, nets, datas, torch.device("cpu")))
    started = time.perf_counter()
    ledger = train_here(engine)
    took = time.perf_counter() - started
    assert all(ledger.succeeded(str(k)) and "stop_reason" not in ledger.ended[str(k)] for k in range(members))
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch threads 1, {args.rounds} alternating rounds, best of each")
    print(f"{'case':42} {'without s':>10} {'with s':>10} {'ratio':>7}")
    for name, (fields, members) in CASES.items():
        best = {False: float("inf"), True: float("inf")}
        for _ in range(args.rounds):
            for limited in (False, True):
                best[limited] = min(best[limited], seconds(fields, members, limited))
        print(f"{name:42} {best[False]:10.3f} {best[True]:10.3f} {best[True] / best[False]:7.3f}")


if __name__ == "__main__":
    main()

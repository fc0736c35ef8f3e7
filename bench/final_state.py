"""What keeping a succeeded job's final state costs: bytes stored and time at the finish, against its weights.

A succeeded job now stores its final state (weights, optimizer state, progress: workers/checkpoints.py) beside the
weights it always stored (modelzoo/weights.py). For a few networks and optimizers, each trained a few epochs
by the eager engine with no database (workers/run.py `train_here`), this prints both sizes and the time to
serialize each (best of ROUNDS), and the ratios: the extra a finish writes and an owner's storage holds.

    PYTHONPATH=$PWD/client:$PWD .venv/bin/python bench/final_state.py
"""

from __future__ import annotations

import time

import torch

from modelzoo.weights import weights_to_bytes
from service.schemas.spec import JobSpec
from tests.specs import example
from workers.attempt import prepare
from workers.checkpoints import state_to_bytes
from workers.engines.eager import Trainer
from workers.run import train_here

ROUNDS = 20
OPTIMIZERS = {"sgd": {"kind": "sgd", "lr": 0.01}, "sgd+momentum": {"kind": "sgd", "lr": 0.01, "momentum": 0.9},
              "adam": {"kind": "adam", "lr": 0.001}}
WIDE = {"kind": "mlp", "in_features": 64, "hidden": [256, 256], "out_features": 10, "activation": "relu"}
NETWORKS = {
    "linear 1-1": example("2_linear_regression"),
    "mlp 1-20-1": example("3_nonlinear_mlp"),
    "mlp 64-256-256-10": {**example("6_cnn_digits"), "model": WIDE},
    "cnn digits": example("6_cnn_digits"),
}


def best_of(call) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def measure(spec_dict: dict) -> tuple[int, int, float, float]:
    spec = JobSpec.model_validate(spec_dict)
    net, data = prepare(spec, torch.device("cpu"))
    trainer = Trainer(spec, net, data, torch.device("cpu"), graphs=False)
    train_here(trainer)
    weights = weights_to_bytes(trainer.net, spec_dict)
    state = state_to_bytes(trainer.state())
    return (len(weights), len(state), best_of(lambda: weights_to_bytes(trainer.net, spec_dict)),
            best_of(lambda: state_to_bytes(trainer.state())))


def main() -> None:
    torch.set_num_threads(1)
    print(f"{'network':20} {'optimizer':13} {'weights B':>10} {'state B':>10} {'bytes x':>8} "
          f"{'weights ms':>10} {'state ms':>9} {'time x':>7}")
    for name, spec in NETWORKS.items():
        for kind, optimizer in OPTIMIZERS.items():
            w, s, tw, ts = measure({**spec, "optimizer": optimizer, "epochs": 3})
            print(f"{name:20} {kind:13} {w:>10,} {s:>10,} {s / w:>8.2f} {tw * 1e3:>10.3f} {ts * 1e3:>9.3f} {ts / tw:>7.2f}")


if __name__ == "__main__":
    main()

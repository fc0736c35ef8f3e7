"""Job specs the tests share: the tutorial's examples, shrunk where that still proves the point."""

import copy
import json
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str, **overrides) -> dict:
    spec = json.loads((EXAMPLES / f"{name}.json").read_text())
    spec = copy.deepcopy(spec)
    spec.update(overrides)
    return spec


def tiny_regression(**overrides) -> dict:
    spec = {
        "model": {"kind": "linear", "in_features": 1, "out_features": 1},
        "task": "regression",
        "data": {"source": "synthetic", "generator": "linear", "n": 50, "slope": 2.0, "intercept": 1.0},
        "loss": "mse",
        "optimizer": {"kind": "sgd", "lr": 0.05},
        "epochs": 200,
    }
    spec.update(overrides)
    return spec


def long_job(epochs: int = 200_000, **overrides) -> dict:
    """Seconds to minutes of tiny steps (20 rows, one step an epoch): a job to cancel, stop or kill mid-way."""
    return tiny_regression(epochs=epochs, data={"source": "synthetic", "generator": "linear", "n": 20}, **overrides)

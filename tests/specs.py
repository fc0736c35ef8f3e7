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


# A served job a test stops or kills mid-way and then trains to its end: the kill lands a few hundred to a few
# thousand epochs in (after the epoch the test waits for and a checkpoint, ~4,000 epochs a second on a quiet core), and
# what is left after the rescue is what the test waits out (40,000 took ~9 s of it quietly, twice that under load).
KILLABLE_EPOCHS = 12_000
# checkpoints every 0.3 s, a lease of 3 s and a rescue sweep every 0.5 s: a fault is seen and mended in seconds
FAST_FAULTS = {"FITSERVE_CHECKPOINT_SECONDS": "0.3", "FITSERVE_LEASE_SECONDS": "3", "FITSERVE_SWEEP_SECONDS": "0.5"}


def long_job(epochs: int = 200_000, **overrides) -> dict:
    """Seconds to minutes of tiny steps (20 rows, one step an epoch): a job to cancel, stop or kill mid-way."""
    return tiny_regression(epochs=epochs, data={"source": "synthetic", "generator": "linear", "n": 20}, **overrides)


def large_targets(standardize_target: bool = False, **overrides) -> dict:
    """A noisy line of slope 5000 about 20,000 (targets' std ~2,900): Adam at lr 0.05 cannot reach that scale
    in 200 epochs from weights near 1; standardized targets it fits."""
    data = {"source": "synthetic", "generator": "linear", "n": 200, "low": -1, "high": 1, "slope": 5000.0,
            "intercept": 20000.0, "noise": 100.0, "noise_kind": "normal", "test_fraction": 0.2,
            "standardize_target": standardize_target}
    return tiny_regression(**{"data": data, "optimizer": {"kind": "adam", "lr": 0.05}, "epochs": 200, **overrides})

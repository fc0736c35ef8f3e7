"""Load a spec's data, shape its targets for the loss, and hold out a validation split."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from service.dataset_files import read_npz
from workers.data.builtin import load_builtin
from workers.data.synthetic import generate


@dataclass
class TrainingData:
    x_train: torch.Tensor  # (N, *sample_shape) float32
    y_train: torch.Tensor  # (N, k) float32 for regression and bce, (N,) int64 for cross-entropy
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None
    # data.test_fraction's rows: read only by the final evaluation (workers/evaluation.py), never by training
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None

    def to(self, device: torch.device) -> "TrainingData":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        tensors = (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test)
        return TrainingData(*(move(t) for t in tensors))


def raw_arrays(spec, fetch_dataset: Callable[[str], bytes]) -> tuple[torch.Tensor, torch.Tensor]:
    data = spec.data
    if data.source == "synthetic":
        return generate(data, spec.seed)
    if data.source == "builtin":
        x, y = load_builtin(data.name)
    elif data.source == "inline":
        x, y = np.asarray(data.x, dtype=np.float32), np.asarray(data.y, dtype=np.float64)
    else:
        x, y = read_npz(fetch_dataset(data.dataset_id))
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(np.asarray(y))


def shape_targets(y: torch.Tensor, spec) -> torch.Tensor:
    if spec.loss == "cross_entropy":
        return y.reshape(-1).to(torch.int64)
    y = y.to(torch.float32)
    return y.reshape(-1, 1) if y.dim() == 1 else y


class BadData(ValueError):
    """The data cannot be trained on; the message says why."""


def check_finite(x: torch.Tensor, y: torch.Tensor) -> None:
    """NaN or infinity (say, a value beyond float32) would only surface later as a NaN loss."""
    for name, t in (("x", x), ("y", y)):
        if t.is_floating_point() and not torch.isfinite(t).all():
            row = int((~torch.isfinite(t.reshape(len(t), -1))).any(dim=1).nonzero()[0])
            raise BadData(f"the data holds NaN or infinity ({name}, row {row})")


def load_data(spec, fetch_dataset: Callable[[str], bytes]) -> TrainingData:
    """Tensors on the CPU; the splits come from one seeded permutation, so a rerun holds out the same rows.

    The permutation's first rows are the validation split, the next the test split, the rest train: the
    three are disjoint, and a spec without a test split holds out the rows it always did.
    """
    x, y = raw_arrays(spec, fetch_dataset)
    if x.dim() == 1:
        x = x.unsqueeze(1)  # a flat list of numbers is one feature per row
    y = shape_targets(y, spec)
    check_finite(x, y)
    n_val, n_test = split_sizes(len(x), spec.data.validation_fraction, spec.data.test_fraction)
    if n_val == 0 and n_test == 0:
        return TrainingData(x, y, None, None)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(spec.seed))
    val, test, train = order[:n_val], order[n_val : n_val + n_test], order[n_val + n_test :]
    held = lambda rows, n: (x[rows], y[rows]) if n else (None, None)  # noqa: E731
    return TrainingData(x[train], y[train], *held(val, n_val), *held(test, n_test))


def split_sizes(n: int, validation_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Validation and test rows of `n`; at least one row is left to train on."""
    n_val = min(int(round(n * validation_fraction)), n - 1)
    n_test = min(int(round(n * test_fraction)), n - 1 - n_val)
    return n_val, n_test

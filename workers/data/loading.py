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

    def to(self, device: torch.device) -> "TrainingData":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return TrainingData(move(self.x_train), move(self.y_train), move(self.x_val), move(self.y_val))


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
    """Tensors on the CPU; the split is a seeded permutation, so a rerun holds out the same rows."""
    x, y = raw_arrays(spec, fetch_dataset)
    if x.dim() == 1:
        x = x.unsqueeze(1)  # a flat list of numbers is one feature per row
    y = shape_targets(y, spec)
    check_finite(x, y)
    n_val = int(round(len(x) * spec.data.validation_fraction))
    if n_val == 0:
        return TrainingData(x, y, None, None)
    n_val = min(n_val, len(x) - 1)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(spec.seed))
    val, train = order[:n_val], order[n_val:]
    return TrainingData(x[train], y[train], x[val], y[val])

"""Recorded epochs' figures, kept on the training device until a report reads them back in one go.

Every engine keeps them here: figures as tensors of E epochs by K members (one network's epoch is a 0-d tensor,
a CUDA graph replay's a 1-d one, a stack's epoch one value per member), so nothing syncs with the host until
`read`, once per report. The figures: loss, correct and val_loss, val_correct (counts, read as accuracies), and
the spec's `metrics` as <name> and val_<name> (workers/engines/figures.py).
"""

from __future__ import annotations

import math

import torch

from service.curves import EPOCH_FIELDS, Columns


def finite_or_none(values: list[float]) -> list[float | None]:
    """A held-out loss (or a metric: roc_auc of one class) that is not finite is shown as no value (the job's own
    loss decides divergence)."""
    return values if math.isfinite(sum(values)) else [v if math.isfinite(v) else None for v in values]


class Records:
    def __init__(self, scheduled: list[bool], rows: int, val_rows: int):
        """`scheduled[k]`: member k's curve records its rate (it has a schedule); `rows`, `val_rows`: the sizes of
        the training and validation splits, which turn correct counts into accuracies."""
        self.scheduled, self.rows, self.val_rows = scheduled, rows, val_rows
        self.epochs: list[int] = []
        self.steps: list[int] = []
        self.lr: list[list[float]] = []  # each recorded epoch's per-member rates, with schedules
        self.figures: dict[str, list[torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.epochs)

    def add(self, epochs: list[int], steps: list[int], lr: list[float] | None = None, **figures) -> None:
        """Recorded epochs `epochs`: each figure shaped (E, K), or what reshapes to it; `lr` the members' rates."""
        self.epochs += epochs
        self.steps += steps
        for name, value in figures.items():
            if value is not None:
                self.figures.setdefault(name, []).append(value.reshape(len(epochs), -1))
        if lr is not None:
            self.lr += [lr] * len(epochs)

    def named(self, loss: torch.Tensor, figures: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An epoch's figures by curve name, still on the device: correct counts read as accuracies over the rows."""
        named = {"loss": loss} | {name: v for name, v in figures.items() if name not in ("correct", "val_correct")}
        if "correct" in figures:
            named["accuracy"] = figures["correct"] / self.rows
        if "val_correct" in figures:
            named["val_accuracy"] = figures["val_correct"] / self.val_rows
        return named

    def read(self) -> list[Columns]:
        """Each member's curve columns in epoch order, losses as read (NaN included); clears the records."""
        if not self.epochs:  # nothing recorded since the last read (a stop right after one)
            return [Columns(step=[], epoch=[], loss=[]) for _ in self.scheduled]
        cols = {name: torch.cat(values).T.tolist() for name, values in self.figures.items()}
        cols |= {name: None for name in ("correct", "val_loss", "val_correct") if name not in cols}
        metrics = [name for name in EPOCH_FIELDS if name in cols]
        points = [
            Columns(
                step=list(self.steps),
                epoch=list(self.epochs),
                loss=cols["loss"][k],
                accuracy=None if cols["correct"] is None else [c / self.rows for c in cols["correct"][k]],
                val_loss=None if cols["val_loss"] is None else finite_or_none(cols["val_loss"][k]),
                val_accuracy=None if cols["val_correct"] is None else [c / self.val_rows for c in cols["val_correct"][k]],
                lr=[rates[k] for rates in self.lr] if self.lr and self.scheduled[k] else None,
                **{name: finite_or_none(cols[name][k]) for name in metrics},
            )
            for k in range(len(self.scheduled))
        ]
        self.epochs, self.steps, self.lr = [], [], []
        self.figures = {}
        return points

    def keep(self, members: list[int]) -> None:
        """Only `members` stay (a stack that shrinks between reports: nothing is held)."""
        self.scheduled = [self.scheduled[k] for k in members]


class KeepsRecords:
    """What the engine interface asks alike of the engines of one computation (eager, stacked): whose figures are
    `self.records`, and who train an epoch by `start_epoch` (its rates) then `train_epoch`."""

    records: Records

    def train_next(self, recorded, epochs: int) -> bool:
        """Train the next epoch, keeping its figures if `recorded(epoch)`; False when stopped inside it."""
        epoch = self.progress.epoch + 1
        self.start_epoch(epoch)
        if not self.train_epoch(recorded(epoch)):
            return False
        self.progress.epoch = epoch
        return True

    @property
    def pending(self) -> int:
        return len(self.records)

    def read_points(self) -> list:
        return self.records.read()

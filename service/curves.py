"""Curve points stored as chunks: one row per report, its points as columns of little-endian numbers.

A row per point cost ~9 us through SQLAlchemy, ~8% of a fast 10000-epoch job; a chunk of a report's
points costs one insert. The layout is plain fixed-width arrays (no pickle): the `columns` string names
the arrays in `data`, in order, each `count` values long; steps and epochs are int64, the figures
float64, with NaN where a point has no value for an optional figure. A job's `metrics` (spec) add their
columns to its chunks only: other jobs' chunks, points and responses are as they were.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, make_dataclass

import numpy as np

from modelzoo.metrics import EPOCH_METRICS

INTEGER = ("step", "epoch")
REQUIRED = ("step", "epoch", "loss")
# a job's `metrics`: the training split's figure as <name>, the validation split's as val_<name>
EPOCH_NAMES = tuple(name for names in EPOCH_METRICS.values() for name in names)
EPOCH_FIELDS = EPOCH_NAMES + tuple(f"val_{name}" for name in EPOCH_NAMES)
OPTIONAL = ("val_loss", "accuracy", "val_accuracy", "lr") + EPOCH_FIELDS  # lr: jobs with a schedule
DTYPES = {name: np.dtype("<i8") if name in INTEGER else np.dtype("<f8") for name in REQUIRED + OPTIONAL}
FIELDS = REQUIRED + OPTIONAL


def _as_dict(self) -> dict:
    """The point's figures; those of `metrics` only where it has them (a job that asked for them)."""
    return {name: value for name in FIELDS if (value := getattr(self, name)) is not None or name not in EPOCH_FIELDS}


# One curve point: step, epoch and loss, then every OPTIONAL figure (None where the point has none), in FIELDS' order.
CurvePoint = make_dataclass(
    "CurvePoint",
    [("step", int), ("epoch", int), ("loss", float), *((name, float | None, None) for name in OPTIONAL)],
    namespace={"as_dict": _as_dict},
    slots=True,
)


_ColumnsFields = make_dataclass(
    "_ColumnsFields",
    [("step", list[int]), ("epoch", list[int]), ("loss", list[float]),
     *((name, list[float | None] | None, None) for name in OPTIONAL)],
    slots=True,
)


class Columns(_ColumnsFields):
    """Curve points as equal-length lists, the form a trainer reads its figures back in.

    Points in step order; an optional figure is None as a whole when no point has it. Indexing
    gives a CurvePoint, slicing more Columns: building one object per point is what it avoids.
    """

    __slots__ = ()

    @classmethod
    def from_dicts(cls, points: Sequence[dict]) -> Columns:
        cols = {name: [p.get(name) for p in points] for name in FIELDS}
        return cls(**{n: None if n in OPTIONAL and v.count(None) == len(v) else v for n, v in cols.items()})

    def __len__(self) -> int:
        return len(self.step)

    def __getitem__(self, index):
        values = {name: getattr(self, name) for name in FIELDS}
        if isinstance(index, slice):
            return Columns(**{n: None if v is None else v[index] for n, v in values.items()})
        return CurvePoint(**{n: None if v is None else v[index] for n, v in values.items()})

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def first_nonfinite_loss(self) -> int | None:
        """Index of the first point whose loss is NaN or infinite."""
        if math.isfinite(sum(self.loss)):  # one pass in C when all are finite, the common case
            return None
        return next((i for i, value in enumerate(self.loss) if not math.isfinite(value)), None)

    def through_epoch(self, epoch: int) -> Columns:
        """The points up to and including `epoch`."""
        return self[: bisect.bisect_right(self.epoch, epoch)]

    def at_epoch(self, epoch: int) -> CurvePoint | None:
        i = bisect.bisect_left(self.epoch, epoch)
        return self[i] if i < len(self) and self.epoch[i] == epoch else None


@dataclass(slots=True)
class Chunk:
    """What one row of `metric_chunks` holds, besides its job id."""

    first_step: int
    last_step: int
    count: int
    columns: str
    data: bytes


def encode(points: Columns) -> Chunk:
    """Non-empty points as one chunk."""
    names, arrays = [], []
    for name in FIELDS:
        values = getattr(points, name)
        if values is not None:
            names.append(name)
            arrays.append(np.asarray(values, dtype=DTYPES[name]).tobytes())  # None becomes NaN
    return Chunk(points.step[0], points.step[-1], len(points), ",".join(names), b"".join(arrays))


def columns(chunk_columns: str, data: bytes, count: int) -> dict[str, np.ndarray]:
    """The chunk's arrays by name."""
    out, offset = {}, 0
    for name in chunk_columns.split(","):
        dtype = DTYPES[name]
        out[name] = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
        offset += count * dtype.itemsize
    return out


def after(cols: dict[str, np.ndarray], step: int | None) -> dict[str, np.ndarray]:
    """The columns' points past `step` (all of them when it is None)."""
    if step is None:
        return cols
    first = int(np.searchsorted(cols["step"], step, side="right"))
    return {name: values[first:] for name, values in cols.items()}


def joined(chunks: Sequence[tuple[str, bytes, int]], after_step: int) -> dict[str, np.ndarray]:
    """Several chunks' points past `after_step` as one set of columns; a figure some chunk lacks is NaN there."""
    parts = [after(columns(*chunk), after_step) for chunk in chunks]
    if not parts:
        return {name: np.empty(0, DTYPES[name]) for name in REQUIRED}
    names = [name for name in FIELDS if any(name in part for part in parts)]
    return {
        name: np.concatenate([part[name] if name in part else np.full(len(part["step"]), np.nan) for part in parts])
        for name in names
    }


def to_points(cols: dict[str, np.ndarray]) -> list[CurvePoint]:
    lists = {name: values.tolist() for name, values in cols.items()}
    for name in OPTIONAL:
        if name in lists:
            lists[name] = [None if v != v else v for v in lists[name]]  # NaN means no value
    names = list(lists)
    return [CurvePoint(**dict(zip(names, row))) for row in zip(*lists.values())]


def decode(chunk_columns: str, data: bytes, count: int, after_step: int | None = None) -> list[CurvePoint]:
    """The chunk's points, those after `after_step` only when it is given."""
    return to_points(after(columns(chunk_columns, data, count), after_step))


def trimmed(chunk_columns: str, data: bytes, count: int, through_step: int) -> Chunk | None:
    """The chunk cut after `through_step`, or None when nothing of it is left."""
    cols = columns(chunk_columns, data, count)
    keep = int(np.searchsorted(cols["step"], through_step, side="right"))
    if keep == 0:
        return None
    kept = b"".join(values[:keep].tobytes() for values in cols.values())
    return Chunk(int(cols["step"][0]), int(cols["step"][keep - 1]), keep, chunk_columns, kept)

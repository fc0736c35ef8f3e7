"""Uploading datasets: parse strictly within a budget, describe, store as NPZ."""

from typing import BinaryIO

import numpy as np
from sqlalchemy.orm import Session

from service.dataset_files import DatasetBudget, DatasetFileError, DatasetTooLarge, parse_csv, read_npz, write_npz
from service.errors import InvalidField, NotFound, PayloadTooLarge
from service.models import Dataset
from service.repositories import datasets as dataset_repo
from service.schemas.jobs import DatasetPage, DatasetPublic
from service.schemas.limits import LIMITS
from service.services.jobs import decode_cursor, encode_cursor
from service.services.usage import check_storage

NPZ_MAGIC = b"PK\x03\x04"
TARGET_MOMENTS_WIDTH = 64  # targets wider than this (an image as the target) keep no moments: the answer stays small


def describe_targets(y: np.ndarray) -> tuple[int | None, int]:
    """(classes if y is labels 0..k-1 with k at most the widest layer, targets per row)."""
    width = 1 if y.ndim == 1 else int(np.prod(y.shape[1:]))
    integral = y.ndim == 1 and (y.dtype.kind in "iu" or bool(np.all(np.mod(y, 1) == 0)))
    # labels past the widest classifier's classes are values: a regression target (and no integer overflow)
    n_classes = int(y.max()) + 1 if integral and y.min() >= 0 and y.max() < LIMITS.max_layer_width else None
    return n_classes, width


def describe_target_moments(y: np.ndarray) -> dict | None:
    """Per target column, the mean and std (labels too: a regression may train on integer targets)."""
    columns = y.reshape(len(y), -1).astype(np.float64)
    if columns.shape[1] > TARGET_MOMENTS_WIDTH or len(columns) == 0:
        return None
    mean, std = columns.mean(axis=0), columns.std(axis=0)
    return {"mean": [float(f"{m:.6g}") for m in mean], "std": [float(f"{d:.6g}") for d in std]}


def read_arrays(file: BinaryIO, target: str | None, budget: DatasetBudget) -> tuple[np.ndarray, np.ndarray, bool]:
    """(x, y, whether the file was NPZ); 413 past the budget, 422 for anything unreadable."""
    is_npz = file.read(len(NPZ_MAGIC)) == NPZ_MAGIC
    file.seek(0)
    if not is_npz and not target:
        raise InvalidField(("target",), "a CSV upload needs `target`, the name of the target column")
    try:
        x, y = read_npz(file, budget) if is_npz else parse_csv(file, target, budget)
    except DatasetTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from None
    except DatasetFileError as exc:
        raise InvalidField(("file",), str(exc)) from None
    return x, y, is_npz


def create_dataset(
    session: Session,
    file: BinaryIO,
    filename: str | None,
    target: str | None,
    name: str | None,
    owner_id: str | None,
    budget: DatasetBudget,
) -> Dataset:
    size_bytes = file.seek(0, 2)
    file.seek(0)
    x, y, is_npz = read_arrays(file, target, budget)
    n_classes, width = describe_targets(y)
    with np.errstate(over="ignore"):
        x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise InvalidField(("file",), "values beyond the float32 range training uses")
    data = write_npz(x, y.astype(np.int64) if n_classes is not None else y.astype(np.float32))
    check_storage(session, owner_id, budget.max_stored_bytes, adding=len(data))
    dataset = Dataset(
        owner_id=owner_id,
        name=name or filename,
        format="npz" if is_npz else "csv",
        n_rows=len(x),
        sample_shape=list(x.shape[1:]) or [1],
        n_classes=n_classes,
        target_width=width,
        target_moments=describe_target_moments(y),
        size_bytes=size_bytes,
        data=data,
    )
    return dataset_repo.add_dataset(session, dataset)


def get_dataset(session: Session, dataset_id: str, owner_id: str | None) -> Dataset:
    dataset = dataset_repo.get_dataset(session, dataset_id, owner_id)
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id!r}")
    return dataset


def list_datasets(session: Session, owner_id: str | None, cursor: str | None, limit: int) -> DatasetPage:
    after = decode_cursor(cursor) if cursor else None
    datasets = dataset_repo.list_datasets(session, owner_id, after, limit + 1)
    page = datasets[:limit]
    next_cursor = encode_cursor(page[-1]) if len(datasets) > limit else None
    return DatasetPage(items=[DatasetPublic.model_validate(d) for d in page], next_cursor=next_cursor)

"""Uploading datasets: parse strictly, describe, store as NPZ."""

import numpy as np
from sqlalchemy.orm import Session

from service.dataset_files import DatasetFileError, parse_csv, read_npz, write_npz
from service.errors import InvalidField, NotFound
from service.models import Dataset
from service.repositories import datasets as dataset_repo

NPZ_MAGIC = b"PK\x03\x04"


def describe_targets(y: np.ndarray) -> tuple[int | None, int]:
    """(classes if y is labels 0..k-1, targets per row)."""
    width = 1 if y.ndim == 1 else int(np.prod(y.shape[1:]))
    integral = y.ndim == 1 and (y.dtype.kind in "iu" or bool(np.all(np.mod(y, 1) == 0)))
    n_classes = int(y.max()) + 1 if integral and y.min() >= 0 else None
    return n_classes, width


def create_dataset(
    session: Session, blob: bytes, filename: str | None, target: str | None, name: str | None, owner_id: str | None
) -> Dataset:
    is_npz = blob.startswith(NPZ_MAGIC)
    try:
        if is_npz:
            x, y = read_npz(blob)
        else:
            if not target:
                raise InvalidField(("target",), "a CSV upload needs `target`, the name of the target column")
            try:
                text = blob.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise DatasetFileError("the file is neither an NPZ archive nor UTF-8 CSV text") from None
            x, y = parse_csv(text, target)
    except DatasetFileError as exc:
        raise InvalidField(("file",), str(exc)) from None
    n_classes, width = describe_targets(y)
    with np.errstate(over="ignore"):
        x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise InvalidField(("file",), "values beyond the float32 range training uses")
    data = write_npz(x, y.astype(np.int64) if n_classes is not None else y.astype(np.float32))
    dataset = Dataset(
        owner_id=owner_id,
        name=name or filename,
        format="npz" if is_npz else "csv",
        n_rows=len(x),
        sample_shape=list(x.shape[1:]) or [1],
        n_classes=n_classes,
        target_width=width,
        size_bytes=len(blob),
        data=data,
    )
    return dataset_repo.add_dataset(session, dataset)


def get_dataset(session: Session, dataset_id: str, owner_id: str | None) -> Dataset:
    dataset = dataset_repo.get_dataset(session, dataset_id, owner_id)
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id!r}")
    return dataset

"""Uploaded data files: CSV parsed strictly and NPZ read without pickle, stored as one NPZ."""

import csv
import io
import math
import zipfile

import numpy as np


class DatasetFileError(ValueError):
    """The file cannot be read as a data set; the message says where."""


def read_npz(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Arrays `x` and `y` from NPZ bytes; object arrays are refused, never unpickled."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            missing = {"x", "y"} - set(npz.files)
            if missing:
                raise DatasetFileError(f"the NPZ file lacks array(s) {sorted(missing)}")
            x, y = npz["x"], npz["y"]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, DatasetFileError):
            raise
        raise DatasetFileError(f"not a readable NPZ file of numeric arrays: {exc}") from None
    for name, arr in (("x", x), ("y", y)):
        if arr.dtype.kind not in "biuf":
            raise DatasetFileError(f"array {name!r} has dtype {arr.dtype}; numbers only")
        if arr.ndim == 0 or len(arr) == 0:
            raise DatasetFileError(f"array {name!r} is empty")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise DatasetFileError(f"array {name!r} holds NaN or infinity")
    if len(x) != len(y):
        raise DatasetFileError(f"x has {len(x)} rows but y has {len(y)}")
    return x, y


def parse_csv(text: str, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Numeric CSV with a header row; `target` names the column that becomes y."""
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        raise DatasetFileError("the CSV file is empty or has no header row") from None
    header = [h.strip() for h in header]
    if target not in header:
        raise DatasetFileError(f"target column {target!r} is not in the header {header}")
    if len(set(header)) != len(header):
        raise DatasetFileError("the header names a column twice")
    t = header.index(target)
    rows = []
    try:
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DatasetFileError(f"line {line_no} has {len(row)} fields; the header has {len(header)}")
            rows.append([_number(v, line_no, header[i]) for i, v in enumerate(row)])
    except csv.Error as exc:
        raise DatasetFileError(f"malformed CSV: {exc}") from None
    if not rows:
        raise DatasetFileError("the CSV file has no data rows")
    if len(header) < 2:
        raise DatasetFileError("the CSV file needs at least one feature column besides the target")
    table = np.asarray(rows, dtype=np.float64)
    return np.delete(table, t, axis=1).astype(np.float32), table[:, t]


def _number(value: str, line_no: int, column: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise DatasetFileError(f"line {line_no}, column {column!r}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise DatasetFileError(f"line {line_no}, column {column!r}: {value!r} is not finite")
    return number


def write_npz(x: np.ndarray, y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    return buf.getvalue()

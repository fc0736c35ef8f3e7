"""Uploaded data files: CSV parsed as a stream and NPZ read header first, without pickle, within a budget."""

import csv
import io
import math
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

BLOCK_ROWS = 4096  # CSV rows parsed into one float64 block at a time
CHARS_PER_FIELD = 64  # a CSV line may be at most this many characters per allowed column
NUMERIC_KINDS = "biuf"


class DatasetFileError(ValueError):
    """The file cannot be read as a data set; the message says where."""


class DatasetTooLarge(DatasetFileError):
    """The file is beyond a dataset budget; the message names the setting."""


@dataclass(frozen=True)
class DatasetBudget:
    max_rows: int
    max_columns: int
    max_cells: int
    max_stored_bytes: int | None = None  # the owner's, all its blobs together (FITSERVE_MAX_STORED_BYTES_PER_OWNER)

    def check(self, rows: int, columns: int, what: str) -> None:
        """Refuse `rows` x `columns` values beyond the budget, naming the limit."""
        if rows > self.max_rows:
            raise DatasetTooLarge(f"{what} has more than {self.max_rows} rows (FITSERVE_MAX_DATASET_ROWS)")
        if columns > self.max_columns:
            raise DatasetTooLarge(
                f"{what} has {columns} columns; at most {self.max_columns} (FITSERVE_MAX_DATASET_COLUMNS)"
            )
        if rows * columns > self.max_cells:
            raise DatasetTooLarge(f"{what} has more than {self.max_cells} values (FITSERVE_MAX_DATASET_CELLS)")


UNLIMITED = DatasetBudget(2**62, 2**62, 2**62)  # for files this service wrote itself, from budgeted uploads


def read_npz(source: bytes | BinaryIO, budget: DatasetBudget = UNLIMITED) -> tuple[np.ndarray, np.ndarray]:
    """Arrays `x` and `y` of an NPZ file; each header is checked against the budget before its data is inflated."""
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            missing = {"x", "y"} - set(members)
            if missing:
                raise DatasetFileError(f"the NPZ file lacks array(s) {sorted(missing)}")
            shapes = {name: read_npy_header(archive, members[name], name, budget) for name in ("x", "y")}
            if shapes["x"][0] != shapes["y"][0]:
                raise DatasetFileError(f"x has {shapes['x'][0]} rows but y has {shapes['y'][0]}")
            x, y = (read_npy(archive, members[name]) for name in ("x", "y"))
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        if isinstance(exc, DatasetFileError):
            raise
        raise DatasetFileError(f"not a readable NPZ file of numeric arrays: {exc}") from None
    for name, arr in (("x", x), ("y", y)):
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise DatasetFileError(f"array {name!r} holds NaN or infinity")
    return x, y


def read_npy_header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, budget: DatasetBudget
) -> tuple[int, ...]:
    """The member's shape, from its .npy header alone; refuses it if its data would exceed the budget."""
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise DatasetFileError(f"array {name!r}: .npy format version {version} is not supported")
        header_bytes = stream.tell()
    if dtype.hasobject:
        raise DatasetFileError(f"array {name!r}: Object arrays cannot be loaded when allow_pickle=False; numbers only")
    if dtype.kind not in NUMERIC_KINDS:
        raise DatasetFileError(f"array {name!r} has dtype {dtype}; numbers only")
    if not shape or 0 in shape:
        raise DatasetFileError(f"array {name!r} is empty")
    budget.check(shape[0], math.prod(shape[1:]), f"array {name!r}")
    # the zip directory says how much inflating the member gives; it must be what the header promises
    expected = header_bytes + math.prod(shape) * dtype.itemsize
    if info.file_size != expected:
        raise DatasetFileError(
            f"array {name!r}: the archive says it inflates to {info.file_size} bytes; its header says {expected}"
        )
    return shape


def read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with archive.open(info) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def parse_csv(file: BinaryIO, target: str, budget: DatasetBudget) -> tuple[np.ndarray, np.ndarray]:
    """Numeric CSV with a header row, read as a stream; `target` names the column that becomes y."""
    text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
    try:
        reader = csv.reader(bounded_lines(text, budget.max_columns * CHARS_PER_FIELD), strict=True)
        header = read_header(reader, target, budget)
        table = read_rows(reader, header, budget)
    except UnicodeDecodeError:
        raise DatasetFileError("the file is neither an NPZ archive nor UTF-8 CSV text") from None
    except csv.Error as exc:
        raise DatasetFileError(f"malformed CSV: {exc}") from None
    finally:
        text.detach()  # the upload's file stays open for its owner to close
    t = header.index(target)
    return np.delete(table, t, axis=1).astype(np.float32), table[:, t]


def bounded_lines(text: io.TextIOBase, max_chars: int) -> Iterator[str]:
    """The text's lines, refusing one longer than `max_chars` before it is held whole."""
    for line_no in range(1, 2**62):
        line = text.readline(max_chars + 1)
        if not line:
            return
        if len(line) > max_chars:
            raise DatasetTooLarge(
                f"line {line_no} is longer than {max_chars} characters "
                f"({CHARS_PER_FIELD} per column of FITSERVE_MAX_DATASET_COLUMNS)"
            )
        yield line


def read_header(reader, target: str, budget: DatasetBudget) -> list[str]:
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DatasetFileError("the CSV file is empty or has no header row") from None
    budget.check(0, len(header), "the CSV file")
    if target not in header:
        raise DatasetFileError(f"target column {target!r} is not in the header {header[:50]}")
    if len(set(header)) != len(header):
        raise DatasetFileError("the header names a column twice")
    if len(header) < 2:
        raise DatasetFileError("the CSV file needs at least one feature column besides the target")
    return header


def read_rows(reader, header: list[str], budget: DatasetBudget) -> np.ndarray:
    """The data rows as float64, in blocks, refused as soon as they pass the budget."""
    blocks, block, filled, rows = [], np.empty((BLOCK_ROWS, len(header))), 0, 0
    for row in reader:
        if not row:
            continue
        rows += 1
        line_no = reader.line_num
        budget.check(rows, len(header), "the CSV file")
        if len(row) != len(header):
            raise DatasetFileError(f"line {line_no} has {len(row)} fields; the header has {len(header)}")
        try:
            block[filled] = row
        except ValueError:
            _numbers(row, line_no, header)  # raises, naming the field
        if not np.isfinite(block[filled]).all():
            _numbers(row, line_no, header)
        filled += 1
        if filled == BLOCK_ROWS:
            blocks.append(block)
            block, filled = np.empty_like(block), 0
    if not rows:
        raise DatasetFileError("the CSV file has no data rows")
    blocks.append(block[:filled])
    return np.concatenate(blocks)


def _numbers(row: list[str], line_no: int, header: list[str]) -> None:
    for column, value in zip(header, row):
        try:
            number = float(value)
        except ValueError:
            raise DatasetFileError(f"line {line_no}, column {column!r}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise DatasetFileError(f"line {line_no}, column {column!r}: {value!r} is not finite")
    raise DatasetFileError(f"line {line_no}: a value is not a finite number")


def write_npz(x: np.ndarray, y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    return buf.getvalue()

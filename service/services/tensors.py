"""The binary tensor data extension of the Open Inference Protocol (KServe / Triton), both directions.

A binary request or response is a JSON header of `Inference-Header-Content-Length` bytes followed by the
raw tensors, little-endian and row-major, in the order of the header's tensors that carry
`parameters.binary_data_size`. tritonclient sends inputs this way by default, and asks for its outputs so.
"""

import json
import math
from typing import Any

import numpy as np

from service.errors import InvalidField

# the protocol's numeric datatypes as little-endian numpy dtypes (BOOL and BYTES are not numbers a model takes)
INPUT_NAME = "input"  # a model's one input tensor: in Open Inference requests and in the ONNX export alike
DTYPES = {
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "INT8": np.dtype("i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
}
HEADER = "Inference-Header-Content-Length"


def split_body(body: bytes, header_length: str) -> tuple[bytes, memoryview]:
    """The JSON header and the raw tensor bytes after it; 400 when the declared length does not fit the body."""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise InvalidField(
            (), f"the {HEADER} header ({header_length!r}) must be a byte count within the body ({len(body)} bytes)",
            where="header",
        )
    cut = int(header_length)
    return body[:cut], memoryview(body)[cut:]


def binary_size(parameters: dict[str, Any] | None, loc: tuple) -> int | None:
    """A tensor's `binary_data_size`, or None for a tensor whose values are in the JSON."""
    size = (parameters or {}).get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise InvalidField((*loc, "parameters", "binary_data_size"), "binary_data_size must be a byte count")
    return size


def read_binary(raw: memoryview, offset: int, size: int, datatype: str, shape: list[int], loc: tuple) -> np.ndarray:
    """The tensor whose `size` bytes start at `offset`; 400 when its declared size does not match its shape."""
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise InvalidField((*loc, "datatype"), f"datatype {datatype} is not numeric; send one of {sorted(DTYPES)}")
    expected = math.prod(shape) * dtype.itemsize
    if size != expected:
        raise InvalidField(
            (*loc, "parameters", "binary_data_size"),
            f"binary_data_size is {size} but shape {shape} of {datatype} takes {expected} bytes",
        )
    if offset + size > len(raw):
        raise InvalidField((*loc, "parameters", "binary_data_size"), f"the body ends {offset + size - len(raw)} bytes short")
    return np.frombuffer(raw[offset : offset + size], dtype=dtype).reshape(shape)


def check_all_read(raw: memoryview, used: int) -> None:
    if used != len(raw):
        raise InvalidField(
            ("inputs",), f"the body has {len(raw)} bytes after its JSON header, but binary_data_size adds up to {used}"
        )


def encode_binary(header: dict, tensors: list[np.ndarray]) -> tuple[bytes, int]:
    """The body of a binary response, and its JSON header's length (the value of `Inference-Header-Content-Length`)."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([head, *(t.astype(t.dtype.newbyteorder("<"), copy=False).tobytes() for t in tensors)]), len(head)


def wants_binary(output_parameters: dict[str, Any] | None, request_parameters: dict[str, Any] | None) -> bool:
    """An output's `binary_data`, else the request's `binary_data_output` (tritonclient's default for all outputs)."""
    own = (output_parameters or {}).get("binary_data")
    return bool(own) if own is not None else bool((request_parameters or {}).get("binary_data_output", False))

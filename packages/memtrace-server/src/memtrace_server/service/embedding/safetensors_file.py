"""Read a ``.safetensors`` file into numpy arrays without executing anything from it.

The format is an 8-byte little-endian header length, a JSON header mapping each tensor
name to its dtype, shape and byte range, then the raw little-endian tensor bytes. The
tensors are memory-mapped read-only views, so loading costs no copy of the weights.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4"}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """The file is not a well-formed safetensors file."""


def read_safetensors(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    """Every tensor of the file by name, as read-only arrays mapped from the file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) != 8:
            raise SafetensorsError(f"{path}: too short")
        (header_size,) = struct.unpack("<Q", prefix)
        if header_size > min(_MAX_HEADER, size - 8):
            raise SafetensorsError(f"{path}: header length {header_size} is out of range")
        header = json.loads(f.read(header_size))
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: the header is not a JSON object")
    base = 8 + header_size
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=base, shape=(size - base,))
    tensors: dict[str, np.ndarray[Any, Any]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = np.dtype(_DTYPES[entry["dtype"]])
            shape = tuple(int(n) for n in entry["shape"])
            start, end = (int(n) for n in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SafetensorsError(f"{path}: bad header entry for {name!r}") from exc
        count = int(np.prod(shape, dtype=np.int64))
        if not 0 <= start <= end <= data.shape[0] or end - start != count * dtype.itemsize:
            raise SafetensorsError(f"{path}: byte range of {name!r} does not match its shape")
        tensors[name] = data[start:end].view(dtype).reshape(shape)
    return tensors

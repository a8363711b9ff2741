"""The stored tensors (initializers) of an ONNX model file, read without the ``onnx`` package.

An ONNX file is a protobuf ``ModelProto``; its graph (field 7) lists the weights as ``TensorProto``
initializers (graph field 5), each with ``dims`` (1), ``data_type`` (2), ``name`` (8) and the values as
little-endian ``raw_data`` (9). That is all a weight conversion needs, and it is a few dozen lines of the
protobuf wire format (varints and length-delimited fields), so converting a tracker's weights costs no
extra dependency. A file whose tensors are not stored as ``raw_data`` is refused with a clear error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vconv.errors import VconvError

# ONNX TensorProto.DataType codes -> numpy dtypes (the ones weights use)
_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 10: np.float16, 11: np.float64}
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The base-128 varint at ``pos`` -> ``(value, next position)``."""
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """A protobuf message's fields in order: ``(number, wire type, value)`` (bytes for length-delimited)."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire == _BYTES:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("a field runs past the end of its message")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            value, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.append((number, wire, value))
    return fields


def _tensor(message: bytes) -> tuple[str, np.ndarray]:
    """One ``TensorProto`` -> ``(name, array)``."""
    dims: list[int] = []
    name, dtype, raw = "", 0, None
    for number, wire, value in _fields(message):
        if number == 1 and wire == _VARINT:
            dims.append(int(value))
        elif number == 1 and wire == _BYTES:  # packed repeated int64
            packed, pos = bytes(value), 0
            while pos < len(packed):
                dim, pos = _varint(packed, pos)
                dims.append(dim)
        elif number == 2 and wire == _VARINT:
            dtype = int(value)
        elif number == 8 and wire == _BYTES:
            name = bytes(value).decode()
        elif number == 9 and wire == _BYTES:
            raw = bytes(value)
    if dtype not in _DTYPES or raw is None:
        raise ValueError(f"tensor {name!r}: data type {dtype} or values not stored as raw_data")
    return name, np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(dims).copy()


def read_onnx_initializers(path: str | Path) -> dict[str, np.ndarray]:
    """Every initializer of the ONNX model at ``path``: ``{name: array}`` (see the module docstring)."""
    path = Path(path)
    try:
        data = path.read_bytes()
        graphs = [value for number, wire, value in _fields(data) if number == 7 and wire == _BYTES]
        if len(graphs) != 1:
            raise ValueError("no graph")
        return dict(_tensor(bytes(value)) for number, wire, value in _fields(bytes(graphs[0]))
                    if number == 5 and wire == _BYTES)
    except (OSError, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise VconvError(f"{path}: not a readable ONNX model ({exc})") from None

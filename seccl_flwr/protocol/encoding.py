r"""Canonical, deterministic encoding of named arrays.

Every SecCL payload (a sparse update, a global model, evaluation metrics) is a
sequence of named numpy arrays. Its canonical bytes are::

    b"SECCL\\x01" | u32 count | count x (
        u16 len(name) | name (utf-8)
        | u8 len(dtype) | dtype (numpy ``dtype.str``, always little-endian or ``|``)
        | u8 ndim | ndim x u64 shape | data (C order, little-endian)
    )

All integers are little-endian. The encoding keeps the order of the arrays (a model's
layer order is part of its identity). Equal inputs give equal bytes in every process
and on every platform; ``payload_hash`` is the keccak-256 of these bytes.
"""

import struct
from collections.abc import Mapping

import numpy as np
from eth_utils import keccak

from ..errors import EncodingError

MAGIC = b"SECCL\x01"

ALLOWED_DTYPES = frozenset(
    ["<f2", "<f4", "<f8", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "|b1"]
)
"""Numeric dtypes a payload may carry (object, string and void dtypes never)."""


def _canonical_dtype(array: np.ndarray) -> np.dtype:
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    if dtype.str not in ALLOWED_DTYPES:
        raise EncodingError(f"dtype {array.dtype} is not allowed in a SecCL payload")
    return dtype


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Return the canonical bytes of ``arrays`` (see the module docstring).

    Parameters
    ----------
    arrays : Mapping[str, np.ndarray]
        Named arrays, in the order that is part of the payload.

    Returns
    -------
    bytes
        The canonical encoding.

    Raises
    ------
    EncodingError
        If an array has a disallowed dtype or a name that is not encodable.
    """
    parts = [MAGIC, struct.pack("<I", len(arrays))]
    for name, value in arrays.items():
        array = np.asarray(value)
        dtype = _canonical_dtype(array)
        try:
            name_bytes = name.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EncodingError(f"array name {name[:40]!r} is not valid unicode: {exc}") from exc
        if len(name_bytes) > 0xFFFF:
            raise EncodingError(f"array name too long: {name[:40]}...")
        dtype_bytes = dtype.str.encode("ascii")
        parts += [
            struct.pack("<H", len(name_bytes)),
            name_bytes,
            struct.pack("<B", len(dtype_bytes)),
            dtype_bytes,
            struct.pack("<B", array.ndim),
            struct.pack(f"<{array.ndim}Q", *array.shape),
            np.ascontiguousarray(array, dtype=dtype).tobytes(order="C"),
        ]
    return b"".join(parts)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.offset = 0

    def take(self, size: int, what: str) -> memoryview:
        end = self.offset + size
        if size < 0 or end > len(self.data):
            raise EncodingError(
                f"payload truncated while reading {what}: need {size} bytes at offset "
                f"{self.offset}, have {len(self.data) - self.offset}"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def decode_arrays(data: bytes, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Decode canonical bytes back into named arrays, strictly.

    Parameters
    ----------
    data : bytes
        Bytes produced by :func:`encode_arrays`.
    max_bytes : int | None
        Reject payloads larger than this many bytes.

    Returns
    -------
    dict[str, np.ndarray]
        The arrays, in encoded order (read-only copies).

    Raises
    ------
    EncodingError
        If the payload is oversized, truncated, has trailing bytes, a bad magic,
        a disallowed dtype, a duplicate name, a shape that does not match its data
        or numpy cannot hold, or a boolean byte other than 0 or 1.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise EncodingError(f"payload of {len(data)} bytes exceeds the limit {max_bytes}")
    reader = _Reader(data)
    if bytes(reader.take(len(MAGIC), "magic")) != MAGIC:
        raise EncodingError("payload does not start with the SecCL magic bytes")
    (count,) = reader.unpack("<I", "array count")
    arrays: dict[str, np.ndarray] = {}
    for position in range(count):
        (name_len,) = reader.unpack("<H", f"name length of array {position}")
        try:
            name = bytes(reader.take(name_len, f"name of array {position}")).decode()
        except UnicodeDecodeError as exc:
            raise EncodingError(f"name of array {position} is not utf-8") from exc
        if name in arrays:
            raise EncodingError(f"duplicate array name {name!r}")
        (dtype_len,) = reader.unpack("<B", f"dtype length of {name!r}")
        dtype_str = bytes(reader.take(dtype_len, f"dtype of {name!r}")).decode("ascii", "replace")
        if dtype_str not in ALLOWED_DTYPES:
            raise EncodingError(f"array {name!r} has disallowed dtype {dtype_str!r}")
        dtype = np.dtype(dtype_str)
        (ndim,) = reader.unpack("<B", f"ndim of {name!r}")
        shape = reader.unpack(f"<{ndim}Q", f"shape of {name!r}")
        numel = 1
        for dim in shape:
            numel *= dim
        raw = reader.take(numel * dtype.itemsize, f"data of {name!r}")
        try:
            array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        except ValueError as exc:  # more dimensions or a larger dimension than numpy allows
            raise EncodingError(f"array {name!r} has unsupported shape {shape}: {exc}") from exc
        if dtype.kind == "b" and np.any(np.frombuffer(raw, dtype=np.uint8) > 1):
            raise EncodingError(f"boolean array {name!r} holds bytes other than 0 and 1")
        arrays[name] = array
    if reader.offset != len(data):
        raise EncodingError(f"{len(data) - reader.offset} trailing bytes after the payload")
    return arrays


def payload_hash(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Return keccak-256 of the canonical encoding of ``arrays``."""
    return keccak(encode_arrays(arrays))


def metrics_to_arrays(metrics: Mapping[str, float | int]) -> dict[str, np.ndarray]:
    """Return scalar metrics as 0-d float64 arrays in sorted key order (for hashing)."""
    return {key: np.asarray(float(metrics[key]), dtype="<f8") for key in sorted(metrics)}

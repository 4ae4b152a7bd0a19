"""Flower ``ArrayRecord`` <-> named numpy arrays, decoded strictly.

Every array a node receives passes :func:`arrays_of`, which accepts only ``.npy``
bytes of an allowed numeric dtype whose header matches the declared dtype and shape
and whose data has exactly the size the header names (checked before anything is
allocated). :func:`record_of` builds the record a node sends.
"""

import io
import math
from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord
from numpy.lib import format as npy_format

from .errors import EncodingError
from .protocol.encoding import ALLOWED_DTYPES

NUMPY_STYPE = "numpy.ndarray"
"""Flower's serialization type of an ``Array`` holding ``.npy`` bytes."""


def _npy_header(name: str, data: bytes) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Parse the ``.npy`` header of ``data``; return shape, Fortran order, dtype, data offset."""
    stream = io.BytesIO(data)
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise EncodingError(f"array {name!r} has unsupported .npy version {version}")
    except EncodingError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy raises ValueError, EOFError, ... here
        raise EncodingError(f"array {name!r} has a malformed .npy header: {exc}") from exc
    return shape, fortran, dtype, stream.tell()


def _array_of(name: str, array: Array) -> np.ndarray:
    """Decode one Flower ``Array`` strictly (see :func:`arrays_of`)."""
    if array.stype != NUMPY_STYPE:
        raise EncodingError(
            f"array {name!r} has serialization type {array.stype!r}, expected {NUMPY_STYPE!r}"
        )
    if not isinstance(array.data, bytes):
        raise EncodingError(f"array {name!r} carries {type(array.data).__name__}, not bytes")
    shape, fortran, dtype, offset = _npy_header(name, array.data)
    canonical = dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype
    if canonical.str not in ALLOWED_DTYPES:
        raise EncodingError(f"array {name!r} has disallowed dtype {dtype}")
    if any(dim < 0 for dim in shape):
        raise EncodingError(f"array {name!r} has negative dimensions {shape}")
    try:
        declared_dtype = np.dtype(array.dtype)
    except (TypeError, ValueError) as exc:
        raise EncodingError(f"array {name!r} declares invalid dtype {array.dtype!r}") from exc
    if tuple(array.shape) != tuple(shape) or declared_dtype != dtype:
        raise EncodingError(
            f"array {name!r} declares {array.dtype}{tuple(array.shape)} but holds "
            f"{dtype}{tuple(shape)}"
        )
    numel = math.prod(shape)
    if len(array.data) - offset != numel * dtype.itemsize:
        raise EncodingError(
            f"array {name!r} of shape {tuple(shape)} and dtype {dtype} needs "
            f"{numel * dtype.itemsize} data bytes, has {len(array.data) - offset}"
        )
    try:
        flat = np.frombuffer(array.data, dtype=dtype, count=numel, offset=offset)
        out = flat.reshape(shape, order="F" if fortran else "C").copy(order="K")
    except ValueError as exc:  # more dimensions or a larger dimension than numpy allows
        raise EncodingError(f"array {name!r} has unsupported shape {shape}: {exc}") from exc
    if dtype.kind == "b" and np.any(flat.view(np.uint8) > 1):
        raise EncodingError(f"boolean array {name!r} holds bytes other than 0 and 1")
    return out


def arrays_of(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Return the named numpy arrays of a Flower ``ArrayRecord``, decoded strictly.

    Every array must be ``.npy`` bytes (version 1 or 2) of an allowed numeric dtype
    (:data:`~seccl_flwr.protocol.encoding.ALLOWED_DTYPES`) whose header matches the
    array's declared dtype and shape and whose data has exactly the size the header
    names. The header is checked before anything is allocated, so a hostile sender
    cannot make the receiver allocate more than the message it sent.

    Raises
    ------
    EncodingError
        Naming the array, if it is not ``.npy`` bytes, is truncated or has extra
        bytes, has a disallowed dtype, or declares another dtype or shape.
    """
    if not isinstance(record, ArrayRecord):
        raise EncodingError(f"expected an ArrayRecord, got {type(record).__name__}")
    return {name: _array_of(name, array) for name, array in record.items()}


def record_of(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """Return an ``ArrayRecord`` holding ``arrays`` (order kept)."""
    return ArrayRecord({name: Array(np.asarray(a)) for name, a in arrays.items()})

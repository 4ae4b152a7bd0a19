"""SecCL message payloads: conversion to Flower records, digests and signatures.

Both sides use these functions, so a digest a client computes is byte-for-byte the
one the server anchored. A message digest is the EIP-712 hash of ``Message{runId,
round, kind, author, payloadHash}`` where ``payloadHash`` is keccak-256 of the
canonical encoding of the payload arrays (:mod:`seccl_flwr.protocol.encoding`).
:func:`typed_field` and :func:`typed_list_field` read a message's SecCL fields, so
that both sides reject a field of the wrong type with the same named error.
"""

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount
from flwr.app import Array, ArrayRecord, ConfigRecord
from numpy.lib import format as npy_format

from .errors import MalformedMessageError
from .protocol.eip712 import (
    Kind,
    RunBinding,
    message_hash,
    sign_digest,
    verify_digest,
)
from .protocol.encoding import ALLOWED_DTYPES, EncodingError, payload_hash

SECCL_KEY = "seccl"
"""Key of the ConfigRecord that carries SecCL fields in every message."""


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


def message_digest(
    binding: RunBinding,
    round_: int,
    kind: Kind,
    author: str,
    arrays: Mapping[str, np.ndarray],
) -> bytes:
    """Return the 32-byte digest of a message (what is signed and anchored)."""
    return message_hash(binding, round_, kind, author, payload_hash(arrays))


def sign_message(
    account: LocalAccount,
    binding: RunBinding,
    round_: int,
    kind: Kind,
    arrays: Mapping[str, np.ndarray],
) -> tuple[bytes, bytes]:
    """Sign a message as its author; return ``(digest, signature)``."""
    digest = message_digest(binding, round_, kind, account.address, arrays)
    return digest, sign_digest(account.key, digest)


def verify_message(
    binding: RunBinding,
    round_: int,
    kind: Kind,
    author: str,
    arrays: Mapping[str, np.ndarray],
    signature: bytes,
) -> bytes:
    """Check a message's signature by ``author``; return its digest.

    Raises
    ------
    SignatureError
        If the signature is malformed or made by someone else.
    """
    digest = message_digest(binding, round_, kind, author, arrays)
    verify_digest(digest, signature, author)
    return digest


def _is_kind(value: Any, kind: type) -> bool:
    # a bool is an int to Python, never to SecCL
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def typed_field(server_round: int, sender: str, fields: ConfigRecord, key: str, kind: type) -> Any:
    """Return ``fields[key]`` if it is a ``kind``; raise ``MalformedMessageError`` otherwise.

    ``bool`` is never taken for ``int``, and ``bytes`` is never built from a number (a
    hostile ``bytes(10**12)`` would allocate a terabyte).
    """
    if key not in fields:
        raise MalformedMessageError(server_round, sender, f"field {key!r} is missing")
    value = fields[key]
    if not _is_kind(value, kind):
        raise MalformedMessageError(
            server_round, sender, f"field {key!r} must be {kind.__name__}, got {value!r:.80}"
        )
    return value


def typed_list_field(
    server_round: int, sender: str, fields: ConfigRecord, key: str, kind: type
) -> list:
    """Return ``fields[key]`` if it is a list of ``kind`` (missing: empty list)."""
    value = fields.get(key, [])
    if not isinstance(value, list) or not all(_is_kind(v, kind) for v in value):
        raise MalformedMessageError(
            server_round, sender, f"field {key!r} must be a list of {kind.__name__}"
        )
    return value

"""SecCL message payloads: conversion to Flower records, digests and signatures.

Both sides use these functions, so a digest a client computes is byte-for-byte the
one the server anchored. A message digest is the EIP-712 hash of ``Message{runId,
round, kind, author, payloadHash}`` where ``payloadHash`` is keccak-256 of the
canonical encoding of the payload arrays (:mod:`seccl_flwr.protocol.encoding`).
"""

from collections.abc import Mapping

import numpy as np
from eth_account.signers.local import LocalAccount
from flwr.app import Array, ArrayRecord

from .protocol.eip712 import (
    Kind,
    RunBinding,
    message_typed_data,
    sign_typed,
    typed_digest,
    verify_typed,
)
from .protocol.encoding import payload_hash

SECCL_KEY = "seccl"
"""Key of the ConfigRecord that carries SecCL fields in every message."""


def arrays_of(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Return the named numpy arrays of a Flower ``ArrayRecord``."""
    return {name: array.numpy() for name, array in record.items()}


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
    return typed_digest(message_typed_data(binding, round_, kind, author, payload_hash(arrays)))


def sign_message(
    account: LocalAccount,
    binding: RunBinding,
    round_: int,
    kind: Kind,
    arrays: Mapping[str, np.ndarray],
) -> tuple[bytes, bytes]:
    """Sign a message as its author; return ``(digest, signature)``."""
    typed = message_typed_data(binding, round_, kind, account.address, payload_hash(arrays))
    return typed_digest(typed), sign_typed(account.key, typed)


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
    typed = message_typed_data(binding, round_, kind, author, payload_hash(arrays))
    verify_typed(typed, signature, author)
    return typed_digest(typed)

"""EIP-712 typed data of SecCL: the run binding, message digests and signatures.

Every SecCL message is identified by one 32-byte digest: the EIP-712 hash of a
``Message`` (or ``Ballot``) struct under the domain ``("SecCL", "1", chainId,
verifyingContract)``. The digest therefore binds the chain id, the contract address,
the run id, the round, the message kind, the author and (through ``payloadHash``)
the canonical payload bytes, so a message cannot be replayed in another chain,
contract, run, round or role. The same digest is what the author signs and what
the server anchors on chain; the contract recomputes ``Ballot`` digests itself and
checks their signatures with ``ecrecover``.

A participant joins a run by signing ``Join(runId, participant)`` under the domain
``("SecCL", "1", chainId)`` *without* ``verifyingContract``: the signature proves the
participant holds its key and wants to take part in this run on this chain, and it
can be made before the contract is deployed. The contract's ``register`` checks it.
"""

import functools
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from coincurve import PrivateKey, PublicKey
from eth_utils import keccak, to_checksum_address

from ..errors import EncodingError, SignatureError

DOMAIN_NAME = "SecCL"
DOMAIN_VERSION = "1"

MESSAGE_TYPES: dict[str, list[dict[str, str]]] = {
    "Message": [
        {"name": "runId", "type": "bytes32"},
        {"name": "round", "type": "uint32"},
        {"name": "kind", "type": "uint8"},
        {"name": "author", "type": "address"},
        {"name": "payloadHash", "type": "bytes32"},
    ]
}
BALLOT_TYPES: dict[str, list[dict[str, str]]] = {
    "Ballot": [
        {"name": "runId", "type": "bytes32"},
        {"name": "round", "type": "uint32"},
        {"name": "evaluator", "type": "address"},
        {"name": "peers", "type": "address[]"},
        {"name": "scores", "type": "uint32[]"},
    ]
}

JOIN_TYPES: dict[str, list[dict[str, str]]] = {
    "Join": [
        {"name": "runId", "type": "bytes32"},
        {"name": "participant", "type": "address"},
    ]
}

DOMAIN_TYPES: list[dict[str, str]] = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
JOIN_DOMAIN_TYPES: list[dict[str, str]] = DOMAIN_TYPES[:3]
"""The domain of ``Join``: no ``verifyingContract``, so it can be signed before deployment."""


_SECP256K1_HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
"""secp256k1n / 2; the contract rejects signatures with a larger ``s`` (malleable)."""

MAX_SCORE = 1_000_000
"""Scores are macro F1 x 1e6, so they lie in ``[0, MAX_SCORE]``."""


class Kind(IntEnum):
    """Kind of a SecCL message; part of every digest, so roles cannot be swapped."""

    UPDATE = 1
    BALLOT = 2
    GLOBAL_MODEL = 3
    EVALUATION = 4


@dataclass(frozen=True)
class RunBinding:
    """What every digest of a run is bound to.

    Attributes
    ----------
    chain_id : int
        Chain id of the chain the contract lives on.
    contract : str
        Address of the run's candidate selection contract (checksummed).
    run_id : bytes
        32-byte identifier of the run.
    """

    chain_id: int
    contract: str
    run_id: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.run_id, bytes | bytearray | memoryview):
            raise EncodingError(f"run_id must be 32 bytes, got {type(self.run_id).__name__}")
        if len(bytes(self.run_id)) != 32:
            raise EncodingError(f"run_id must be 32 bytes, got {len(bytes(self.run_id))}")
        object.__setattr__(self, "run_id", bytes(self.run_id))
        object.__setattr__(self, "contract", to_checksum_address(self.contract))

    def domain(self) -> dict[str, Any]:
        """Return the EIP-712 domain of this run."""
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": self.contract,
        }


def run_id_from_label(label: str) -> bytes:
    """Return the 32-byte run id for a human-readable label (its keccak-256)."""
    return keccak(text=label)


def join_domain(chain_id: int) -> dict[str, Any]:
    """Return the EIP-712 domain of ``Join`` signatures on chain ``chain_id``."""
    return {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id}


def _typed(
    domain: dict[str, Any], types: dict[str, list[dict[str, str]]], message: dict
) -> dict[str, Any]:
    primary = next(iter(types))
    domain_types = DOMAIN_TYPES if "verifyingContract" in domain else JOIN_DOMAIN_TYPES
    return {
        "types": {"EIP712Domain": domain_types, **types},
        "primaryType": primary,
        "domain": domain,
        "message": message,
    }


def _message_struct(
    binding: RunBinding, round_: int, kind: Kind, author: str, payload_hash: bytes
) -> dict[str, Any]:
    """Return the field values of a ``Message`` struct."""
    return {
        "runId": binding.run_id,
        "round": round_,
        "kind": int(kind),
        "author": author,
        "payloadHash": payload_hash,
    }


def _ballot_struct(
    binding: RunBinding,
    round_: int,
    evaluator: str,
    peers: Sequence[str],
    scores: Sequence[int],
) -> dict[str, Any]:
    """Return the field values of a ``Ballot`` struct."""
    return {
        "runId": binding.run_id,
        "round": round_,
        "evaluator": evaluator,
        "peers": peers,
        "scores": scores,
    }


def message_typed_data(
    binding: RunBinding, round_: int, kind: Kind, author: str, payload_hash: bytes
) -> dict[str, Any]:
    """Return the full EIP-712 typed data of a ``Message`` (addresses checksummed)."""
    struct = _message_struct(binding, round_, kind, to_checksum_address(author), payload_hash)
    return _typed(binding.domain(), MESSAGE_TYPES, struct)


def ballot_typed_data(
    binding: RunBinding,
    round_: int,
    evaluator: str,
    peers: Sequence[str],
    scores: Sequence[int],
) -> dict[str, Any]:
    """Return the full EIP-712 typed data of a ``Ballot`` (addresses checksummed)."""
    struct = _ballot_struct(
        binding,
        round_,
        to_checksum_address(evaluator),
        [to_checksum_address(p) for p in peers],
        [int(s) for s in scores],
    )
    return _typed(binding.domain(), BALLOT_TYPES, struct)


def _join_struct(run_id: bytes, participant: str) -> dict[str, Any]:
    """Return the field values of a ``Join`` struct."""
    return {"runId": run_id, "participant": participant}


def join_typed_data(run_id: bytes, chain_id: int, participant: str) -> dict[str, Any]:
    """Return the full EIP-712 typed data of a ``Join`` (address checksummed)."""
    return _typed(
        join_domain(chain_id), JOIN_TYPES, _join_struct(run_id, to_checksum_address(participant))
    )


def _type_string(name: str, fields: list[dict[str, str]]) -> bytes:
    """Return ``encodeType`` of a struct without struct members (all of SecCL's)."""
    return f"{name}({','.join(f['type'] + ' ' + f['name'] for f in fields)})".encode()


_JOIN_DOMAIN = "EIP712Domain/join"
"""Key of the join domain's struct: its EIP-712 name is ``EIP712Domain`` as well."""
_STRUCTS: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": DOMAIN_TYPES,
    _JOIN_DOMAIN: JOIN_DOMAIN_TYPES,
    **MESSAGE_TYPES,
    **BALLOT_TYPES,
    **JOIN_TYPES,
}
_TYPEHASHES = {
    key: keccak(_type_string(key.split("/")[0], fields)) for key, fields in _STRUCTS.items()
}


def _encode_atom(kind: str, value: Any) -> bytes:
    """``encodeData`` of one value of an atomic or string type, as 32 bytes."""
    if kind == "bytes32":
        if not isinstance(value, bytes | bytearray) or len(value) != 32:
            raise EncodingError(f"bytes32 value must be 32 bytes, got {value!r:.80}")
        return bytes(value)
    if kind.startswith("uint"):
        bits = int(kind[4:])
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise EncodingError(f"{kind} value must be an integer, got {value!r:.80}")
        if not 0 <= value < 1 << bits:
            raise EncodingError(f"{kind} value out of range: {value}")
        return int(value).to_bytes(32, "big")
    if kind == "address":
        return bytes(12) + address_bytes(value)
    if kind == "string":
        return keccak(text=value)
    raise EncodingError(f"type {kind} is not part of SecCL's typed data")


def bytes32_hex(text: str) -> bytes | None:
    """Return the 32 bytes written as ``0x`` + 64 hex digits (any case), else ``None``.

    How a run id or a digest is written in configuration, on the wire and on the
    command line; each reader names the input in its own error.
    """
    if not text.startswith("0x"):
        return None
    try:
        value = bytes.fromhex(text[2:])
    except ValueError:
        return None
    return value if len(value) == 32 else None


def address_bytes(value: Any) -> bytes:
    """Return the 20 bytes of an address given as ``0x`` + 40 hex digits (any case).

    The checksum case is not checked: the digest binds the 20 bytes, and every
    address compared with another is compared as bytes.

    Raises
    ------
    EncodingError
        If ``value`` is not such a string (or 20 bytes).
    """
    if isinstance(value, bytes) and len(value) == 20:
        return value
    if isinstance(value, str) and len(value) == 42 and value[:2] in ("0x", "0X"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise EncodingError(f"not an address: {value!r:.80}")


def _struct_hash(name: str, data: dict[str, Any]) -> bytes:
    """``hashStruct`` of one of SecCL's structs (atomic fields and arrays of them)."""
    parts = [_TYPEHASHES[name]]
    for entry in _STRUCTS[name]:
        kind, value = entry["type"], data[entry["name"]]
        if kind.endswith("[]"):
            parts.append(keccak(b"".join(_encode_atom(kind[:-2], v) for v in value)))
        else:
            parts.append(_encode_atom(kind, value))
    return keccak(b"".join(parts))


@functools.lru_cache(maxsize=64)
def _domain_separator(name: str, version: str, chain_id: int, contract: str | None) -> bytes:
    data = {"name": name, "version": version, "chainId": chain_id}
    if contract is None:
        return _struct_hash(_JOIN_DOMAIN, data)
    return _struct_hash("EIP712Domain", {**data, "verifyingContract": contract})


def _digest(domain: dict[str, Any], primary: str, message: dict[str, Any]) -> bytes:
    """``keccak(0x1901 || domainSeparator || hashStruct(message))``.

    A domain without ``verifyingContract`` is the join domain.
    """
    separator = _domain_separator(
        domain["name"], domain["version"], domain["chainId"], domain.get("verifyingContract")
    )
    return keccak(b"\x19\x01" + separator + _struct_hash(primary, message))


def typed_digest(typed_data: dict[str, Any]) -> bytes:
    """Return the 32-byte EIP-712 digest (``keccak(0x1901 || domain || struct)``).

    Computed directly from SecCL's three struct definitions (with the domain
    separator cached per run), which is an order of magnitude cheaper than the
    generic encoder of eth-account; ``tests/test_eip712.py`` checks both agree.

    Raises
    ------
    EncodingError
        If the typed data is not a SecCL ``Message``, ``Ballot`` or ``Join`` or a
        value does not fit its type.
    """
    primary = typed_data["primaryType"]
    if primary not in MESSAGE_TYPES and primary not in BALLOT_TYPES and primary not in JOIN_TYPES:
        raise EncodingError(f"primary type {primary!r} is not a SecCL struct")
    return _digest(typed_data["domain"], primary, typed_data["message"])


def message_hash(
    binding: RunBinding, round_: int, kind: Kind, author: str, payload_hash: bytes
) -> bytes:
    """Return the digest of a ``Message`` (the contract's ``hashMessage``).

    Equal to ``typed_digest(message_typed_data(...))`` without building the typed
    data: this is what every node computes for every peer update it checks.
    """
    return _digest(
        binding.domain(), "Message", _message_struct(binding, round_, kind, author, payload_hash)
    )


def ballot_hash(
    binding: RunBinding,
    round_: int,
    evaluator: str,
    peers: Sequence[str],
    scores: Sequence[int],
) -> bytes:
    """Return the digest of a ``Ballot`` (the contract's ``hashBallot``).

    Equal to ``typed_digest(ballot_typed_data(...))`` without building the typed data.
    """
    return _digest(
        binding.domain(), "Ballot", _ballot_struct(binding, round_, evaluator, peers, scores)
    )


def join_hash(run_id: bytes, chain_id: int, participant: str) -> bytes:
    """Return the digest of a ``Join`` (the contract's ``hashJoin``).

    Equal to ``typed_digest(join_typed_data(...))`` without building the typed data.
    """
    return _digest(join_domain(chain_id), "Join", _join_struct(run_id, participant))


def _private_key_bytes(private_key: bytes | str) -> bytes:
    if isinstance(private_key, str):
        return bytes.fromhex(private_key.removeprefix("0x"))
    return bytes(private_key)


def sign_digest(private_key: bytes | str, digest: bytes) -> bytes:
    """Sign a 32-byte EIP-712 digest; return the 65-byte ``r || s || v`` signature.

    libsecp256k1 (through coincurve) signs deterministically (RFC 6979) and always
    in the low-``s`` form, as eth-account does.
    """
    signature = PrivateKey(_private_key_bytes(private_key)).sign_recoverable(digest, hasher=None)
    return signature[:64] + bytes([signature[64] + 27])


def sign_typed(private_key: bytes | str, typed_data: dict[str, Any]) -> bytes:
    """Sign EIP-712 typed data; return the 65-byte ``r || s || v`` signature."""
    return sign_digest(private_key, typed_digest(typed_data))


def address_of_key(private_key: bytes | str) -> str:
    """Return the (checksummed) address of a secp256k1 private key."""
    public_key = PrivateKey(_private_key_bytes(private_key)).public_key
    return to_checksum_address(keccak(public_key.format(compressed=False)[1:])[-20:])


def sign_join(private_key: bytes | str, run_id: bytes, chain_id: int) -> bytes:
    """Sign ``Join(run_id, own address)`` on chain ``chain_id``: the key's consent to the run.

    The server passes the signature to the contract's ``register``; it can be made
    before the contract exists (the join domain has no ``verifyingContract``).
    """
    return sign_digest(private_key, join_hash(run_id, chain_id, address_of_key(private_key)))


def recover_digest(digest: bytes, signature: bytes) -> bytes:
    """Return the 20-byte address whose key signed the 32-byte ``digest``.

    Only the canonical form the contract accepts is taken: 65 bytes, low ``s``
    (at most secp256k1n / 2) and ``v`` in {27, 28}. A signature the contract would
    reject must not pass off-chain verification either, or one evaluator could make
    a whole ``submitBallots`` batch revert.

    Raises
    ------
    SignatureError
        If the signature is malformed or not in canonical form.
    """
    if len(signature) != 65:
        raise SignatureError(f"signature must be 65 bytes, got {len(signature)}")
    if int.from_bytes(signature[32:64], "big") > _SECP256K1_HALF_ORDER:
        raise SignatureError("signature has a high s value (malleable form)")
    if signature[64] not in (27, 28):
        raise SignatureError(f"signature recovery id v must be 27 or 28, got {signature[64]}")
    try:
        public_key = PublicKey.from_signature_and_message(
            bytes(signature[:64]) + bytes([signature[64] - 27]), digest, hasher=None
        )
    except Exception as exc:  # coincurve raises ValueError or Exception for bad r, s
        raise SignatureError(f"malformed signature: {exc}") from exc
    return keccak(public_key.format(compressed=False)[1:])[-20:]


def recover_typed(typed_data: dict[str, Any], signature: bytes) -> str:
    """Return the (checksummed) address that signed ``typed_data``.

    Raises
    ------
    SignatureError
        As :func:`recover_digest`.
    """
    return to_checksum_address(recover_digest(typed_digest(typed_data), signature))


def verify_digest(digest: bytes, signature: bytes, signer: str) -> None:
    """Check that ``signature`` over the EIP-712 ``digest`` was made by ``signer``.

    Raises
    ------
    SignatureError
        If the signature is malformed or recovers to another address.
    """
    recovered = recover_digest(digest, signature)
    if recovered != address_bytes(signer):
        raise SignatureError(
            f"signature recovers to {to_checksum_address(recovered)}, "
            f"expected {to_checksum_address(signer)}"
        )


def verify_typed(typed_data: dict[str, Any], signature: bytes, signer: str) -> None:
    """Check that ``signature`` over ``typed_data`` was made by ``signer``.

    Raises
    ------
    SignatureError
        If the signature is malformed or recovers to another address.
    """
    verify_digest(typed_digest(typed_data), signature, signer)


def verify_join(run_id: bytes, chain_id: int, participant: str, signature: bytes) -> None:
    """Check that ``participant`` signed ``Join(run_id, participant)`` on chain ``chain_id``.

    The contract's ``register`` accepts exactly the signatures this accepts.

    Raises
    ------
    SignatureError
        If the signature is malformed, non-canonical or recovers to another address.
    """
    verify_digest(join_hash(run_id, chain_id, participant), signature, participant)

"""EIP-712 typed data of SecCL: the run binding, message digests and signatures.

Every SecCL message is identified by one 32-byte digest: the EIP-712 hash of a
``Message`` (or ``Ballot``) struct under the domain ``("SecCL", "1", chainId,
verifyingContract)``. The digest therefore binds the chain id, the contract address,
the run id, the round, the message kind, the author and (through ``payloadHash``)
the canonical payload bytes, so a message cannot be replayed in another chain,
contract, run, round or role. The same digest is what the author signs and what
the server anchors on chain; the contract recomputes ``Ballot`` digests itself and
checks their signatures with ``ecrecover``.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address

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


class SignatureError(ValueError):
    """A signature does not recover to the expected author."""


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
            raise ValueError(f"run_id must be 32 bytes, got {type(self.run_id).__name__}")
        if len(bytes(self.run_id)) != 32:
            raise ValueError(f"run_id must be 32 bytes, got {len(bytes(self.run_id))}")
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


def _typed(
    binding: RunBinding, types: dict[str, list[dict[str, str]]], message: dict
) -> dict[str, Any]:
    primary = next(iter(types))
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            **types,
        },
        "primaryType": primary,
        "domain": binding.domain(),
        "message": message,
    }


def message_typed_data(
    binding: RunBinding, round_: int, kind: Kind, author: str, payload_hash: bytes
) -> dict[str, Any]:
    """Return the full EIP-712 typed data of a ``Message``."""
    return _typed(
        binding,
        MESSAGE_TYPES,
        {
            "runId": binding.run_id,
            "round": round_,
            "kind": int(kind),
            "author": to_checksum_address(author),
            "payloadHash": payload_hash,
        },
    )


def ballot_typed_data(
    binding: RunBinding,
    round_: int,
    evaluator: str,
    peers: Sequence[str],
    scores: Sequence[int],
) -> dict[str, Any]:
    """Return the full EIP-712 typed data of a ``Ballot``."""
    return _typed(
        binding,
        BALLOT_TYPES,
        {
            "runId": binding.run_id,
            "round": round_,
            "evaluator": to_checksum_address(evaluator),
            "peers": [to_checksum_address(p) for p in peers],
            "scores": [int(s) for s in scores],
        },
    )


def typed_digest(typed_data: dict[str, Any]) -> bytes:
    """Return the 32-byte EIP-712 digest (``keccak(0x1901 || domain || struct)``)."""
    signable = encode_typed_data(full_message=typed_data)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def sign_typed(private_key: bytes | str, typed_data: dict[str, Any]) -> bytes:
    """Sign EIP-712 typed data; return the 65-byte ``r || s || v`` signature."""
    signed = Account.sign_message(encode_typed_data(full_message=typed_data), private_key)
    return bytes(signed.signature)


def recover_typed(typed_data: dict[str, Any], signature: bytes) -> str:
    """Return the address that signed ``typed_data``.

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
        return Account.recover_message(
            encode_typed_data(full_message=typed_data), signature=signature
        )
    except Exception as exc:  # eth-keys raises several types for bad signatures
        raise SignatureError(f"malformed signature: {exc}") from exc


def verify_typed(typed_data: dict[str, Any], signature: bytes, signer: str) -> None:
    """Check that ``signature`` over ``typed_data`` was made by ``signer``.

    Raises
    ------
    SignatureError
        If the signature is malformed or recovers to another address.
    """
    recovered = recover_typed(typed_data, signature)
    if recovered != to_checksum_address(signer):
        raise SignatureError(
            f"signature recovers to {recovered}, expected {to_checksum_address(signer)}"
        )

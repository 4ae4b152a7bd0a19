"""The one signed message of SecCL: what is signed, anchored, relayed and published.

A :class:`SignedMessage` is an update, a ballot, a global model or signed evaluation
metrics of one run and round. Its :meth:`~SignedMessage.digest` is the EIP-712 hash
the author signs and the chain anchors (:mod:`seccl_flwr.protocol.eip712`): for a
``Message`` the ``payloadHash`` is keccak-256 of the canonical encoding of its arrays
(:mod:`seccl_flwr.protocol.encoding`); a ``Ballot`` carries peers and scores instead
of arrays. The server, the clients, the message store and the audit all use this
type, so each computes the same digest from the same message.

:func:`next_global_model` is the aggregation rule as a message: the global model of
round ``r`` is the one of round ``r - 1`` plus the merge of the candidates' sparse
updates.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from ..errors import EncodingError
from .eip712 import Kind, RunBinding, ballot_hash, message_hash, sign_digest, verify_digest
from .encoding import payload_hash
from .sparse import ModelLayout, SparseUpdate, aggregate


def message_digest(
    binding: RunBinding,
    round_: int,
    kind: Kind,
    author: str,
    arrays: Mapping[str, np.ndarray],
) -> bytes:
    """Return the 32-byte digest of a message with arrays (what is signed and anchored)."""
    return message_hash(binding, round_, kind, author, payload_hash(arrays))


@dataclass(frozen=True, eq=False)
class SignedMessage:
    """One SecCL message of a run, with its author's signature.

    Attributes
    ----------
    binding : RunBinding
        Chain id, contract and run id the message belongs to.
    round : int
        Server round (0 for the initial global model).
    kind : Kind
        Message kind.
    author : str
        Author (checksummed); the evaluator of a ballot, the run's owner for a
        global model.
    payload : Mapping[str, np.ndarray]
        The message's arrays: the sparse update, the global model, the evaluation
        metrics (:func:`~seccl_flwr.protocol.encoding.metrics_to_arrays`); empty for
        a ballot.
    signature : bytes
        The author's 65-byte EIP-712 signature; empty for a global model, which the
        owner's anchoring transaction authenticates.
    peers, scores : tuple
        The scored peers and their scores (ballots only).

    Raises
    ------
    EncodingError
        If a field does not fit its EIP-712 type (round, chain id, scores, author)
        or a ballot carries arrays, or another kind peers and scores.
    """

    binding: RunBinding
    round: int
    kind: Kind
    author: str
    payload: Mapping[str, np.ndarray] = field(default_factory=dict)
    signature: bytes = b""
    peers: tuple[str, ...] = ()
    scores: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", Kind(self.kind))
            object.__setattr__(self, "author", to_checksum_address(self.author))
            object.__setattr__(self, "peers", tuple(to_checksum_address(p) for p in self.peers))
        except ValueError as exc:
            raise EncodingError(f"not a SecCL message: {exc}") from exc
        object.__setattr__(self, "signature", bytes(self.signature))
        object.__setattr__(self, "scores", tuple(int(s) for s in self.scores))
        if not 0 <= self.round < 2**32:
            raise EncodingError(f"round must be a uint32, got {self.round}")
        if not 0 <= self.binding.chain_id < 2**256:
            raise EncodingError(f"chain id must be a uint256, got {self.binding.chain_id}")
        if any(not 0 <= s < 2**32 for s in self.scores):
            raise EncodingError(f"scores must be uint32 values, got {list(self.scores)}")
        if self.kind == Kind.BALLOT:
            if self.payload:
                raise EncodingError("a ballot carries peers and scores, not arrays")
            if len(self.peers) != len(self.scores):
                raise EncodingError(
                    f"ballot has {len(self.peers)} peers but {len(self.scores)} scores"
                )
        elif self.peers or self.scores:
            raise EncodingError(f"only ballots have peers and scores, not a {self.kind.name}")

    @classmethod
    def sign(  # noqa: PLR0913 - the message's fields
        cls,
        account: LocalAccount,
        binding: RunBinding,
        round_: int,
        kind: Kind,
        payload: Mapping[str, np.ndarray] | None = None,
        *,
        peers: Sequence[str] = (),
        scores: Sequence[int] = (),
    ) -> "SignedMessage":
        """Return the message authored and signed by ``account``."""
        unsigned = cls(binding, round_, kind, account.address, payload or {}, b"", peers, scores)
        return unsigned.signed_by(account)

    def signed_by(self, account: LocalAccount) -> "SignedMessage":
        """Return this message with ``account``'s signature over its digest."""
        return SignedMessage(
            self.binding,
            self.round,
            self.kind,
            self.author,
            self.payload,
            sign_digest(account.key, self.digest()),
            self.peers,
            self.scores,
        )

    @property
    def evaluator(self) -> str:
        """The author of a ballot (the contract's name for it)."""
        return self.author

    def digest(self) -> bytes:
        """Return the message's 32-byte EIP-712 digest (computed once per message)."""
        cached = self.__dict__.get("_digest")
        if cached is None:
            if self.kind == Kind.BALLOT:
                cached = ballot_hash(self.binding, self.round, self.author, self.peers, self.scores)
            else:
                cached = message_digest(
                    self.binding, self.round, self.kind, self.author, self.payload
                )
            self.__dict__["_digest"] = cached
        return cached

    def verify(self) -> None:
        """Check that the author signed this message.

        A global model carries no signature (its anchor, written by the run's
        owner, authenticates it): there is nothing to check.

        Raises
        ------
        SignatureError
            If the signature is malformed or recovers to another address.
        """
        if self.kind != Kind.GLOBAL_MODEL:
            verify_digest(self.digest(), self.signature, self.author)

    def as_tuple(self) -> tuple:
        """Return a ballot as the ABI tuple of the contract's ``Ballot`` struct."""
        return (self.author, list(self.peers), list(self.scores), self.signature)


def next_global_model(
    binding: RunBinding,
    round_: int,
    owner: str,
    previous: Mapping[str, np.ndarray],
    updates: Sequence[Mapping[str, np.ndarray]],
) -> SignedMessage:
    """Return global model ``round_``: ``previous`` plus the merge of ``updates``.

    ``updates`` are the candidates' sparse updates as arrays (their payloads), in the
    contract's order. The server anchors this message's digest; a client and the
    audit recompute it to check the anchored model.

    Raises
    ------
    SparseUpdateError
        If an update does not fit the previous model.
    """
    layout = ModelLayout.of(previous)
    sparse = [SparseUpdate.from_arrays(u, layout.size) for u in updates]
    new = aggregate(layout, previous, sparse)
    return SignedMessage(binding, round_, Kind.GLOBAL_MODEL, owner, new)

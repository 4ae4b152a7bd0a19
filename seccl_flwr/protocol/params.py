"""Run parameters of SecCL and the sizes derived from them (no I/O)."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from ..errors import ConfigurationError
from .eip712 import address_bytes

DEFAULT_CANDIDATE_FRACTION = 0.2
"""λ of a run that sets none: ``M = ceil(0.2·n)`` (the server's and every client's default)."""

DEFAULT_SHARE_FRACTION = 0.1
"""Share fraction of a run that sets none (the server's and every client's default)."""


def num_candidates(candidate_fraction: float, num_participants: int) -> int:
    """Return ``M = ceil(λ·n)``, the candidates elected per round: at least 1, at most ``n``.

    Raises
    ------
    ConfigurationError
        If ``candidate_fraction`` (λ) is not in ``(0, 1]``.
    """
    if not 0.0 < candidate_fraction <= 1.0:
        raise ConfigurationError(f"candidate_fraction must lie in (0, 1], got {candidate_fraction}")
    return max(1, min(num_participants, math.ceil(candidate_fraction * num_participants - 1e-9)))


PPM = 1_000_000
"""The share fraction is fixed on chain in parts per million."""

MAX_PARTICIPANTS = 256
"""The contract accepts at most this many participants."""

TRUNCATED_BORDA = 0
"""Election rule 0: truncated Borda (``seccl_flwr.protocol.borda``), the only rule so far."""


@dataclass(frozen=True)
class RunParams:
    """The protocol parameters a run fixes on chain at deployment (the contract's ``Params``).

    Attributes
    ----------
    num_candidates : int
        ``M``, the candidates elected per round, ``1 <= M <= n``.
    quorum : int
        The least number of ballots the election accepts, ``1 <= quorum <= n``.
    share_fraction_ppm : int
        The fraction of an update's entries a client shares, in parts per million,
        ``1..1_000_000``.
    per_tensor : bool
        Whether the share fraction applies to each tensor (else to the whole update).
    election_rule : int
        The election rule; only ``TRUNCATED_BORDA`` (0) exists.
    """

    num_candidates: int
    quorum: int
    share_fraction_ppm: int
    per_tensor: bool
    election_rule: int = TRUNCATED_BORDA

    @property
    def share_fraction(self) -> float:
        """The share fraction as a fraction in ``(0, 1]``."""
        return self.share_fraction_ppm / PPM

    def as_tuple(self) -> tuple[int, int, int, bool, int]:
        """Return the ABI tuple of the contract's ``Params`` struct, in field order."""
        return (
            self.num_candidates,
            self.quorum,
            self.share_fraction_ppm,
            self.per_tensor,
            self.election_rule,
        )

    @classmethod
    def from_tuple(cls, values: Sequence[Any]) -> "RunParams":
        """Return the parameters read from the contract's ``params()`` view."""
        num_candidates, quorum, ppm, per_tensor, rule = values
        return cls(int(num_candidates), int(quorum), int(ppm), bool(per_tensor), int(rule))


def default_quorum(num_participants: int) -> int:
    """Return the default ballot quorum of ``n`` participants: a majority, ``n // 2 + 1``.

    A server that withholds the cross-evaluation of up to half of the participants
    cannot hold an election. A client refuses a run whose quorum is lower, unless its
    own configuration (``seccl-quorum``) accepts a lower one.
    """
    return num_participants // 2 + 1


def share_fraction_ppm(share_fraction: float) -> int:
    """Return the share fraction in parts per million, as the chain stores it.

    Raises
    ------
    ConfigurationError
        If ``share_fraction`` is not in ``(0, 1]`` or rounds to 0 ppm.
    """
    ppm = round(share_fraction * PPM) if 0.0 < share_fraction <= 1.0 else 0
    if ppm < 1:
        raise ConfigurationError(
            f"share_fraction must lie in (0, 1] and be at least 1e-6, got {share_fraction}"
        )
    return ppm


def checked_quorum(quorum: int | None, num_participants: int) -> int:
    """Return the ballot quorum of a run: ``quorum``, or :func:`default_quorum` if ``None``.

    Raises
    ------
    ConfigurationError
        If ``quorum`` is not an int in ``[1, n]``.
    """
    if quorum is None:
        return default_quorum(num_participants)
    if not isinstance(quorum, int) or isinstance(quorum, bool) or quorum < 1:
        raise ConfigurationError(f"quorum must be a positive int or None, got {quorum!r}")
    if quorum > num_participants:
        raise ConfigurationError(
            f"quorum={quorum} exceeds the {num_participants} participants of the run"
        )
    return quorum


def run_params(
    num_participants: int,
    candidate_fraction: float,
    share_fraction: float,
    per_tensor: bool,
    quorum: int | None = None,
) -> RunParams:
    """Return the parameters a run of ``n`` participants opens with (election rule 0).

    ``M = num_candidates(candidate_fraction, n)``; the quorum defaults to a majority
    (:func:`default_quorum`); the share fraction is stored in ppm.

    Raises
    ------
    ConfigurationError
        Naming the first argument out of range.
    """
    return RunParams(
        num_candidates=num_candidates(candidate_fraction, num_participants),
        quorum=checked_quorum(quorum, num_participants),
        share_fraction_ppm=share_fraction_ppm(share_fraction),
        per_tensor=bool(per_tensor),
        election_rule=TRUNCATED_BORDA,
    )


def roster_digest(participants: Sequence[str]) -> bytes:
    """Return the contract's ``rosterDigest``: keccak-256 of ``abi.encodePacked(participants)``.

    Solidity's packed encoding pads each element of an ``address[]`` to 32 bytes, so
    this is the keccak of the addresses as 32-byte words, in registration order. A
    client pins this digest (or the list) in its own configuration.
    """
    return keccak(b"".join(bytes(12) + address_bytes(p) for p in participants))

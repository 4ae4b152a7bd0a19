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
"""Election rule 0: truncated Borda (``seccl_flwr.protocol.borda``), the SecCL paper's."""

MEDIAN_SCORE = 1
"""Election rule 1: lower median of each author's received scores
(``seccl_flwr.protocol.election``); colluders below half of the evaluators cannot
lift each other."""

MEDIAN_RANK = 2
"""Election rule 2: lower median of each author's ranks within the ballots that scored
it (:func:`seccl_flwr.protocol.election.rank_median_standings`): the median rule,
blind to how generous each evaluator's own data makes its scores."""

ELECTION_RULES = {TRUNCATED_BORDA: "borda", MEDIAN_SCORE: "median", MEDIAN_RANK: "rank-median"}
"""The contract's election rules by number, with the name a run config or CLI uses."""

MAX_MEDIAN_PARTICIPANTS = 104
"""The contract opens a run under the median rule only up to this many participants:
its ``electByMedian`` then stays under 80 % of the 2^24 transaction gas cap (measured
on anvil: 11.0 M gas at n = 100, 13.5 M at n = 112; ``tests/test_gas.py``).
With committees (``k >= 1``) the bound is :data:`MAX_MEDIAN_WORDS` instead."""

MAX_MEDIAN_WORDS = 1352
"""Under the median rule with committee size ``k >= 1``, the contract opens a run only
if ``n * ceil(k / 8)`` (the storage words its ``electByMedian`` reads) is at most this
(``104 * 13``, as many as full cross-evaluation at :data:`MAX_MEDIAN_PARTICIPANTS`):
its election then stays under 80 % of the 2^24 cap (measured on anvil: 9.4 M gas at
n = 169, k = 64; 10.5 M at n = 256, k = 40; ``tests/test_gas.py``)."""


def median_words(num_participants: int, committee_size: int) -> int:
    """Return the storage words ``electByMedian`` reads in a committee run: ``n * ceil(k / 8)``."""
    return num_participants * -(-committee_size // 8)


def check_committee_size(committee_size: int, num_participants: int, election_rule: int) -> int:
    """Return ``committee_size`` if the contract opens a run of ``n`` with it, else raise.

    ``0 <= k <= n - 1``; under a median rule (1 or 2) also :func:`median_words` at most
    :data:`MAX_MEDIAN_WORDS` (for ``k >= 1``).

    Raises
    ------
    ConfigurationError
        Naming the bound ``k`` breaks.
    """
    k = committee_size
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ConfigurationError(f"committee_size must be an int >= 0, got {k!r}")
    if k > max(num_participants - 1, 0):
        raise ConfigurationError(
            f"committee_size={k} exceeds the n - 1 = {num_participants - 1} peers of a participant"
        )
    words = median_words(num_participants, k)
    if election_rule != TRUNCATED_BORDA and k and words > MAX_MEDIAN_WORDS:
        raise ConfigurationError(
            f"the {ELECTION_RULES[election_rule]} election rule with committee size {k} "
            f"and {num_participants} participants reads {words} storage words in its "
            f"election, above the {MAX_MEDIAN_WORDS} that fit a transaction; use a "
            "smaller k or Borda"
        )
    return k


def describe_rules() -> str:
    """Return the election rules as ``0 (borda), 1 (median), 2 (rank-median)``."""
    return ", ".join(f"{number} ({name})" for number, name in ELECTION_RULES.items())


def election_rule_of(rule: int | str) -> int:
    """Return the number of an election rule given by number or name (``"median"``).

    Raises
    ------
    ConfigurationError
        If it names no rule of :data:`ELECTION_RULES`.
    """
    text = str(rule).strip().lower()
    for number, name in ELECTION_RULES.items():
        if text in (name, str(number)):
            return number
    raise ConfigurationError(f"unknown election rule {rule!r}; choose one of {describe_rules()}")


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
        The election rule: ``TRUNCATED_BORDA`` (0), ``MEDIAN_SCORE`` (1) or
        ``MEDIAN_RANK`` (2).
    committee_size : int
        ``k``, the evaluators of each update (:mod:`seccl_flwr.protocol.committee`):
        0 (default) is full cross-evaluation, the paper's protocol; ``1 <= k <= n - 1``
        draws per round which ``min(k, m - 1)`` peers each author scores.
    """

    num_candidates: int
    quorum: int
    share_fraction_ppm: int
    per_tensor: bool
    election_rule: int = TRUNCATED_BORDA
    committee_size: int = 0

    @property
    def share_fraction(self) -> float:
        """The share fraction as a fraction in ``(0, 1]``."""
        return self.share_fraction_ppm / PPM

    def as_tuple(self) -> tuple[int, int, int, bool, int, int]:
        """Return the ABI tuple of the contract's ``Params`` struct, in field order."""
        return (
            self.num_candidates,
            self.quorum,
            self.share_fraction_ppm,
            self.per_tensor,
            self.election_rule,
            self.committee_size,
        )

    @classmethod
    def from_tuple(cls, values: Sequence[Any]) -> "RunParams":
        """Return the parameters read from the contract's ``params()`` view."""
        num_candidates, quorum, ppm, per_tensor, rule, committee_size = values
        return cls(
            int(num_candidates),
            int(quorum),
            int(ppm),
            bool(per_tensor),
            int(rule),
            int(committee_size),
        )


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
    election_rule: int = TRUNCATED_BORDA,
    committee_size: int = 0,
) -> RunParams:
    """Return the parameters a run of ``n`` participants opens with.

    ``M = num_candidates(candidate_fraction, n)``; the quorum defaults to a majority
    (:func:`default_quorum`); the share fraction is stored in ppm; the election rule
    is one of :data:`ELECTION_RULES` (default truncated Borda, the paper's); the
    committee size is checked by :func:`check_committee_size` (default 0, the paper's
    full cross-evaluation).

    Raises
    ------
    ConfigurationError
        Naming the first argument out of range.
    """
    if election_rule not in ELECTION_RULES or isinstance(election_rule, bool):
        raise ConfigurationError(
            f"election_rule must be one of {describe_rules()}, got {election_rule!r}"
        )
    if (
        election_rule != TRUNCATED_BORDA
        and not committee_size
        and num_participants > MAX_MEDIAN_PARTICIPANTS
    ):
        raise ConfigurationError(
            f"the {ELECTION_RULES[election_rule]} election rule supports at most "
            f"{MAX_MEDIAN_PARTICIPANTS} participants (its election must fit a "
            f"transaction), got {num_participants}"
        )
    return RunParams(
        num_candidates=num_candidates(candidate_fraction, num_participants),
        quorum=checked_quorum(quorum, num_participants),
        share_fraction_ppm=share_fraction_ppm(share_fraction),
        per_tensor=bool(per_tensor),
        election_rule=election_rule,
        committee_size=check_committee_size(committee_size, num_participants, election_rule),
    )


def roster_digest(participants: Sequence[str]) -> bytes:
    """Return the contract's ``rosterDigest``: keccak-256 of ``abi.encodePacked(participants)``.

    Solidity's packed encoding pads each element of an ``address[]`` to 32 bytes, so
    this is the keccak of the addresses as 32-byte words, in registration order. A
    client pins this digest (or the list) in its own configuration.
    """
    return keccak(b"".join(bytes(12) + address_bytes(p) for p in participants))


@dataclass(frozen=True)
class MismatchWording:
    """How :func:`param_mismatches` words each mismatch, as ``str.format`` templates.

    Every template may use ``{actual}`` (the value on chain), ``{expected}`` (the value
    the pins give: ``M``, the least quorum, the ppm, the flag, the rule), ``{pinned}``
    (the pinned λ or share fraction, as given) and ``{n}`` (the participants).
    Only the words differ between who checks (an auditor, a node); the rules do not.
    """

    num_candidates: str
    quorum: str
    share_fraction: str
    per_tensor: str
    election_rule: str
    committee_size: str = "committee size {actual}, but the pin is {expected}"


PINNED_WORDING = MismatchWording(
    num_candidates="M = {actual}, but the pinned λ = {pinned} and n = {n} give M = {expected}",
    quorum="quorum {actual} is below the pinned {expected}",
    share_fraction="share fraction {actual} ppm, but the pinned {pinned} is {expected} ppm",
    per_tensor="per-tensor {actual}, but the pin is {expected}",
    election_rule="election rule {actual}, but the pin is {expected}",
)
"""The wording of an auditor's pins (:func:`param_mismatches`'s default)."""


def param_mismatches(  # noqa: PLR0913 - one optional pin per run parameter
    params: RunParams,
    num_participants: int,
    candidate_fraction: float | None = None,
    share_fraction: float | None = None,
    per_tensor: bool | None = None,
    least_quorum: int | None = None,
    wording: MismatchWording = PINNED_WORDING,
    election_rule: int | None = None,
    committee_size: int | None = None,
) -> list[str]:
    """Return how the run parameters on chain differ from the pins (empty if they do not).

    A pin left ``None`` is not compared. ``M`` is compared with
    ``num_candidates(candidate_fraction, n)``, the share fraction in ppm (as the chain
    stores it), the quorum as a least value (a higher quorum only makes the run
    stricter); the election rule is compared with the pinned one, and a rule this
    library does not know (:data:`ELECTION_RULES`) is always a mismatch.

    Parameters
    ----------
    params : RunParams
        The parameters fixed on chain.
    num_participants : int
        ``n``, the run's roster size.
    candidate_fraction, share_fraction, per_tensor, least_quorum
        The pinned λ, share fraction, per-tensor flag and least quorum, or ``None``.
    wording : MismatchWording (default: PINNED_WORDING)
        How each mismatch is worded, in the order ``M``, quorum, share fraction,
        per-tensor, election rule, committee size.
    election_rule : int | None
        The pinned election rule, or ``None`` (any rule of :data:`ELECTION_RULES`).
    committee_size : int | None
        The pinned committee size ``k`` (0: full cross-evaluation), or ``None`` (not
        compared). Compared exactly: a larger committee is not "stricter" for a
        node, it changes which peers it scores.

    Raises
    ------
    ConfigurationError
        If a pinned fraction is out of range (:func:`num_candidates`,
        :func:`share_fraction_ppm`).
    """
    n = num_participants
    found = []  # (template, actual, expected, pinned)
    if candidate_fraction is not None:
        expected_m = num_candidates(candidate_fraction, n)
        if params.num_candidates != expected_m:
            found.append(
                (wording.num_candidates, params.num_candidates, expected_m, candidate_fraction)
            )
    if least_quorum is not None and params.quorum < least_quorum:
        found.append((wording.quorum, params.quorum, least_quorum, least_quorum))
    if share_fraction is not None:
        expected_ppm = share_fraction_ppm(share_fraction)
        if params.share_fraction_ppm != expected_ppm:
            found.append(
                (wording.share_fraction, params.share_fraction_ppm, expected_ppm, share_fraction)
            )
    if per_tensor is not None and params.per_tensor != per_tensor:
        found.append((wording.per_tensor, params.per_tensor, per_tensor, per_tensor))
    rule = params.election_rule
    if (election_rule is not None and rule != election_rule) or rule not in ELECTION_RULES:
        expected = (
            describe_rules()
            if election_rule is None
            else f"{election_rule} ({ELECTION_RULES[election_rule]})"
        )
        actual = f"{rule} ({ELECTION_RULES.get(rule, 'unknown')})"
        found.append((wording.election_rule, actual, expected, election_rule))
    if committee_size is not None and params.committee_size != committee_size:
        found.append(
            (wording.committee_size, params.committee_size, committee_size, committee_size)
        )
    return [
        template.format(actual=actual, expected=expected, pinned=pinned, n=n)
        for template, actual, expected, pinned in found
    ]

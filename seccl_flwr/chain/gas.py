"""Gas model of the CSC's batch transactions, and batch sizes that respect the cap.

Every transaction must stay under the per-transaction gas cap of EIP-7825 (2^24) for
every run the contract accepts (1 to 256 participants, any ``M``). ``register``,
``anchor`` and ``submitBallots`` take batches; their gas grows with the batch (and,
for ballots, with the peers ``k`` per ballot and ``M``). The models below are sums of
a few terms (:func:`batch_features`, :func:`ballot_features`) whose coefficients were
fitted by ``benchmarks/fit_gas.py`` on gas measured on the embedded EVM (eth-tester +
py-evm, the contract artifact of this commit): one opening and round per ``n`` in
{8, 40, 100, 180, 256} and ``M`` in {1, ceil(0.4 n), n}, with registration and
anchor batches of 1 to 175 and ballot batches of 1 to 8. Least squares of the
relative error (coefficients of the growing terms at least 0), then scaled by the
largest under-estimate, so the model bounds every measurement from above; measured /
model lies in [0.833, 1] for registration, [0.768, 1] for UPDATE anchors, 1 for
EVALUATION anchors and [0.888, 1] for ballot batches. Batches ran in increasing and
decreasing sizes, so the first batch of a phase (which also writes array lengths)
is covered in every size.
anvil (revm) used the same gas as py-evm for every transaction of a round at
n = 256. ``tests/test_gas.py`` checks the sizes for every ``n``, and plays rounds at
n = 256 on anvil with the cap enforced; ``tests/test_contract.py`` checks the model
against fresh measurements at n = 20, 50 and 100.

Batch sizes keep the model's gas under ``budget``, by default ``SAFETY`` (80 %) of
the cap: room for gas estimates above the gas used, and for gas-schedule differences
between nodes. ``elect`` cannot be split; it is at most ``ELECT_GAS_AT_256``. All
functions are pure.

Committee runs (``Params.committeeSize >= 1``) size their ballot batches by
:func:`committee_ballot_batch_gas`: the model above plus what a committee ballot adds
(the first batch's committee draw, fresh storage writes, each peer's assignment check),
a bound that ``tests/test_gas.py`` checks against batches measured on eth-tester and,
at n = 256 and at the median rule's word bound, on anvil with the cap enforced. Their
budget is :data:`COMMITTEE_BUDGET` (10 M gas, issue 16's target per transaction).
``electByMedian`` of a committee run reads ``n * ceil(k / 8)`` storage words, which the
contract bounds (``MAX_MEDIAN_WORDS``, :data:`~seccl_flwr.protocol.params.MAX_MEDIAN_WORDS`).
"""

import math
from collections.abc import Collection, Sequence
from typing import TypeVar

from ..errors import ConfigurationError
from ..protocol.eip712 import Kind
from ..protocol.params import MEDIAN_RANK

T = TypeVar("T")

TX_GAS_CAP = 1 << 24
"""EIP-7825 (Osaka): no transaction may have a gas limit above 2^24 = 16,777,216."""

SAFETY = 0.8
"""Share of the cap a batch may use by the model."""

DEFAULT_BUDGET = int(TX_GAS_CAP * SAFETY)
"""Default gas budget of one batch transaction (13,421,772)."""

# Fitted by benchmarks/fit_gas.py (see the module docstring); gas = sum(coef * term).
REGISTER = (49149.5927, 53398.6854, 7.9765)
"""Coefficients of :func:`batch_features` for ``register`` of ``b`` participants."""
ANCHOR_UPDATE = (73698.9335, 73637.2056, 15.5946)
"""Coefficients of :func:`batch_features` for ``anchor(UPDATE)`` of ``b`` authors."""
ANCHOR_EVALUATION = (28305.2749, 28098.3649, 0.0)
"""Coefficients of :func:`batch_features` for ``anchor(EVALUATION)`` of ``b`` authors."""
BALLOTS = (52348.1751, 2112.3365, 2948.0729, 63459.0446, 3451.8805, 840.3396, 0.0553)
"""Coefficients of :func:`ballot_features` for ``submitBallots``."""

MAX_AUTHORS = 256
"""The most update authors a round can have (the contract's participant limit)."""

COMMITTEE_DRAW = (60_000.0, 2_200.0)
"""Coefficients of ``1``, ``m`` bounding the committee draw of a committee run's first
ballot batch (seed, Fisher-Yates over ``m`` authors, ``ceil(m / 32)`` slot words);
see :func:`committee_draw_gas`."""

COMMITTEE_BALLOT = (25_000, 400)
"""Gas per ballot (``1``, ``k``) a committee ballot may cost above
:func:`ballot_batch_gas`: the evaluator's seat and slot, each peer's assignment check
(measured: about 60 k gas above the model for one ballot of 255 peers on anvil)."""

FRESH_SLOT = 22_100
"""Gas of a storage write from zero (EIP-2929 cold, EIP-2200): a committee ballot's
points often go to an author with none yet, and a median ballot's words are fresh."""

RANK_SORT = (670.0, 2_250.0, 2_500.0)
"""Coefficients of ``k log2(k + 1)``, ``k`` and ``1``: the gas a ballot of ``k`` peers
costs above a median-score ballot under the median-rank rule (2), which sorts its
scores (a heapsort in memory) to rank them. Fitted on single ballots measured on
eth-tester at k = 3, 19, 49, 99 and 103 (10.7 k to 661 k gas above the same ballot
under rule 1), then raised so that it bounds every one by at least 4 %;
:func:`ballot_batch_gas` adds it per ballot."""

COMMITTEE_BUDGET = 10_000_000
"""Gas budget of a committee run's ballot batch: issue 16's target of at most 10 M gas
per transaction (at n = 100), under :data:`DEFAULT_BUDGET`."""

ELECT_GAS_AT_256 = 8_920_776
"""Measured gas of ``elect`` at n = M = 256, the largest election (not batchable, and
under the cap): O(n log n) for the ranking plus one storage slot per candidate."""


def batch_features(batch: int) -> tuple[float, ...]:
    """Return the terms of the registration and anchor models: ``1``, ``b``, ``b^2``.

    ``b^2``: memory expansion, quadratic in the words the batch's loop allocates.
    """
    return (1.0, float(batch), float(batch) ** 2)


def _model(coefficients: tuple[float, ...], features: tuple[float, ...]) -> int:
    return math.ceil(sum(c * f for c, f in zip(coefficients, features, strict=True)))


def ballot_features(batch: int, peers: int, num_candidates: int) -> tuple[float, ...]:
    """Return the terms of the ballot batch model (multiplied by ``BALLOTS``).

    ``1`` (transaction), ``k`` and ``top = min(M, k)`` (the first ballot's cold
    storage accesses: every peer's tally slot read, ``top`` written), ``B`` (per
    ballot: signature, digest, storage of the ballot), ``B * k`` (calldata,
    validation, sort keys), ``B * top * log2(k + 1)`` (heap pops and points) and
    ``(B * k)^2`` (memory expansion, quadratic in the words a batch allocates).
    """
    top = min(num_candidates, peers)
    return (
        1.0,
        float(peers),
        float(top),
        float(batch),
        float(batch * peers),
        batch * top * math.log2(peers + 1),
        float(batch * peers) ** 2,
    )


def register_gas(batch: int) -> int:
    """Return the modelled gas of ``register`` with ``batch`` participants."""
    return _model(REGISTER, batch_features(batch))


def anchor_gas(batch: int, kind: Kind = Kind.UPDATE) -> int:
    """Return the modelled gas of ``anchor`` of ``batch`` digests of ``kind``.

    GLOBAL_MODEL (one digest) is costed as an UPDATE.
    """
    coefficients = ANCHOR_EVALUATION if kind == Kind.EVALUATION else ANCHOR_UPDATE
    return _model(coefficients, batch_features(batch))


def rank_sort_gas(peers: int) -> int:
    """Return the gas one median-rank ballot of ``peers`` peers adds (:data:`RANK_SORT`)."""
    return _model(RANK_SORT, (peers * math.log2(peers + 1), float(peers), 1.0))


def ballot_batch_gas(batch: int, peers: int, num_candidates: int, election_rule: int = 0) -> int:
    """Return the modelled gas of ``submitBallots`` with ``batch`` ballots of ``peers`` peers.

    ``num_candidates`` is the ``M`` of :func:`ballot_model_candidates`; under the
    median-rank rule (2) every ballot adds :func:`rank_sort_gas`.
    """
    sort = batch * rank_sort_gas(peers) if election_rule == MEDIAN_RANK else 0
    return _model(BALLOTS, ballot_features(batch, peers, num_candidates)) + sort


def committee_draw_gas(num_authors: int) -> int:
    """Return a bound of the gas the first ballot batch of a committee run adds (the draw)."""
    return _model(COMMITTEE_DRAW, (1.0, float(num_authors)))


def committee_ballot_batch_gas(  # noqa: PLR0913 - the batch and the run
    batch: int,
    peers: int,
    num_candidates: int,
    election_rule: int,
    num_authors: int = MAX_AUTHORS,
    draw: bool = True,
    fresh: int | None = None,
) -> int:
    """Return a bound of the gas of ``submitBallots`` in a committee run.

    :func:`ballot_batch_gas` (with :func:`ballot_model_candidates`), plus per ballot
    :data:`COMMITTEE_BALLOT` (a constant and a term per peer), plus fresh storage
    writes (:data:`FRESH_SLOT`): Borda points of at most ``min(batch * top, m)``
    authors with none yet, ``top = min(M, k)`` (the first ballot's ``top`` are in the
    model, fitted on rounds whose first ballot writes fresh points), or the
    ``ceil(k / 8)`` words of each median ballot; plus the draw
    (:func:`committee_draw_gas`) if ``draw`` (the round's first batch). Checked
    against measurements in ``tests/test_gas.py``. ``fresh``: the number of authors
    the batch gives their first points, if known (:func:`committee_batch_sizes`);
    ``None`` assumes the most, ``min(batch * top, m)``.
    """
    m = ballot_model_candidates(peers, num_candidates, election_rule)
    extra = batch * (COMMITTEE_BALLOT[0] + COMMITTEE_BALLOT[1] * peers)
    if election_rule == 0:  # the model's first-ballot terms cover one ballot's top writes
        top = min(num_candidates, peers)
        most = min(batch * top, num_authors)
        extra += FRESH_SLOT * max(0, (most if fresh is None else min(fresh, most)) - top)
    else:
        extra += FRESH_SLOT * batch * math.ceil(peers / 8)
    if draw:
        extra += committee_draw_gas(num_authors)
    return ballot_batch_gas(batch, peers, m, election_rule) + extra


def committee_ballot_batch_size(
    peers: int,
    num_candidates: int,
    election_rule: int,
    num_authors: int = MAX_AUTHORS,
    budget: int = COMMITTEE_BUDGET,
) -> int:
    """Return the most ballots of ``peers`` peers one committee-run ``submitBallots`` may take.

    Every batch is sized as if it were the round's first (which pays the draw).

    Raises
    ------
    ConfigurationError
        If a single ballot exceeds the budget.
    """
    return _largest(
        lambda b: committee_ballot_batch_gas(b, peers, num_candidates, election_rule, num_authors),
        budget,
        "committee ballot",
    )


def committee_batch_sizes(  # noqa: PLR0913 - the ballots and the run
    points_to: Sequence[Collection[str]],
    peers: int,
    num_candidates: int,
    election_rule: int,
    num_authors: int = MAX_AUTHORS,
    with_points: Collection[str] = (),
    draw: bool = True,
    budget: int = COMMITTEE_BUDGET,
) -> list[int]:
    """Return the sizes of consecutive committee ballot batches, each within ``budget``.

    Tighter than :func:`committee_ballot_batch_size`, which assumes every point a
    fresh write in every batch: here each batch is costed with the exact number of
    authors it gives their first points (``fresh`` of :func:`committee_ballot_batch_gas`),
    and only the first batch pays the draw (if ``draw``).

    Parameters
    ----------
    points_to : Sequence[Collection[str]]
        Per ballot, in submission order, the peers it gives Borda points
        (:func:`seccl_flwr.protocol.borda.ballot_points`); empty under the median rule.
    peers : int
        The most peers of a ballot.
    with_points : Collection[str]
        The authors that have points already (earlier batches of the round).

    Raises
    ------
    ConfigurationError
        If a single ballot exceeds the budget.
    """
    have = set(with_points)
    sizes: list[int] = []
    start = 0
    while start < len(points_to):
        fresh: set[str] = set()
        size = 0
        while start + size < len(points_to):
            new = set(points_to[start + size]) - have - fresh
            cost = committee_ballot_batch_gas(
                size + 1,
                peers,
                num_candidates,
                election_rule,
                num_authors,
                draw=draw,
                fresh=len(fresh) + len(new),
            )
            if cost > budget:
                if size == 0:
                    raise ConfigurationError(
                        f"one committee ballot needs about {cost:,} gas, above {budget:,}"
                    )
                break
            fresh |= new
            size += 1
        sizes.append(size)
        have |= fresh
        start += size
        draw = False
    return sizes


def _largest(cost, budget: int, what: str) -> int:
    """Return the largest batch ``b >= 1`` with ``cost(b) <= budget`` (at most 256)."""
    if cost(1) > budget:
        raise ConfigurationError(f"one {what} needs about {cost(1):,} gas, above {budget:,}")
    size = 1
    while size < 256 and cost(size + 1) <= budget:
        size += 1
    return size


def register_batch_size(budget: int = DEFAULT_BUDGET) -> int:
    """Return the most participants one ``register`` may take within ``budget``."""
    return _largest(register_gas, budget, "registration")


def anchor_batch_size(kind: Kind = Kind.UPDATE, budget: int = DEFAULT_BUDGET) -> int:
    """Return the most digests of ``kind`` one ``anchor`` may take within ``budget``."""
    return _largest(lambda b: anchor_gas(b, kind), budget, f"{kind.name} anchor")


def ballot_model_candidates(peers: int, num_candidates: int, election_rule: int) -> int:
    """Return the ``M`` with which the ballot model costs a ballot of the run's rule.

    Truncated Borda (rule 0): the run's ``M``. The median rules (1, 2) store a
    ballot's scores or ranks packed instead of tallying points; they are costed as a
    Borda ballot with ``M = peers``, which bounds them from above (``tests/test_gas.py``
    measures all three), plus :func:`rank_sort_gas` for rule 2.
    """
    return num_candidates if election_rule == 0 else peers


def ballot_batch_size(
    peers: int, num_candidates: int, budget: int = DEFAULT_BUDGET, election_rule: int = 0
) -> int:
    """Return the most ballots of ``peers`` peers one ``submitBallots`` may take.

    Parameters
    ----------
    peers : int
        Peers per ballot: the round's update authors minus one (all of them for a
        non-author evaluator).
    num_candidates : int
        ``M`` of the run.
    budget : int
        Gas budget of one transaction.
    election_rule : int
        The run's rule; the median-rank rule (2) adds :func:`rank_sort_gas` per ballot.

    Raises
    ------
    ConfigurationError
        If a single ballot exceeds the budget (never for ``n <= 256`` and the default).
    """
    return _largest(
        lambda b: ballot_batch_gas(b, peers, num_candidates, election_rule), budget, "ballot"
    )


def batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """Split ``items`` into consecutive batches of at most ``size`` (``size >= 1``)."""
    if size < 1:
        raise ConfigurationError(f"batch size must be at least 1, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]

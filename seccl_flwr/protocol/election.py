"""Election rules: how the round's ballots decide each update author's standing.

Every rule takes the round's anchored updates (author -> digest) and the checked
ballots (evaluator -> peer -> score) and returns a *standing* per author; the
candidates are the ``M`` authors of highest standing, ties in the round's seed order
(:func:`seccl_flwr.protocol.borda.rank_standings`). Ballot rules, the seed and the
quorum are those of :mod:`seccl_flwr.protocol.borda`.

Rules the contract runs (the run fixes one on chain, ``Params.electionRule``):

``TRUNCATED_BORDA`` (0, the SecCL paper)
    Each ballot gives its top ``M`` peers ``M, ..., 1`` points; standing = total.
    Colluders lift each other once ``f - 1 >= M``: every colluding ballot spends all
    its points on colluders (ε >= 0.25 at n = 20, λ = 0.2).
``MEDIAN_SCORE`` (1)
    Standing = the lower median of the scores the author received (the
    ``ceil(k/2)``-th smallest of its ``k`` scores; 0 if nobody scored it). To lift a
    colluder above what the honest evaluators give it, more than half of the ballots
    scoring it must be colluding; to push an honest author below the lowest honest
    score it received, at least half must. A coalition below half of the evaluators
    therefore moves no standing outside the range of the honest scores. That range is
    wide, though: most of what separates two honest evaluators' scores of one update
    is how easy their own validation data is, and stealthy colluders (a poison scored
    a little below honest updates) win seats by zeroing honest peers, which moves
    honest medians to the low end of that range and theirs to the high end.
``MEDIAN_RANK`` (2)
    :func:`rank_median_standings`: rule 1 over each ballot's ranks instead of its
    scores (:func:`ballot_ranks`), so an evaluator's own offset moves nothing and
    the range an author's standing can be moved in is that of its honest *ranks*.

Rules measured in Python only (the comparison of ``examples/mnist/collusion.py``):
:func:`trimmed_mean_standings` and :func:`copeland_standings`.
"""

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence

from .borda import (
    ElectionError,
    QuorumNotReachedError,
    borda_totals,
    check_ballot,
    normalised,
    rank_standings,
    round_seed,
)
from .eip712 import MAX_SCORE
from .params import MEDIAN_RANK, MEDIAN_SCORE, TRUNCATED_BORDA, election_rule_of

Ballots = Mapping[str, Mapping[str, int]]
Assigned = Mapping[str, Sequence[str]]


def received_scores(authors: Mapping[str, bytes], ballots: Ballots) -> dict[str, list[int]]:
    """Return every author's received scores, in ballot order (checksummed addresses)."""
    received: dict[str, list[int]] = {author: [] for author in authors}
    for scores in ballots.values():
        for peer, score in scores.items():
            received[peer].append(int(score))
    return received


def lower_median(values: list[int]) -> int:
    """Return the ``ceil(k/2)``-th smallest of ``k`` values (0 if there are none)."""
    if not values:
        return 0
    return sorted(values)[(len(values) - 1) // 2]


def median_standings(updates: Mapping[str, bytes], ballots: Ballots) -> dict[str, int]:
    """Return each author's lower median received score (rule ``MEDIAN_SCORE``).

    ``updates`` and ``ballots`` must be checked and checksummed (:func:`standings`).
    """
    return {a: lower_median(s) for a, s in received_scores(updates, ballots).items()}


def trimmed_mean_standings(
    updates: Mapping[str, bytes], ballots: Ballots, trim: float = 0.25
) -> dict[str, int]:
    """Return each author's trimmed mean received score (Python only).

    The ``floor(trim·k)`` lowest and highest of its ``k`` scores are dropped; the
    mean of the rest is floored.
    """
    out = {}
    for author, values in received_scores(updates, ballots).items():
        cut = int(trim * len(values))
        kept = sorted(values)[cut : len(values) - cut]
        out[author] = sum(kept) // len(kept) if kept else 0
    return out


def copeland_standings(updates: Mapping[str, bytes], ballots: Ballots) -> dict[str, int]:
    """Return each author's Copeland score: 2 per pairwise majority won, 1 per tie.

    Author ``a`` beats ``b`` if more ballots scoring both give ``a`` the higher score
    than ``b`` (Python only).
    """
    authors = list(updates)
    out = dict.fromkeys(authors, 0)
    for i, a in enumerate(authors):
        for b in authors[i + 1 :]:
            margin = 0
            for scores in ballots.values():
                if a in scores and b in scores:
                    margin += (scores[a] > scores[b]) - (scores[a] < scores[b])
            out[a] += 2 if margin > 0 else 1 if margin == 0 else 0
            out[b] += 2 if margin < 0 else 1 if margin == 0 else 0
    return out


def ballot_ranks(scores: Mapping[str, int]) -> dict[str, int]:
    """Return each peer's rank within one ballot, scaled to ``[0, MAX_SCORE]``.

    The rank of a peer is the number of peers scored lower plus half of the others
    scored equal (so ties share their mean rank); the lowest scored peer gets 0,
    the highest ``MAX_SCORE``, floored. A ballot of one peer ranks it in the middle.
    """
    values = sorted(scores.values())
    span = 2 * (len(values) - 1)
    out = {}
    for peer, score in scores.items():
        lower, equal = bisect_left(values, score), bisect_right(values, score)
        doubled = 2 * lower + (equal - lower - 1)  # twice the mean rank of the tie
        out[peer] = doubled * MAX_SCORE // span if span else MAX_SCORE // 2
    return out


def rank_median_standings(updates: Mapping[str, bytes], ballots: Ballots) -> dict[str, int]:
    """Return each author's lower median rank among the ballots that scored it (rule 2).

    :func:`median_standings` over :func:`ballot_ranks`: what counts is
    where an evaluator places an update among the others it scored, not its raw
    score, so an evaluator whose data makes every model look better or worse moves
    no standing.
    """
    return median_standings(updates, {e: ballot_ranks(s) for e, s in ballots.items()})


StandingFn = Callable[[Mapping[str, bytes], Ballots], dict[str, int]]

MEDIAN_RULES: dict[int, StandingFn] = {
    MEDIAN_SCORE: median_standings,
    MEDIAN_RANK: rank_median_standings,
}
"""The contract's rules that elect by verified medians (``electByMedian``), by number."""

PYTHON_ONLY_RULES: dict[str, StandingFn] = {
    "trimmed-mean": trimmed_mean_standings,
    "copeland": copeland_standings,
}
"""Rules compared in Python (the fast experiment harness) but not run by the contract."""


def checked(
    updates: Mapping[str, bytes], ballots: Ballots, assigned: Assigned | None = None
) -> tuple[dict, dict]:
    """Return ``updates`` and ``ballots`` checksummed, once every ballot is checked.

    ``assigned``: every author's assigned peers in a committee run, ``None`` for full
    cross-evaluation (:func:`~seccl_flwr.protocol.borda.check_ballot`).

    Raises
    ------
    ElectionError
        If a ballot breaks a rule of :func:`~seccl_flwr.protocol.borda.check_ballot`.
    """
    updates, ballots, assigned = normalised(updates, ballots, assigned)
    for evaluator, scores in ballots.items():
        check_ballot(updates, evaluator, scores, assigned)
    return updates, ballots


def standings(
    updates: Mapping[str, bytes],
    ballots: Ballots,
    num_candidates: int,
    rule: int | str = TRUNCATED_BORDA,
    assigned: Assigned | None = None,
) -> dict[str, int]:
    """Return every author's standing under ``rule`` (checking every ballot first).

    The arguments are :func:`elect`'s (``num_candidates``: truncated Borda's points
    depend on ``M``); ``rule`` may also name a Python-only rule
    (:data:`PYTHON_ONLY_RULES`).

    Raises
    ------
    ElectionError
        If a ballot breaks a rule of :func:`~seccl_flwr.protocol.borda.check_ballot`.
    ConfigurationError
        If the rule is unknown.
    """
    if rule in PYTHON_ONLY_RULES:
        return PYTHON_ONLY_RULES[rule](*checked(updates, ballots, assigned))
    number = election_rule_of(rule)
    if number == TRUNCATED_BORDA:
        return borda_totals(updates, ballots, num_candidates, assigned)
    return MEDIAN_RULES[number](*checked(updates, ballots, assigned))


def elect(  # noqa: PLR0913 - the contract's election inputs
    updates: Mapping[str, bytes],
    ballots: Ballots,
    num_candidates: int,
    quorum: int,
    rule: int | str = TRUNCATED_BORDA,
    assigned: Assigned | None = None,
) -> tuple[list[str], dict[str, int]]:
    """Run one round's election under ``rule``, as the contract's ``elect`` does.

    The arguments are those of :func:`seccl_flwr.protocol.borda.elect`, plus ``rule``:
    the rule's number or name (:data:`~seccl_flwr.protocol.params.ELECTION_RULES`),
    and ``assigned``: every author's assigned peers in a committee run
    (:func:`seccl_flwr.protocol.committee.assignments`), ``None`` for full
    cross-evaluation. Under committees, Borda standings are normalised for partial
    ballots (:func:`~seccl_flwr.protocol.borda.borda_totals`); a median is over the
    scores an author received, whatever their number.

    Returns
    -------
    tuple[list[str], dict[str, int]]
        The candidates, best first, and every author's standing (Borda points, or
        normalised points, or median score or rank), addresses checksummed.

    Raises
    ------
    QuorumNotReachedError
        If there are fewer than ``quorum`` ballots.
    ElectionError
        If there is no update or a ballot breaks a rule.
    ConfigurationError
        If the rule is unknown.
    """
    if not updates:
        raise ElectionError("the round has no anchored update")
    result = standings(updates, ballots, num_candidates, rule, assigned)  # checks ballots first
    if len(ballots) < quorum:
        raise QuorumNotReachedError(f"{len(ballots)} ballots, below the quorum of {quorum}")
    seed = round_seed(updates.values())
    return rank_standings(result, seed, num_candidates), result

"""How likely colluders hold the majority of an evaluator committee (no I/O).

A run with committee size ``k`` (:mod:`seccl_flwr.protocol.committee`) has each of a
round's ``m`` updates scored by ``k_eff = min(k, m - 1)`` evaluators: the authors at
the ``k_eff`` slots before it in a uniformly random order of the round's authors. An
update's committee is therefore a uniformly random ``k_eff``-subset of the other
``m - 1`` authors, and the number of colluders on it is hypergeometric: ``f - 1``
colluders among the ``m - 1`` others for a colluding author, ``f`` for an honest one.

Under the median rule (a standing is the lower median of the received scores, the
``ceil(k/2)``-th smallest of ``k``), colluders who give each other the top score and
everyone else 0 *capture* an update when they hold enough of its committee:

``lift``
    a colluding update whose committee has at least ``floor(k/2) + 1`` colluders: its
    lower median is the colluders' top score, above any honest standing;
``push``
    an honest update whose committee has at least ``ceil(k/2)`` colluders: its lower
    median is the colluders' 0, below every honest score it received.

With full cross-evaluation (``k = m - 1``) the committee is everybody, so capture is
all or nothing: colluders lift each other exactly when ``f - 1 > (m - 1) / 2``.
Smaller committees trade that threshold for a probability that grows with ``f / m``
and falls with ``k``. This module gives it per update (:func:`update_capture`),
per round (:func:`round_capture`: at least one update of the round captured, exact,
by a transfer matrix over the round's order), the expected number of lifted
colluders per round (:func:`expected_lifted`), the smallest committee that keeps
them rare (:func:`committee_size_for`), and a Monte Carlo over
:func:`~seccl_flwr.protocol.committee.assignments` with random seeds
(:func:`simulate`) that checks them. The median rule's own guarantee (a minority
below half of an update's evaluators moves no standing outside the honest scores) is
unchanged; what committees change is that "half of the evaluators" is now half of
``k`` randomly drawn peers, not half of everyone.

Truncated Borda (rule 0) is not covered: its capture depends on the scores, not only
on the counts (see ``examples/mnist/RESULTS.md``).
"""

from dataclasses import dataclass
from math import comb

import numpy as np

from .committee import assignments, effective_size, evaluators_of

KINDS = ("lift", "push")
"""Capture kinds: ``lift`` a colluding update, ``push`` down an honest one."""

MAX_EXACT_ROUND_SIZE = 12
"""Largest ``k_eff < m - 1`` for which :func:`round_capture` is computed exactly
(its transfer matrix has ``2**k_eff`` states)."""


def thresholds(k_eff: int) -> tuple[int, int]:
    """Return ``(lift, push)``: colluding evaluators needed among ``k_eff`` to capture.

    ``lift = floor(k/2) + 1`` (more than half), ``push = ceil(k/2)`` (at least half:
    the lower median is the ``ceil(k/2)``-th smallest score).
    """
    return k_eff // 2 + 1, (k_eff + 1) // 2


def _check(m: int, f: int, k: int) -> int:
    if m < 2:
        raise ValueError(f"a round needs at least 2 authors, got m = {m}")
    if not 0 <= f <= m:
        raise ValueError(f"the colluders must number 0 to m = {m}, got f = {f}")
    return effective_size(k, m)


def hypergeometric_tail(population: int, marked: int, draws: int, at_least: int) -> float:
    """Return P(X >= at_least), X the marked items among ``draws`` without replacement."""
    if at_least <= 0:
        return 1.0
    total = comb(population, draws)
    hits = sum(
        comb(marked, x) * comb(population - marked, draws - x)
        for x in range(at_least, min(marked, draws) + 1)
    )
    return hits / total


def update_capture(m: int, f: int, k: int, kind: str) -> float:
    """Return the probability that one update is captured.

    Parameters
    ----------
    m : int
        The round's anchored updates (authors).
    f : int
        The colluders among them.
    k : int
        The run's committee size (0: full cross-evaluation).
    kind : str
        ``"lift"`` (a colluding update, 0 if ``f = 0``) or ``"push"`` (an honest
        update, 0 if ``f = m``).
    """
    k_eff = _check(m, f, k)
    lift, push = thresholds(k_eff)
    if kind == "lift":
        return hypergeometric_tail(m - 1, f - 1, k_eff, lift) if f else 0.0
    if kind == "push":
        return hypergeometric_tail(m - 1, f, k_eff, push) if f < m else 0.0
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def expected_lifted(m: int, f: int, k: int) -> float:
    """Return the expected number of colluding updates lifted in a round (``f·P(lift)``).

    Under the median rule a lifted colluder's standing is the top score, so with ``M``
    candidates about ``min(M, lifted)`` seats go to colluders.
    """
    return f * update_capture(m, f, k, "lift")


def committee_size_for(n: int, f: int, target: float, rounds: int = 1) -> int | None:
    """Return the smallest committee size that keeps lifted colluders rare, or ``None``.

    The smallest ``k`` in ``1 .. n - 1`` for which ``rounds · f · P(lift)`` (the
    expected number of colluding updates lifted over ``rounds`` rounds of ``n``
    authors, an upper bound on the probability that any is) is at most ``target``;
    ``n - 1`` means full cross-evaluation; ``None``: no size does (``f - 1`` is more
    than half of ``n - 1``). Under the lower median an even ``k`` needs ``k/2 + 1``
    colluders, an odd ``k + 1`` only ``k/2 + 1`` too, so even sizes are the cheaper
    safe choices and the bound is not monotone in ``k``.
    """
    for k in range(1, n):
        if rounds * expected_lifted(n, f, k) <= target:
            return k
    return None


def _round_free(m: int, fs: list[int], k_eff: int, lift: int, push: int) -> dict[int, float]:
    """Return P(no update captured) for each ``f`` in ``fs`` (one transfer matrix).

    The colluders' slots are a uniformly random ``f``-subset of ``m`` cyclic slots;
    the author at slot ``u`` is scored by slots ``u-1 .. u-k_eff``. A state is the
    last ``k_eff`` slots (bit 0 the latest); closed walks of length ``m`` are the
    cyclic arrangements, counted by colluders with no window reaching its threshold.
    """
    top = max(fs)
    states = 1 << k_eff
    ones = np.array([bin(s).count("1") for s in range(states)])
    allowed = (ones < push, ones < lift)  # by the type of the slot appended
    half = states >> 1
    good = np.zeros(top + 1)
    block = max(1, min(states, (1 << 22) // (states * (top + 1))))
    for first in range(0, states, block):
        starts = np.arange(first, min(first + block, states))
        v = np.zeros((len(starts), states, top + 1))
        v[np.arange(len(starts)), starts, 0] = 1.0
        for _ in range(m):
            nxt = np.zeros_like(v)
            for b in (0, 1):
                src = (v * allowed[b][None, :, None]).reshape(len(starts), 2, half, top + 1)
                src = src.sum(axis=1)  # drop the oldest slot
                nxt[:, b::2, b:] += src[:, :, : top + 1 - b]
            v = nxt
        good += v[np.arange(len(starts)), starts, :].sum(axis=0)
    return {f: float(good[f]) / comb(m, f) for f in fs}


def round_capture_all(
    m: int, k: int, colluders: list[int], kinds: tuple[str, ...] = KINDS
) -> dict[int, float]:
    """Return :func:`round_capture` for every ``f`` in ``colluders`` (one count for all)."""
    if not colluders:
        return {}
    k_eff = min(_check(m, f, k) for f in colluders)
    if unknown := set(kinds) - set(KINDS):
        raise ValueError(f"kinds must be among {KINDS}, got {sorted(unknown)}")
    lift, push = thresholds(k_eff)
    lift = lift if "lift" in kinds else k_eff + 1  # never reached
    push = push if "push" in kinds else k_eff + 1
    if k_eff == m - 1:
        return {f: float((f >= 1 and f - 1 >= lift) or (f < m and f >= push)) for f in colluders}
    if k_eff > MAX_EXACT_ROUND_SIZE:
        raise ValueError(f"k_eff = {k_eff} is too large for the exact count; use simulate()")
    free = _round_free(m, list(colluders), k_eff, lift, push)
    return {f: 1.0 - free[f] for f in colluders}


def round_capture(m: int, f: int, k: int, kinds: tuple[str, ...] = KINDS) -> float:
    """Return the probability that at least one update of a round is captured.

    Exact: all or nothing for full cross-evaluation (``k_eff = m - 1``), a transfer
    matrix over the round's order otherwise (``k_eff`` up to
    :data:`MAX_EXACT_ROUND_SIZE`). ``kinds`` selects the captures counted.

    Raises
    ------
    ValueError
        If ``k_eff`` is between :data:`MAX_EXACT_ROUND_SIZE` and ``m - 1`` (use
        :func:`simulate`), or a kind is unknown.
    """
    return round_capture_all(m, k, [f], kinds)[f]


@dataclass(frozen=True)
class Simulated:
    """Monte Carlo frequencies of :func:`simulate` for one number of colluders ``f``.

    ``*_update`` are the mean over trials of the fraction of colluding (``lift``) or
    honest (``push``) updates captured, ``*_update_se`` their standard errors over
    the trials; ``round_*`` the fraction of trials with at least one capture.
    """

    f: int
    trials: int
    lift_update: float
    lift_update_se: float
    push_update: float
    push_update_se: float
    round_lift: float
    round_any: float
    lifted: float  # mean number of colluding updates lifted per round
    lifted_dist: tuple[float, ...]  # fraction of rounds with 0, 1, ..., f lifted

    def seats(self, num_candidates: int) -> float:
        """Return the mean of ``min(M, lifted)``: the seats lifted colluders take."""
        return sum(p * min(x, num_candidates) for x, p in enumerate(self.lifted_dist))


def _addresses(m: int) -> list[str]:
    return [f"0x{i + 1:040x}" for i in range(m)]


def simulate(m: int, k: int, colluders: list[int], trials: int, seed: int = 0) -> list[Simulated]:
    """Draw ``trials`` rounds of :func:`~seccl_flwr.protocol.committee.assignments`.

    Each round gets a random 32-byte committee seed (``numpy`` generator ``seed``);
    the first ``f`` authors in anchoring order collude, as in the experiments. One
    draw serves every ``f`` in ``colluders``.
    """
    authors = _addresses(m)
    k_eff = effective_size(k, m)
    lift, push = thresholds(k_eff)
    rng = np.random.default_rng(seed)
    index = {a.lower(): i for i, a in enumerate(authors)}
    counts = np.zeros((trials, m, m + 1), dtype=np.int32)  # trial, author, colluders below f
    for t in range(trials):
        assigned = assignments(authors, rng.bytes(32), k)
        for author, evaluators in evaluators_of(assigned).items():
            ranks = sorted(index[e.lower()] for e in evaluators)
            # colluding evaluators of this author when the first f authors collude
            counts[t, index[author.lower()]] = np.searchsorted(ranks, np.arange(m + 1))
    out = []
    for f in colluders:
        c = counts[:, :, f]
        lifted = (c[:, :f] >= lift) if f else np.zeros((trials, 0), dtype=bool)
        pushed = (c[:, f:] >= push) if f < m else np.zeros((trials, 0), dtype=bool)
        per_lift = lifted.mean(axis=1) if f else np.zeros(trials)
        per_push = pushed.mean(axis=1) if f < m else np.zeros(trials)
        out.append(
            Simulated(
                f=f,
                trials=trials,
                lift_update=float(per_lift.mean()),
                lift_update_se=float(per_lift.std(ddof=1) / np.sqrt(trials)),
                push_update=float(per_push.mean()),
                push_update_se=float(per_push.std(ddof=1) / np.sqrt(trials)),
                round_lift=float(lifted.any(axis=1).mean()),
                round_any=float((lifted.any(axis=1) | pushed.any(axis=1)).mean()),
                lifted=float(lifted.sum(axis=1).mean()),
                lifted_dist=tuple(
                    float(x) for x in np.bincount(lifted.sum(axis=1), minlength=f + 1) / trials
                ),
            )
        )
    return out

"""Evaluator committees: the assignment's properties and the election under partial ballots."""

import os
from collections import Counter

import pytest
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from seccl_flwr.protocol import borda, election
from seccl_flwr.protocol.committee import (
    CommitteeError,
    assignments,
    committee_order,
    committee_seed,
    effective_size,
    evaluators_of,
)
from seccl_flwr.protocol.params import MEDIAN_SCORE, TRUNCATED_BORDA


def _addresses(count: int) -> list[str]:
    return [to_checksum_address(f"0x{index + 1:040x}") for index in range(count)]


seeds = st.binary(min_size=32, max_size=32)


@settings(max_examples=60, deadline=None)
@given(seed=seeds, m=st.integers(0, 40), k=st.integers(0, 45))
def test_every_update_has_k_evaluators_and_every_evaluator_k_peers(seed, m, k):
    authors = _addresses(m)
    assigned = assignments(authors, seed, k)
    k_eff = effective_size(k, m)
    assert sorted(assigned) == sorted(authors)
    for evaluator, peers in assigned.items():
        assert len(peers) == len(set(peers)) == k_eff
        assert evaluator not in peers
        assert set(peers) <= set(authors)
    assert all(len(e) == k_eff for e in evaluators_of(assigned).values())


@settings(max_examples=30, deadline=None)
@given(seed=seeds, m=st.integers(0, 60))
def test_the_committee_order_is_a_permutation_of_the_anchoring_positions(seed, m):
    assert sorted(committee_order(seed, m)) == list(range(m))


def test_size_zero_is_full_cross_evaluation_and_needs_no_seed():
    authors = _addresses(5)
    assigned = assignments(authors, None, 0)
    assert {a: set(p) for a, p in assigned.items()} == {a: set(authors) - {a} for a in authors}


def test_a_size_beyond_the_authors_is_every_other_author():
    authors = _addresses(4)
    assigned = assignments(authors, bytes(32), 10)
    assert all(len(peers) == 3 for peers in assigned.values())


def test_the_assignment_depends_on_the_block_hash():
    authors = _addresses(12)
    round_seed = os.urandom(32)
    drawn = {
        tuple(committee_order(committee_seed(bytes([b]) * 32, round_seed), len(authors)))
        for b in range(20)
    }
    assert len(drawn) == 20


def test_every_author_is_equally_likely_at_every_slot():
    # 3,000 orders of 6: each (slot, position) pair expected 500 times
    counts = Counter()
    for draw in range(3000):
        order = committee_order(committee_seed(draw.to_bytes(32, "big"), bytes(32)), 6)
        counts.update(enumerate(order))
    assert len(counts) == 36
    assert all(400 < c < 600 for c in counts.values()), counts


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: committee_seed(b"short", bytes(32)), "seal block hash must be 32 bytes"),
        (lambda: committee_order(bytes(31), 3), "committee seed must be 32 bytes"),
        (lambda: effective_size(-1, 3), "at least 0"),
        (lambda: assignments(_addresses(3), None, 2), "needs the committee seed"),
    ],
)
def test_malformed_committee_inputs_are_named(call, match):
    with pytest.raises(CommitteeError, match=match):
        call()


def _round(m: int, k: int, seed: bytes = bytes(range(32))):
    authors = _addresses(m)
    updates = {a: bytes([i + 1]) * 32 for i, a in enumerate(authors)}
    return authors, updates, assignments(authors, seed, k)


def test_a_ballot_must_score_exactly_the_assigned_peers():
    authors, updates, assigned = _round(6, 2)
    evaluator = authors[0]
    peers = assigned[evaluator]
    outsider = next(a for a in authors if a not in peers and a != evaluator)
    with pytest.raises(borda.ElectionError, match="not assigned"):
        borda.check_ballot(updates, evaluator, {peers[0]: 1, outsider: 2}, assigned)
    with pytest.raises(borda.IncompleteBallotError, match="assigned peers"):
        borda.check_ballot(updates, evaluator, {peers[0]: 1}, assigned)
    borda.check_ballot(updates, evaluator, dict.fromkeys(peers, 5), assigned)


def test_a_non_author_has_no_committee_seat():
    authors, updates, assigned = _round(4, 2)
    stranger = to_checksum_address("0x" + "ab" * 20)
    with pytest.raises(borda.ElectionError, match="no committee seat"):
        borda.check_ballot(updates, stranger, {authors[0]: 1}, assigned)


def test_borda_under_committees_is_not_hurt_by_a_missing_ballot():
    # every evaluator ranks by a common quality; one evaluator's ballot is missing:
    # the authors it would have scored keep their mean points, not lose a ballot's
    authors, updates, assigned = _round(8, 3)
    quality = {a: 100 * i for i, a in enumerate(authors)}
    ballots = {e: {p: quality[p] for p in peers} for e, peers in assigned.items()}
    full = borda.borda_totals(updates, ballots, 2, assigned)
    missing = dict(ballots)
    missing.pop(authors[3])
    partial = borda.borda_totals(updates, missing, 2, assigned)
    seed = borda.round_seed(updates.values())
    for author in authors:
        scored_by = [e for e, peers in assigned.items() if author in peers and e in missing]
        points = sum(borda.ballot_points(ballots[e], 2, seed).get(author, 0) for e in scored_by)
        assert partial[author] == points * 1_000_000 // len(scored_by)
    best = authors[-1]  # first on every ballot that scores it: M points per ballot
    assert full[best] == partial[best] == 2 * 1_000_000


def test_committee_elections_under_both_rules_elect_the_best_when_scores_agree():
    authors, updates, assigned = _round(10, 4)
    quality = {a: 1000 * i for i, a in enumerate(authors)}
    ballots = {e: {p: quality[p] for p in peers} for e, peers in assigned.items()}
    # the median of agreeing scores is the common score: the two best win
    candidates, medians = election.elect(updates, ballots, 2, 6, MEDIAN_SCORE, assigned)
    assert medians == quality
    assert candidates == [authors[-1], authors[-2]]
    # Borda is relative to the committee: the best is first on each of its ballots
    # and always wins; the second seat may go to whoever topped a weaker committee
    candidates, _ = election.elect(updates, ballots, 2, 6, TRUNCATED_BORDA, assigned)
    assert candidates[0] == authors[-1]

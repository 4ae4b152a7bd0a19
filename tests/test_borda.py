"""The pure-Python truncated Borda election, on hand-computed examples."""

import pytest
from eth_abi import encode
from eth_utils import keccak

from seccl_flwr.protocol.borda import (
    ElectionError,
    IncompleteBallotError,
    QuorumNotReachedError,
    ballot_points,
    borda_totals,
    check_ballot,
    elect,
    rank_ballot,
    round_seed,
    tie_key,
)
from seccl_flwr.protocol.eip712 import MAX_SCORE
from tests.conftest_contract import make_keys

P = [k.address for k in make_keys(12, "borda")]
"""Participant addresses; examples refer to them as P[0], P[1], ..."""


def updates(*indices, label="u"):
    """Anchored updates of the given participants (distinct digests)."""
    return {P[i]: keccak(text=f"{label}/{i}") for i in indices}


def tie_order(seed, indices):
    """The participants sorted by keccak256(abi.encode(seed, address)), from the rule."""
    return sorted(indices, key=lambda i: keccak(encode(["bytes32", "address"], [seed, P[i]])))


def row(**scores):
    """A ballot row written as p0=..., p3=...: peer P[i] -> score."""
    return {P[int(k[1:])]: v for k, v in scores.items()}


def test_three_authors_two_candidates():
    ballots = {
        P[0]: row(p1=900, p2=800),  # 1 -> 2 points, 2 -> 1
        P[1]: row(p0=500, p2=400),  # 0 -> 2, 2 -> 1
        P[2]: row(p0=100, p1=700),  # 1 -> 2, 0 -> 1
    }
    candidates, totals = elect(updates(0, 1, 2), ballots, 2, 3)
    assert totals == {P[0]: 3, P[1]: 4, P[2]: 2}
    assert candidates == [P[1], P[0]]


def test_seed_is_the_xor_of_the_update_digests():
    a, b = b"\x0f" * 32, b"\xf0" * 31 + b"\x01"
    assert round_seed([a, b]) == b"\xff" * 31 + b"\x0e"
    assert round_seed([a, b]) == round_seed([b, a])
    assert round_seed([]) == bytes(32)
    with pytest.raises(ElectionError, match="32 bytes"):
        round_seed([b"short"])


def test_tie_key_is_keccak_of_abi_encoded_seed_and_address():
    seed = keccak(b"seed")
    assert tie_key(seed, P[3]) == keccak(encode(["bytes32", "address"], [seed, P[3]]))
    assert tie_key(seed, P[3].lower()) == tie_key(seed, P[3])


def test_equal_scores_rank_in_the_seed_order():
    seed = keccak(b"some seed")
    scores = {P[5]: 10, P[2]: 10, P[9]: 11, P[0]: 3, P[7]: 10}
    tied = [P[i] for i in tie_order(seed, [5, 2, 7])]
    assert rank_ballot(scores, seed) == [P[9], *tied, P[0]]
    assert ballot_points(scores, 3, seed) == {P[9]: 3, tied[0]: 2, tied[1]: 1}
    # another seed, another order: the server cannot pick it without changing updates
    other = keccak(b"another seed")
    assert {tuple(tie_order(s, range(12))) for s in (seed, other)} != {tuple(range(12))}
    assert tie_order(seed, range(12)) != tie_order(other, range(12))


def test_equal_totals_at_the_cut_follow_the_seed_order():
    ups = updates(0, 1, 2, 3)
    seed = round_seed(ups.values())
    # M = 3: 0 and 1 tie at 7 points, 2 and 3 tie at 5 at the cut
    ballots = {
        P[0]: row(p1=9, p2=5, p3=1),  # 1: 3, 2: 2, 3: 1
        P[1]: row(p0=1, p2=5, p3=9),  # 3: 3, 2: 2, 0: 1
        P[2]: row(p0=9, p1=5, p3=1),  # 0: 3, 1: 2, 3: 1
        P[3]: row(p0=9, p1=5, p2=1),  # 0: 3, 1: 2, 2: 1
    }
    candidates, totals = elect(ups, ballots, 3, 1)
    assert totals == {P[0]: 7, P[1]: 7, P[2]: 5, P[3]: 5}
    top, cut = tie_order(seed, [0, 1]), tie_order(seed, [2, 3])
    assert candidates == [P[top[0]], P[top[1]], P[cut[0]]]


def test_ballot_with_fewer_peers_than_m_hands_out_m_down():
    seed = bytes(32)
    assert ballot_points({P[1]: 5}, 3, seed) == {P[1]: 3}
    assert ballot_points({P[1]: 5, P[2]: 9}, 3, seed) == {P[2]: 3, P[1]: 2}
    assert ballot_points({}, 3, seed) == {}


def test_only_top_m_of_a_ballot_score():
    points = ballot_points({P[0]: 1, P[1]: 2, P[2]: 3, P[3]: 4, P[4]: 5}, 2, bytes(32))
    assert points == {P[4]: 2, P[3]: 1}


def test_fewer_authors_than_m_elects_all_authors():
    ballots = {P[0]: row(p3=1, p1=2), P[1]: row(p3=0)}
    candidates, totals = elect(updates(3, 1), ballots, 4, 1)
    assert totals == {P[1]: 4, P[3]: 3 + 4}
    assert candidates == [P[3], P[1]]


def test_evaluator_need_not_be_an_author_but_scores_them_all():
    candidates, totals = elect(updates(0, 1), {P[5]: row(p0=1, p1=0)}, 1, 1)
    assert totals == {P[0]: 1, P[1]: 0}
    assert candidates == [P[0]]


def test_five_participants_m_three_by_hand():
    ballots = {
        P[0]: row(p1=800_000, p2=810_000, p3=790_000, p4=700_000),  # 2:3, 1:2, 3:1
        P[1]: row(p0=700_000, p2=710_000, p3=720_000, p4=0),  # 3:3, 2:2, 0:1
        P[2]: row(p0=500_000, p1=400_000, p3=300_000, p4=200_000),  # 0:3, 1:2, 3:1
        P[4]: row(p0=1, p1=2, p2=3, p3=4),  # 3:3, 2:2, 1:1
    }
    candidates, totals = elect(updates(0, 1, 2, 3, 4), ballots, 3, 4)
    assert totals == {P[0]: 4, P[1]: 5, P[2]: 7, P[3]: 8, P[4]: 0}
    assert candidates == [P[3], P[2], P[1]]


def test_any_spelling_of_an_address_is_one_participant():
    ups = {P[0].lower(): keccak(b"a"), P[1]: keccak(b"b")}
    ballots = {P[1].lower(): {P[0]: 3}, P[0]: {P[1].lower(): 2}}
    candidates, totals = elect(ups, ballots, 1, 2)
    assert totals == {P[0]: 1, P[1]: 1}
    assert candidates == [P[tie_order(round_seed(ups.values()), [0, 1])[0]]]


def test_incomplete_ballots_are_refused():
    authors = [P[0], P[1], P[2]]
    with pytest.raises(IncompleteBallotError, match="missing"):
        check_ballot(authors, P[0], row(p1=5))
    with pytest.raises(IncompleteBallotError, match="3 other authors"):
        check_ballot(authors, P[7], row(p0=1, p1=1))
    with pytest.raises(IncompleteBallotError):
        elect(updates(0, 1, 2), {P[0]: row(p1=5)}, 1, 1)
    check_ballot(authors, P[0], row(p1=5, p2=0))  # complete


def test_self_score_non_author_and_out_of_range_scores_are_refused():
    with pytest.raises(ElectionError, match="itself"):
        borda_totals(updates(0, 1), {P[0]: row(p0=5, p1=3)}, 1)
    with pytest.raises(ElectionError, match="non-authors"):
        elect(updates(0, 1), {P[0]: row(p1=5, p2=3)}, 1, 1)
    with pytest.raises(ElectionError, match="outside"):
        elect(updates(0, 1), {P[0]: row(p1=MAX_SCORE + 1)}, 1, 1)
    with pytest.raises(ElectionError, match="outside"):
        elect(updates(0, 1), {P[0]: row(p1=-1)}, 1, 1)


def test_the_quorum_is_required():
    ballots = {P[0]: row(p1=1), P[1]: row(p0=1)}
    with pytest.raises(QuorumNotReachedError, match="2 ballots, below the quorum of 3"):
        elect(updates(0, 1), ballots, 1, 3)
    with pytest.raises(QuorumNotReachedError, match="0 ballots"):
        elect(updates(0, 1), {}, 1, 1)
    assert elect(updates(0, 1), ballots, 1, 2)[1] == {P[0]: 1, P[1]: 1}


def test_no_update_and_m_below_one_are_refused():
    with pytest.raises(ElectionError, match="no anchored update"):
        elect({}, {}, 1, 1)
    with pytest.raises(ElectionError, match="at least 1"):
        ballot_points({P[1]: 1}, 0, bytes(32))
    with pytest.raises(ElectionError, match="at least 1"):
        elect(updates(0, 1), {P[0]: row(p1=1)}, 0, 1)


def test_result_does_not_depend_on_ballot_or_author_order():
    ballots = {P[0]: row(p1=3, p2=3), P[1]: row(p2=1, p0=2), P[2]: row(p0=9, p1=9)}
    reordered = {P[2]: row(p1=9, p0=9), P[0]: row(p2=3, p1=3), P[1]: row(p0=2, p2=1)}
    ups = updates(0, 1, 2)
    backwards = dict(reversed(list(ups.items())))
    assert elect(ups, ballots, 2, 3) == elect(backwards, reordered, 2, 3)

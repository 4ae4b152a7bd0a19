"""The pure-Python truncated Borda election, on hand-computed examples."""

import pytest

from seccl_flwr.protocol.borda import ballot_points, borda_totals, elect, rank_ballot


def test_three_authors_two_candidates():
    # Participant indices 0, 1, 2 all sent updates; M = 2.
    ballots = {
        0: {1: 900, 2: 800},  # 1 -> 2 points, 2 -> 1
        1: {0: 500, 2: 500},  # tie: lower index 0 first -> 0: 2, 2: 1
        2: {0: 100, 1: 700},  # 1 -> 2, 0 -> 1
    }
    candidates, totals = elect([0, 1, 2], ballots, 2)
    assert totals == {0: 3, 1: 4, 2: 2}
    assert candidates == [1, 0]


def test_equal_totals_elect_the_lower_index_first():
    ballots = {1: {3: 10, 0: 5}, 2: {0: 10, 3: 5}}  # 0 and 3 both get 2 + 1
    candidates, totals = elect([3, 0, 1, 2], ballots, 2)
    assert totals == {0: 3, 1: 0, 2: 0, 3: 3}
    assert candidates == [0, 3]


def test_equal_scores_rank_the_lower_index_first():
    assert rank_ballot({5: 10, 2: 10, 9: 11, 0: 3}) == [9, 2, 5, 0]
    assert ballot_points({5: 10, 2: 10, 9: 11, 0: 3}, 3) == {9: 3, 2: 2, 5: 1}


def test_ballot_with_fewer_peers_than_m_hands_out_m_down():
    assert ballot_points({1: 5}, 3) == {1: 3}
    assert ballot_points({1: 5, 2: 9}, 3) == {2: 3, 1: 2}
    assert ballot_points({}, 3) == {}


def test_only_top_m_of_a_ballot_score():
    points = ballot_points({0: 1, 1: 2, 2: 3, 3: 4, 4: 5}, 2)
    assert points == {4: 2, 3: 1}


def test_zero_ballots_elects_the_lowest_indices():
    candidates, totals = elect([4, 2, 7], {}, 2)
    assert totals == {2: 0, 4: 0, 7: 0}
    assert candidates == [2, 4]


def test_fewer_authors_than_m_elects_all_authors():
    candidates, totals = elect([3, 1], {0: {3: 1, 1: 2}}, 4)
    assert totals == {1: 4, 3: 3}
    assert candidates == [1, 3]


def test_evaluator_need_not_be_an_author():
    candidates, totals = elect([0, 1], {5: {0: 1, 1: 0}}, 1)
    assert totals == {0: 1, 1: 0}
    assert candidates == [0]


def test_five_participants_m_three_by_hand():
    ballots = {
        0: {1: 800_000, 2: 810_000, 3: 790_000, 4: 800_000},  # 2:3, 1:2, 4:1
        1: {0: 700_000, 2: 710_000, 3: 720_000, 4: 0},  # 3:3, 2:2, 0:1
        2: {0: 500_000, 1: 500_000, 3: 500_000, 4: 500_000},  # 0:3, 1:2, 3:1
        4: {0: 1, 1: 2, 2: 3, 3: 4},  # 3:3, 2:2, 1:1
    }
    candidates, totals = elect([0, 1, 2, 3, 4], ballots, 3)
    assert totals == {0: 4, 1: 5, 2: 7, 3: 7, 4: 1}
    assert candidates == [2, 3, 1]


def test_self_score_is_rejected():
    with pytest.raises(ValueError, match="itself"):
        borda_totals([0, 1], {0: {0: 5, 1: 3}}, 1)
    with pytest.raises(ValueError, match="itself"):
        elect([0, 1], {1: {1: 5}}, 1)


def test_scoring_a_non_author_is_rejected():
    with pytest.raises(ValueError, match="non-authors"):
        elect([0, 1], {0: {1: 5, 2: 3}}, 1)


def test_m_below_one_is_rejected():
    with pytest.raises(ValueError):
        ballot_points({1: 1}, 0)
    with pytest.raises(ValueError):
        elect([0, 1], {0: {1: 1}}, 0)


def test_result_does_not_depend_on_ballot_or_author_order():
    ballots = {0: {1: 3, 2: 3}, 1: {2: 1, 0: 2}, 2: {0: 9, 1: 9}}
    reordered = {2: {1: 9, 0: 9}, 0: {2: 3, 1: 3}, 1: {0: 2, 2: 1}}
    assert elect([0, 1, 2], ballots, 2) == elect([2, 0, 1], reordered, 2)

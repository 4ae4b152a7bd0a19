"""The election rules (seccl_flwr.protocol.election): what colluders can and cannot do.

The contract's side of the median rule is ``tests/test_election_differential.py``;
here the Python reference is called directly, as Flower's tests call multikrum.py.
"""

import random

import pytest
from eth_utils import keccak

from seccl_flwr.errors import ConfigurationError
from seccl_flwr.protocol import borda, election
from seccl_flwr.protocol.eip712 import MAX_SCORE
from seccl_flwr.protocol.params import (
    MAX_MEDIAN_PARTICIPANTS,
    MEDIAN_RANK,
    MEDIAN_SCORE,
    TRUNCATED_BORDA,
    RunParams,
    election_rule_of,
    param_mismatches,
    run_params,
)
from tests.conftest_contract import make_keys

N = 20
ADDR = [k.address for k in make_keys(N, "rules")]
UPDATES = {a: keccak(text=f"update/{a}") for a in ADDR}


def collusion_ballots(colluders: int, honest_score, rng: random.Random) -> dict:
    """Ballots of a round whose first ``colluders`` participants collude.

    Honest evaluators score honest peers ``honest_score(rng)`` and colluders 100,000
    (a flipped-label update is poor); colluders give each other MAX_SCORE, honest 0.
    """
    bad = set(ADDR[:colluders])
    ballots = {}
    for evaluator in ADDR:
        row = {}
        for peer in ADDR:
            if peer == evaluator:
                continue
            if evaluator in bad:
                row[peer] = MAX_SCORE if peer in bad else 0
            else:
                row[peer] = 100_000 if peer in bad else honest_score(rng)
        ballots[evaluator] = row
    return ballots


@pytest.mark.parametrize("colluders", [1, 4, 5, 8, 9])
def test_colluders_below_half_cannot_lift_each_other_under_the_median(colluders):
    rng = random.Random(colluders)
    ballots = collusion_ballots(colluders, lambda r: r.randrange(700_000, 900_000), rng)
    elected, standings = election.elect(UPDATES, ballots, 4, N // 2 + 1, MEDIAN_SCORE)
    assert not set(elected) & set(ADDR[:colluders])
    assert all(standings[a] == 100_000 for a in ADDR[:colluders])  # the honest verdict


def test_truncated_borda_lets_five_colluders_in():
    """The paper's rule: once f - 1 >= M the colluders' points go only to colluders."""
    ballots = collusion_ballots(5, lambda r: r.randrange(700_000, 900_000), random.Random(0))
    elected, _ = borda.elect(UPDATES, ballots, 4, N // 2 + 1)
    assert set(elected) & set(ADDR[:5])


def test_a_coalition_of_half_the_evaluators_lifts_itself_under_the_median():
    """What the rule does not tolerate: f = n/2 colluders hold the median of each other."""
    ballots = collusion_ballots(10, lambda r: r.randrange(700_000, 900_000), random.Random(1))
    elected, _ = election.elect(UPDATES, ballots, 4, N // 2 + 1, MEDIAN_SCORE)
    assert set(elected) <= set(ADDR[:10])


def test_a_free_rider_stays_below_improving_updates():
    """An all-zero update scores as the old model; every honest update scores above it."""
    ballots = {}
    for evaluator in ADDR:
        ballots[evaluator] = {
            p: 600_000 if p == ADDR[0] else 650_000 + ADDR.index(p) for p in ADDR if p != evaluator
        }
    elected, _ = election.elect(UPDATES, ballots, 4, 1, MEDIAN_SCORE)
    assert ADDR[0] not in elected


def test_equal_medians_are_ordered_by_the_round_seed():
    ballots = {e: {p: 7 for p in ADDR if p != e} for e in ADDR}
    elected, standings = election.elect(UPDATES, ballots, 5, 1, MEDIAN_SCORE)
    seed = borda.round_seed(UPDATES.values())
    assert set(standings.values()) == {7}
    assert elected == sorted(ADDR, key=lambda a: borda.tie_key(seed, a))[:5]


def test_lower_median_takes_the_smaller_middle_value():
    assert election.lower_median([]) == 0
    assert election.lower_median([5]) == 5
    assert election.lower_median([4, 1, 3, 2]) == 2
    assert election.lower_median([9, 1, 5]) == 5


def test_rule_zero_is_truncated_borda():
    rng = random.Random(3)
    ballots = collusion_ballots(3, lambda r: r.randrange(0, 4), rng)
    assert election.elect(UPDATES, ballots, 4, 1, "borda") == borda.elect(UPDATES, ballots, 4, 1)


def test_ballot_ranks_share_ties_and_span_the_score_range():
    assert election.ballot_ranks({"a": 5, "b": 9, "c": 1}) == {"a": 500_000, "b": MAX_SCORE, "c": 0}
    # a and b tie for the two lowest places: both get rank 0.5 of 0..2
    assert election.ballot_ranks({"a": 3, "b": 3, "c": 8}) == {
        "a": 250_000,
        "b": 250_000,
        "c": MAX_SCORE,
    }
    assert election.ballot_ranks({"a": 7}) == {"a": MAX_SCORE // 2}
    assert election.ballot_ranks({}) == {}


def stealthy_ballots(colluders: int, rng: random.Random) -> dict:
    """A round of stealthy colluders: honest evaluators score a colluder's update 4
    points below an honest one, plus an offset of their own data of up to 30 points
    (what separates two honest evaluators' scores most); colluders vote as above."""
    bad = set(ADDR[:colluders])
    ballots = {}
    for evaluator in ADDR:
        offset = rng.randrange(0, 300_000)
        row = {}
        for peer in (p for p in ADDR if p != evaluator):
            if evaluator in bad:
                row[peer] = MAX_SCORE if peer in bad else 0
            else:
                quality = 560_000 if peer in bad else 600_000
                row[peer] = quality + offset + rng.randrange(0, 20_000)
        ballots[evaluator] = row
    return ballots


@pytest.mark.parametrize("colluders", [4, 8, 9])
def test_ranks_within_a_ballot_keep_stealthy_colluders_out_where_raw_medians_do_not(colluders):
    """The evaluator's own offset spreads an update's raw scores wider than the gap
    between a stealthy and an honest update, so colluders that score every honest
    peer 0 push honest medians down and lift theirs; within each ballot the honest
    evaluators still rank every honest update above every colluder's."""
    ballots = stealthy_ballots(colluders, random.Random(colluders))
    bad = set(ADDR[:colluders])
    raw, _ = election.elect(UPDATES, ballots, 4, N // 2 + 1, MEDIAN_SCORE)
    ranked, _ = election.elect(UPDATES, ballots, 4, N // 2 + 1, "rank-median")
    assert not set(ranked) & bad
    if colluders >= 8:
        assert set(raw) & bad  # what the stealthy poison exploits


def test_rank_median_ignores_each_evaluators_scale():
    """Shifting one evaluator's scores (its data's offset) leaves every standing."""
    ballots = stealthy_ballots(5, random.Random(5))
    shifted = {}
    for i, (e, row) in enumerate(ballots.items()):
        shift = MAX_SCORE - max(row.values()) if i % 2 else -min(row.values())
        shifted[e] = {p: v + shift for p, v in row.items()}
    assert election.standings(UPDATES, shifted, 4, MEDIAN_SCORE) != election.standings(
        UPDATES, ballots, 4, MEDIAN_SCORE
    )
    assert election.standings(UPDATES, shifted, 4, "rank-median") == election.standings(
        UPDATES, ballots, 4, "rank-median"
    )


def test_the_python_only_rules_check_ballots_too():
    ballots = {ADDR[0]: {ADDR[0]: 1}}
    for rule in ("trimmed-mean", "copeland", "rank-median", MEDIAN_SCORE):
        with pytest.raises(borda.ElectionError, match="scores itself"):
            election.standings(UPDATES, ballots, 4, rule)


def test_rules_by_name_or_number_and_unknown_ones_refused():
    assert election_rule_of("median") == election_rule_of(1) == MEDIAN_SCORE
    assert election_rule_of("rank-median") == election_rule_of(2) == MEDIAN_RANK
    assert election_rule_of(" Borda ") == election_rule_of("0") == TRUNCATED_BORDA
    with pytest.raises(ConfigurationError, match="unknown election rule 'copeland'"):
        election_rule_of("copeland")
    with pytest.raises(ConfigurationError, match="unknown election rule"):
        election.elect(UPDATES, {}, 4, 0, 7)


def test_run_params_carry_the_rule_within_its_participant_limit():
    assert run_params(20, 0.2, 0.1, False, election_rule=MEDIAN_SCORE).election_rule == 1
    with pytest.raises(ConfigurationError, match="at most 104 participants"):
        run_params(MAX_MEDIAN_PARTICIPANTS + 1, 0.2, 0.1, False, election_rule=MEDIAN_SCORE)
    assert run_params(20, 0.2, 0.1, False, election_rule=MEDIAN_RANK).election_rule == 2
    with pytest.raises(ConfigurationError, match="rank-median election rule supports at most 104"):
        run_params(MAX_MEDIAN_PARTICIPANTS + 1, 0.2, 0.1, False, election_rule=MEDIAN_RANK)
    with pytest.raises(ConfigurationError, match="election_rule must be one of"):
        run_params(20, 0.2, 0.1, False, election_rule=3)


def test_a_pinned_rule_other_than_the_chains_is_a_mismatch():
    median_run = RunParams(4, 11, 100_000, False, MEDIAN_SCORE)
    assert param_mismatches(median_run, 20, election_rule=MEDIAN_SCORE) == []
    assert param_mismatches(median_run, 20) == []  # unpinned: any known rule
    (problem,) = param_mismatches(median_run, 20, election_rule=TRUNCATED_BORDA)
    assert problem == "election rule 1 (median), but the pin is 0 (borda)"
    (unknown,) = param_mismatches(RunParams(4, 11, 100_000, False, 9), 20)
    assert "election rule 9 (unknown)" in unknown


@pytest.mark.parametrize("rule", [MEDIAN_SCORE, MEDIAN_RANK])
def test_the_typed_client_elects_a_median_run_from_the_ballots_on_chain(rule):
    """csc.elect reads the accepted ballots back and hands the contract their medians
    (of the scores, or of the ranks the contract stored in their place)."""
    from eth_account import Account

    from seccl_flwr.chain.connection import connect, ensure_funded
    from seccl_flwr.chain.csc import open_run
    from seccl_flwr.chain.errors import ContractRevertError
    from seccl_flwr.protocol.eip712 import Kind
    from seccl_flwr.protocol.signed import SignedMessage
    from tests.csc_helpers import roster_of

    w3 = connect("embedded")
    owner = Account.create()
    ensure_funded(w3, owner)
    people = [Account.create() for _ in range(5)]
    run_id = keccak(text="median-run")
    params = RunParams(2, 3, 100_000, False, rule)
    csc, _ = open_run(w3, owner, run_id, params, roster_of(run_id, w3.eth.chain_id, people))
    assert csc.params().election_rule == rule
    digests = {p.address: keccak(text=f"u/{p.address}") for p in people[:4]}  # 4 authors
    csc.anchor(1, Kind.UPDATE, list(digests), list(digests.values()))
    rng = random.Random(5)
    table = {e.address: {a: rng.randrange(4) for a in digests if a != e.address} for e in people}
    signed = [
        SignedMessage.sign(
            e,
            csc.binding,
            1,
            Kind.BALLOT,
            peers=list(table[e.address]),
            scores=list(table[e.address].values()),
        )
        for e in people
    ]
    csc.submit_ballots(1, signed[:2])
    csc.submit_ballots(1, signed[2:])
    assert csc.ballots_of(1) == table
    with pytest.raises(ContractRevertError) as info:  # Borda's entry refuses a median run
        csc._transact("elect", 1)
    assert info.value.error_name == "WrongElectionRule"
    csc.elect(1)
    expected, medians = election.elect(digests, table, 2, 3, rule)
    assert csc.candidates_of(1) == expected
    assert csc.totals_of(1) == medians

"""Every way the trust model lets a server tamper is caught, with the named error.

The lies of omission (withholding, choosing the election's inputs) are in
``tests/test_withholding.py``.
"""

import pytest
from flwr.app import Array, ArrayRecord

from seccl_flwr.attacks import LyingServer
from seccl_flwr.chain.errors import ContractRevertError
from seccl_flwr.chain.rpc_server import free_loopback_url
from seccl_flwr.errors import (
    AggregationMismatchError,
    NotEnoughNodesError,
    UpdateDigestMismatchError,
)
from seccl_flwr.strategy import SecCL
from seccl_flwr.wire import SIGNATURES
from tests.strategy_helpers import run_digits
from tests.test_withholding import CROSS_EVALUATE, EVALUATE, TRAIN, WatchedApp, run


def run_lying(lie: str, num_rounds: int = 1, lie_round: int = 1):
    return run_digits(LyingServer, num_nodes=4, num_rounds=num_rounds, lie=lie, lie_round=lie_round)


def watched_lying(lie: str, num_rounds: int = 1, lie_round: int = 1):
    """Run ``lie`` with honest clients whose raised errors are kept; return the strategy,
    the watched app and what the run raised (``None`` if it completed)."""
    strategy = LyingServer(
        lie=lie, lie_round=lie_round, chain_url=free_loopback_url(), candidate_fraction=0.4
    )
    watched = WatchedApp()
    try:
        run(strategy, watched, num_rounds=num_rounds)
    except NotEnoughNodesError as exc:
        return strategy, watched, exc
    return strategy, watched, None


@pytest.mark.parametrize("lie", ["alter-update", "swap-updates"])
def test_tampered_updates_are_rejected_by_every_honest_evaluator(lie):
    """Every evaluator sent a tampered update refuses to vote (no ballot on a partial
    set) with ``UpdateDigestMismatchError`` naming the victim; too few ballots are
    left for the round."""
    strategy, watched, stopped = watched_lying(lie)
    assert stopped is not None and "round 1: " in str(stopped)
    authors = strategy.csc.update_authors(1)
    refusals = watched.of(CROSS_EVALUATE)
    assert {type(e) for e in refusals.values()} == {UpdateDigestMismatchError}
    assert all(
        str(e).startswith("UpdateDigestMismatchError: round 1, node 0x") for e in refusals.values()
    )
    if lie == "alter-update":
        victim = authors[0]
        assert set(refusals) == set(authors) - {victim}  # the victim scores the others
        assert {e.node for e in refusals.values()} == {victim}
    else:
        a, b = authors[:2]
        assert set(refusals) == set(authors)
        assert refusals[a].node == b and refusals[b].node == a
        assert {e.node for n, e in refusals.items() if n not in (a, b)} == {a}
    assert strategy.csc.ballot_count(1) == 0


@pytest.mark.parametrize("lie", ["forge-ballot", "alter-ranking"])
def test_forged_or_altered_ballots_are_rejected_by_the_contract(lie):
    with pytest.raises(ContractRevertError) as info:
        run_lying(lie)
    assert info.value.error_name == "InvalidSignature"
    assert info.value.function == "submitBallots"


def test_dropped_ballot_is_detected_by_its_evaluator_in_the_rounds_evaluate():
    result, strategy, _ = run_lying("drop-ballot", num_rounds=1, lie_round=1)
    (record,) = result.rounds
    victim = record.authors[0]  # the server drops the first ballot it received
    assert victim not in strategy.csc.evaluators_of(1)
    assert list(record.dropped) == [f"evaluate:{victim}"]
    assert f"BallotMissingError: round 1, node {victim}" in record.dropped[f"evaluate:{victim}"]


def test_aggregating_a_non_candidate_is_detected_in_the_round_by_every_participant():
    """Each participant catches the forged model in the round's evaluate, then refuses
    to train on it: the run stops."""
    strategy, watched, stopped = watched_lying("aggregate-non-candidate", num_rounds=2)
    assert stopped is not None and "round 2: 0 valid updates" in str(stopped)
    owner = strategy.csc.owner()
    everyone = set(strategy.csc.update_authors(1))
    assert len(everyone) == 4
    for phase, what in ((EVALUATE, "elected candidates"), (TRAIN, "refusing round 2")):
        caught = watched.of(phase)
        assert set(caught) == everyone
        for error in caught.values():
            assert type(error) is AggregationMismatchError
            assert str(error).startswith(f"AggregationMismatchError: round 1, node {owner}: ")
            assert what in error.detail


def test_wrong_global_model_is_detected():
    with pytest.raises(NotEnoughNodesError) as info:
        run_lying("wrong-global")
    assert "GlobalModelMismatchError: round 0, node 0x" in str(info.value)


def test_unknown_lie_is_refused():
    with pytest.raises(ValueError, match="unknown lie 'bribe'"):
        LyingServer(lie="bribe")


class MismatchedSignatures(SecCL):
    """Forwards one signature fewer than updates for cross-evaluation."""

    def _server_fields(self, server_round, **extra):
        if SIGNATURES in extra:
            extra[SIGNATURES] = extra[SIGNATURES][:-1]
        return super()._server_fields(server_round, **extra)


class GarbledGlobal(SecCL):
    """Sends a global model whose bytes do not decode."""

    def relay_global(self, server_round, arrays):
        return ArrayRecord(
            {"w": Array(dtype="float32", shape=(4,), stype="numpy.ndarray", data=b"junk")}
        )


@pytest.mark.parametrize(
    "strategy_cls, message",
    [
        (MismatchedSignatures, "authors and signatures do not match one to one"),
        (GarbledGlobal, "MalformedMessageError: round 0, node 0x.*global model from the server"),
    ],
)
def test_malformed_server_messages_get_a_named_error_from_every_client(strategy_cls, message):
    with pytest.raises(NotEnoughNodesError, match=message):
        run_digits(strategy_cls, num_nodes=3, num_rounds=1)

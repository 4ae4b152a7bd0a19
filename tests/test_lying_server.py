"""Every way the trust model lets a server lie is caught, with the named error."""

import re

import pytest
from eth_account import Account
from flwr.app import Array, ArrayRecord

from seccl_flwr.attacks import LyingServer
from seccl_flwr.chain.errors import ContractRevertError
from seccl_flwr.errors import NotEnoughNodesError
from seccl_flwr.identity import simulation_key
from seccl_flwr.strategy import SecCL
from seccl_flwr.wire import SIGNATURES
from tests.strategy_helpers import run_digits


def run_lying(lie: str, num_rounds: int = 1, lie_round: int = 1, **kwargs):
    return run_digits(
        LyingServer, num_nodes=4, num_rounds=num_rounds, lie=lie, lie_round=lie_round, **kwargs
    )


@pytest.mark.parametrize("lie", ["alter-update", "swap-updates"])
def test_tampered_updates_are_rejected_by_every_honest_evaluator(lie):
    """Every honest evaluator reports each tampered update (UpdateDigestMismatchError).

    A ballot that leaves a victim out is incomplete: the contract would refuse it
    (IncompleteBallot) and with it its whole batch, so the server drops it, quoting
    what the evaluator rejected, and the round stops short of ballots.
    """
    with pytest.raises(NotEnoughNodesError) as info:
        run_lying(lie)
    message = str(info.value)
    rejections = re.findall(
        r"UpdateDigestMismatchError: round 1, node (0x[0-9a-fA-F]{40})", message
    )
    assert rejections, "no evaluator reported the tampering"
    # the round's authors are the nodes in node order (all four trained)
    authors = [Account.from_key(simulation_key(11, p)).address for p in range(4)]
    victims = {authors[0]} if lie == "alter-update" else set(authors[:2])
    # each evaluator other than the victim itself reports each victim once
    expected = sum(len(authors) - 1 for _ in victims)
    assert len(rejections) == expected
    assert set(rejections) == victims
    assert "valid ballots, fewer than min_train_nodes=2" in message


@pytest.mark.parametrize("lie", ["forge-ballot", "alter-ranking"])
def test_forged_or_altered_ballots_are_rejected_by_the_contract(lie):
    with pytest.raises(ContractRevertError) as info:
        run_lying(lie)
    assert info.value.error_name == "InvalidSignature"
    assert info.value.function == "submitBallots"


def test_dropped_ballot_is_detected_by_its_evaluator_next_round():
    # quorum 2: round 2 has 3 authors (the victim refuses to train) and one ballot
    # dropped again; the default majority (3 of 4) would stop the run there
    result, strategy, _ = run_lying("drop-ballot", num_rounds=2, lie_round=1, quorum=2)
    first, second = result.rounds
    victim = first.authors[0]  # the server drops the first ballot it received
    assert victim not in strategy.csc.evaluators_of(1)
    assert list(second.dropped) == [f"train:{victim}"]
    assert f"BallotMissingError: round 1, node {victim}" in second.dropped[f"train:{victim}"]


def test_aggregating_a_non_candidate_is_detected_next_round_by_every_participant():
    with pytest.raises(NotEnoughNodesError) as info:  # nobody trains on the forged model
        run_lying("aggregate-non-candidate", num_rounds=2)
    message = str(info.value)
    assert "round 2: 0 valid updates" in message
    assert message.count("AggregationMismatchError: round 1") == 4
    assert "elected candidates" in message


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

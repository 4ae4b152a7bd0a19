"""Every way the trust model lets a server lie is caught, with the named error."""

import re
from typing import ClassVar

import pytest
from flwr.app import Array, ArrayRecord

from seccl_flwr.attacks import LyingServer
from seccl_flwr.chain.errors import ContractRevertError
from seccl_flwr.errors import NotEnoughNodesError
from seccl_flwr.strategy import SecCL
from seccl_flwr.wire import SIGNATURES
from tests.strategy_helpers import run_digits


def run_lying(lie: str, num_rounds: int = 1, lie_round: int = 1, **kwargs):
    return run_digits(
        LyingServer, num_nodes=4, num_rounds=num_rounds, lie=lie, lie_round=lie_round, **kwargs
    )


class RecordedLyingServer(LyingServer):
    """A LyingServer that keeps each round's state, also of a round that raises."""

    states: ClassVar[list] = []

    def play_round(self, run, state):
        RecordedLyingServer.states.append(state)
        super().play_round(run, state)


@pytest.mark.parametrize("lie", ["alter-update", "swap-updates"])
def test_tampered_updates_are_rejected_by_every_honest_evaluator(lie):
    RecordedLyingServer.states.clear()
    # every evaluator that sees a tampered update refuses to vote: no quorum
    with pytest.raises(NotEnoughNodesError, match="round 1: .* valid ballots"):
        run_digits(RecordedLyingServer, num_nodes=4, num_rounds=1, lie=lie)
    (state,) = RecordedLyingServer.states
    record = state.record
    assert record.rejections, "no evaluator reported the tampering"
    assert all("UpdateDigestMismatchError: round 1, node 0x" in r for r in record.rejections)
    first = record.authors[0]
    victims = {first} if lie == "alter-update" else set(record.authors[:2])
    # every evaluator other than a victim refuses, naming the first victim it checks;
    # a swapped victim refuses too, naming the other one
    refusing = [a for a in record.authors if a not in victims or len(victims) == 2]
    assert len(record.rejections) == len(refusing)
    named = {re.search(r"round 1, node (0x[0-9a-fA-F]{40})", r).group(1) for r in record.rejections}
    assert named == victims
    for evaluator in refusing:
        assert "UpdateDigestMismatchError" in record.dropped[f"ballot:{evaluator}"]


@pytest.mark.parametrize("lie", ["forge-ballot", "alter-ranking"])
def test_forged_or_altered_ballots_are_rejected_by_the_contract(lie):
    with pytest.raises(ContractRevertError) as info:
        run_lying(lie)
    assert info.value.error_name == "InvalidSignature"
    assert info.value.function == "submitBallots"


def test_dropped_ballot_is_detected_by_its_evaluator_in_the_same_round():
    # one round only: the last round's evaluate catches it
    result, strategy, _ = run_lying("drop-ballot", num_rounds=1, lie_round=1)
    (record,) = result.rounds
    victim = record.authors[0]  # the server drops the first ballot it received
    assert victim not in strategy.csc.evaluators_of(1)
    assert list(record.dropped) == [f"evaluate:{victim}"]
    assert f"BallotMissingError: round 1, node {victim}" in record.dropped[f"evaluate:{victim}"]


def test_aggregating_a_non_candidate_is_detected_in_its_round_and_nobody_trains_on_it():
    with pytest.raises(NotEnoughNodesError) as info:  # nobody trains on the forged model
        run_lying("aggregate-non-candidate", num_rounds=2)
    message = str(info.value)
    assert "round 2: 0 valid updates" in message
    assert message.count("AggregationMismatchError: round 1") == 4
    assert "elected candidates" in message and "refusing round 2" in message


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

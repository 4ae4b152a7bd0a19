"""SecCL end to end on the digits app, in-process (Flower Message API, embedded chain)."""

import numpy as np
import pytest

from seccl_flwr.apps import digits
from seccl_flwr.chain.rpc_server import free_loopback_url
from seccl_flwr.errors import ConfigurationError, NotEnoughNodesError
from seccl_flwr.protocol.eip712 import Kind
from seccl_flwr.protocol.params import RunParams
from seccl_flwr.protocol.signed import message_digest
from seccl_flwr.protocol.sparse import ModelLayout, SparseUpdate, merge_updates
from seccl_flwr.records import arrays_of
from seccl_flwr.run_setup import open_chain
from seccl_flwr.strategy import SecCL
from seccl_flwr.torch_task import load_arrays, predict
from seccl_flwr.wire import CROSS_EVALUATE, phase_of
from tests.strategy_helpers import run_digits


class RecordingSecCL(SecCL):
    """An honest SecCL that keeps what it aggregated, for the test to re-derive."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: dict[int, dict] = {}

    def relay_candidates(self, server_round, candidates, updates):
        self.seen[server_round] = {
            "updates": {a: SparseUpdate(**u.payload) for a, u in updates.items()},
            "digests": {a: u.digest() for a, u in updates.items()},
            "candidates": list(candidates),
        }
        return candidates


def accuracy(arrays) -> float:
    model = digits.DigitsNet()
    load_arrays(model, arrays, "cpu")
    x, y = digits.test_set(0)
    return float((predict(model, x, "cpu").argmax(1) == y).float().mean())


@pytest.fixture(scope="module")
def honest_run():
    return run_digits(RecordingSecCL, num_nodes=5, num_rounds=3, share_fraction=0.2)


def test_accuracy_rises(honest_run):
    result, _, _ = honest_run
    initial = accuracy({k: v.numpy() for k, v in digits.initial_model().state_dict().items()})
    final = accuracy(arrays_of(result.arrays))
    assert final > initial + 0.1, (initial, final)
    f1 = [r.evaluate_metrics["macro-f1"] for r in result.rounds]
    assert f1[-1] > f1[0]


def test_a_run_without_committees_is_the_papers_protocol(honest_run):
    """Committee size 0: no seal, no committee seed, every ballot scores every other
    author (issue 16 leaves such runs as they were)."""
    result, strategy, _ = honest_run
    csc = strategy.csc
    assert csc.params().committee_size == 0
    for record in result.rounds:
        assert len(record.transactions["anchor"]) == 1  # the anchors only, no seal
        assert csc.seal_block(record.round) == 0
        assert csc.committee_seed(record.round) == bytes(32)
        authors = set(record.authors)
        for evaluator, scored in csc.ballots_of(record.round).items():
            assert set(scored) == authors - {evaluator}


def test_aggregated_exactly_the_elected_candidates(honest_run):
    result, strategy, _ = honest_run
    csc = strategy.csc
    # fixed on chain at opening: M = ceil(0.4 * 5), a majority quorum, 0.2 in ppm
    assert csc.params() == RunParams(2, 3, 200_000, False, 0)
    owner = csc.owner()
    # Rebuild the model chain from round 0 and compare every anchored global digest.
    current = {k: v.numpy() for k, v in digits.initial_model().state_dict().items()}
    layout = ModelLayout.of(current)
    assert message_digest(csc.binding, 0, Kind.GLOBAL_MODEL, owner, current) == csc.anchor_of(
        0, Kind.GLOBAL_MODEL, owner
    )
    for record in result.rounds:
        seen = strategy.seen[record.round]
        assert seen["candidates"] == csc.candidates_of(record.round) == record.candidates
        assert len(record.candidates) == csc.params().num_candidates == 2  # ceil(0.4 * 5)
        merged = merge_updates(layout.size, [seen["updates"][a] for a in record.candidates])
        current = layout.unflatten(layout.flatten(current) + merged, current)
        anchored = csc.anchor_of(record.round, Kind.GLOBAL_MODEL, owner)
        assert (
            message_digest(csc.binding, record.round, Kind.GLOBAL_MODEL, owner, current) == anchored
        )
    np.testing.assert_array_equal(layout.flatten(current), layout.flatten(arrays_of(result.arrays)))


def test_every_anchor_verifies(honest_run):
    result, strategy, _ = honest_run
    csc = strategy.csc
    for record in result.rounds:
        seen = strategy.seen[record.round]
        assert csc.update_authors(record.round) == record.authors
        for author, digest in seen["digests"].items():
            assert csc.anchor_of(record.round, Kind.UPDATE, author) == digest
        assert sorted(csc.evaluators_of(record.round)) == sorted(record.authors)
        for evaluator in record.authors:
            assert csc.anchor_of(record.round, Kind.BALLOT, evaluator) != b"\0" * 32
        assert record.totals == csc.totals_of(record.round)
        assert record.dropped == {} and record.rejections == []
        assert set(record.seconds) == {
            "train",
            "anchor",
            "cross_evaluate",
            "elect",
            "aggregate",
            "evaluate",
        }
        assert record.gas["anchor"] > 0 and record.gas["elect"] > 0
        assert all(
            tx.startswith("0x") and len(tx) == 66
            for txs in record.transactions.values()
            for tx in txs
        )
    assert csc.last_completed_round() == len(result.rounds)


def test_dropout_in_cross_evaluation_is_recorded_and_run_goes_on():
    def silent(node_id, message):
        return node_id == 2 and phase_of(message) == CROSS_EVALUATE

    result, strategy, _ = run_digits(num_nodes=4, num_rounds=2, unavailable=silent)
    for record in result.rounds:
        address = strategy.participants[2]
        assert record.dropped.keys() == {f"ballot:{address}", f"evaluate:{address}"}
        assert record.dropped[f"ballot:{address}"] == "no reply within 3600s"
        # it trained but saw no peer update: it says it cannot check the aggregation
        uncheckable = f"AggregationUncheckableError: round {record.round}, node {address}"
        assert uncheckable in record.dropped[f"evaluate:{address}"]
        assert address not in strategy.csc.evaluators_of(record.round)
        assert len(strategy.csc.evaluators_of(record.round)) == 3


def test_too_few_nodes_stops_with_a_clear_error():
    def mostly_silent(node_id, message):
        return node_id != 1 and message.metadata.message_type == "train"

    with pytest.raises(NotEnoughNodesError, match="1 valid updates, fewer than min_train_nodes=2"):
        run_digits(num_nodes=3, num_rounds=1, unavailable=mostly_silent)


def test_bad_settings_name_the_parameter():
    with pytest.raises(ValueError, match="candidate_fraction"):
        SecCL(candidate_fraction=0)
    with pytest.raises(ValueError, match="share_fraction"):
        SecCL(share_fraction=1.5)
    for quorum in (0, True, "3"):
        with pytest.raises(ConfigurationError, match="quorum must be a positive int or None"):
            SecCL(quorum=quorum)
    with pytest.raises(ValueError, match="loopback"):
        open_chain("embedded", "http://10.1.2.3:8545")


def test_a_quorum_above_the_roster_is_refused_before_deploying():
    with pytest.raises(ConfigurationError, match="quorum=4 exceeds the 3 participants"):
        run_digits(num_nodes=3, num_rounds=1, quorum=4)


def test_ballots_below_the_quorum_stop_the_run_before_the_election():
    """Three ballots reach min_train_nodes but not quorum=4: the server names the
    quorum and never calls elect (the contract would revert QuorumNotReached)."""

    def silent(node_id, message):
        return node_id == 2 and phase_of(message) == CROSS_EVALUATE

    seen = {}

    class Recording(SecCL):
        def _elect(self, run, state):
            seen["strategy"] = self
            super()._elect(run, state)

    with pytest.raises(NotEnoughNodesError) as info:
        run_digits(Recording, num_nodes=4, num_rounds=1, unavailable=silent, quorum=4)
    assert "round 1: 3 ballots on chain, below the run's quorum=4" in str(info.value)
    csc = seen["strategy"].csc
    assert csc.params().quorum == 4 and csc.ballot_count(1) == 3
    assert not csc.is_elected(1)


def test_a_second_run_on_a_restarted_chain_at_the_same_url_is_checked_afresh():
    """A restarted dev chain puts the next run's contract at the same address (same
    deployer, nonce 0). Nodes in the same process must check it again, not reuse
    the first run's contract binding (CI once saw every node refuse the second
    run's global model with ``GlobalModelMismatchError``)."""
    url = free_loopback_url()
    first, first_strategy, _ = run_digits(num_nodes=4, num_rounds=1, chain_url=url)
    second, second_strategy, _ = run_digits(num_nodes=4, num_rounds=1, chain_url=url)
    assert first_strategy.csc.address == second_strategy.csc.address
    assert first_strategy.csc.binding != second_strategy.csc.binding
    for result in (first, second):
        (record,) = result.rounds
        assert not record.dropped

"""Issue 12: a server that withholds messages or chooses the election's inputs.

One test (or a few) per numbered case of the issue, named ``test_<case>_...``. Each
shows WHO detects the lie (which clients, or the contract) and WITH WHICH ERROR,
or that the contract makes it impossible. Clients' errors are observed where they
are raised: :class:`WatchedApp` wraps the digits ClientApp and keeps every
exception a handler raises, with the node and the phase (the lying server's own
record of the replies is not evidence). The runs are small digits runs on the
embedded chain, as in ``tests/strategy_helpers.py``; no message store is published.

Case 9 (every transaction under the EIP-7825 cap, n up to 256) is shown on anvil
with the cap enforced by
``tests/test_gas.py::test_full_round_at_256_participants_fits_the_capped_node``;
here, that a run's batches are the ones the gas model sizes.
"""

import logging
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_utils import keccak
from flwr.app import ArrayRecord, Context, Message, RecordDict

from seccl_flwr import wire
from seccl_flwr.apps import digits
from seccl_flwr.attacks import LyingServer
from seccl_flwr.chain import gas
from seccl_flwr.chain.connection import embedded_web3, ensure_funded
from seccl_flwr.chain.csc import CandidateSelection
from seccl_flwr.chain.errors import ContractRevertError
from seccl_flwr.chain.rpc_server import LoopbackRPCServer, free_loopback_url
from seccl_flwr.client import trusted_contract
from seccl_flwr.errors import (
    AggregationMismatchError,
    AggregationUncheckableError,
    BallotMissingError,
    JoinSignatureError,
    NotEnoughNodesError,
    ParameterMismatchError,
    RosterMismatchError,
    UntrustedContractError,
    UpdateNotAnchoredError,
    WithheldUpdateError,
)
from seccl_flwr.identity import simulation_key
from seccl_flwr.inprocess import InProcessGrid, new_run_id
from seccl_flwr.protocol import borda
from seccl_flwr.protocol.eip712 import Kind, run_id_from_label
from seccl_flwr.protocol.params import RunParams, roster_digest
from seccl_flwr.protocol.signed import SignedMessage
from seccl_flwr.protocol.sparse import ModelLayout, entry_limit
from seccl_flwr.run_setup import register_nodes
from seccl_flwr.strategy import SecCL
from tests.csc_helpers import open_csc
from tests.strategy_helpers import pins_of
from tests.test_registration import ImpersonatingApp

SEED = 11
TRAIN, CROSS_EVALUATE, EVALUATE = wire.TRAIN, wire.CROSS_EVALUATE, wire.EVALUATE


def address(partition: int) -> str:
    """The simulation address of a partition (node id = partition + 1)."""
    return Account.from_key(simulation_key(SEED, partition)).address


@dataclass
class Detection:
    """An error a client's handler raised: the node, the phase and the error."""

    node: str
    phase: str
    error: Exception


class WatchedApp:
    """The digits ClientApp, keeping every error its handlers raise (then re-raising it)."""

    def __init__(self, app=digits.app) -> None:
        self.app = app
        self.detections: list[Detection] = []

    def __call__(self, message: Message, context: Context) -> Message:
        try:
            return self.app(message, context)
        except Exception as exc:
            node = address(int(context.node_config["partition-id"]))
            self.detections.append(Detection(node, wire.phase_of(message), exc))
            raise

    def of(self, phase: str) -> dict[str, Exception]:
        """Return the errors of ``phase`` by node (one per node in these runs)."""
        found = [d for d in self.detections if d.phase == phase]
        by_node = {d.node: d.error for d in found}
        assert len(by_node) == len(found), f"a node failed twice in {phase}: {found}"
        return by_node


def lying(lie: str, **kwargs) -> LyingServer:
    kwargs.setdefault("candidate_fraction", 0.4)
    return LyingServer(lie=lie, chain_url=free_loopback_url(), **kwargs)


def run(strategy: SecCL, watched: WatchedApp, num_nodes: int = 4, num_rounds: int = 1, **config):
    """Run ``strategy`` with honest digits clients pinning its settings (plus ``config``)."""
    run_config = {
        "seccl-key-seed": SEED,
        "seccl-chain-url": strategy.chain_url,
        "seed": 0,
        "lr": 0.1,
        **pins_of(strategy),
        **config,
    }
    grid = InProcessGrid(watched, num_nodes, run_config=run_config)
    initial = ArrayRecord(digits.initial_model().state_dict())
    return strategy.start(grid, initial, num_rounds=num_rounds)


def assert_names(error: Exception, kind: type, round_: int, node: str, *details: str) -> None:
    """Check a protocol error's type, round, node and that its message says so."""
    assert type(error) is kind, repr(error)
    assert (error.round, error.node) == (round_, node)
    assert str(error).startswith(f"{kind.__name__}: round {round_}, node {node}: ")
    for detail in details:
        assert detail in error.detail


# ----------------------------------------------------- 1. zero-ballot election
def test_1_an_election_without_the_quorum_of_ballots_is_refused_by_the_contract():
    """The server skips cross-evaluation and calls elect: ``QuorumNotReached``; with no
    election it cannot anchor a global model of the round either (``NotElected``)."""
    strategy, watched = lying("no-ballots"), WatchedApp()
    with pytest.raises(ContractRevertError) as info:
        run(strategy, watched)
    assert info.value.function == "elect"
    assert info.value.error_name == "QuorumNotReached"
    assert info.value.error_args == {"round": 1, "ballots": 0, "quorum": 3}  # majority of 4
    assert not strategy.csc.is_elected(1)

    owner = strategy.csc.owner()
    with pytest.raises(ContractRevertError) as forged:
        strategy.csc.anchor(1, Kind.GLOBAL_MODEL, [owner], [keccak(text="forged model")])
    assert forged.value.error_name == "NotElected"
    assert watched.detections == []  # no client was asked anything to detect


# ------------------------------------------------ 2. sybil roster, M, quorum
@pytest.mark.parametrize("pinned", [False, True], ids=["simulation-keys", "pinned-digest"])
def test_2_a_roster_with_sybils_is_refused_by_every_client(pinned):
    honest = [address(p) for p in range(4)]
    config = {"seccl-roster-digest": "0x" + roster_digest(honest).hex()} if pinned else {}
    strategy, watched = lying("sybil-roster", sybils=3), WatchedApp()
    with pytest.raises(NotEnoughNodesError, match="round 1: 0 valid updates"):
        run(strategy, watched, **config)
    sybils = [s.address for s in strategy.sybils]
    assert strategy.csc.participants() == honest + sybils  # the contract took them
    refusals = watched.of(TRAIN)
    assert set(refusals) == set(honest) and len(watched.detections) == 4
    for error in refusals.values():
        assert type(error) is RosterMismatchError
        assert f"contract {strategy.csc.address}" in str(error)
        if pinned:
            assert "differs from the pinned seccl-roster-digest" in str(error)
        else:
            assert f"roster members {sybils} are none of the run's 4 simulation keys" in str(error)


@pytest.mark.parametrize(
    "on_chain, detail",
    [
        ({"candidate_fraction": 1.0}, "M = 4, but λ = 0.4 and n = 4 give M = 2"),
        ({"quorum": 1}, "quorum 1 is below the 3 ballots this node accepts"),
    ],
    ids=["lambda-1", "quorum-1"],
)
def test_2_a_candidate_count_or_quorum_other_than_the_pinned_is_refused(on_chain, detail):
    strategy, watched = lying("wrong-parameters", on_chain=on_chain), WatchedApp()
    with pytest.raises(NotEnoughNodesError, match="round 1: 0 valid updates"):
        run(strategy, watched)
    refusals = watched.of(TRAIN)
    assert set(refusals) == {address(p) for p in range(4)}
    for error in refusals.values():
        assert type(error) is ParameterMismatchError
        assert error.detail.startswith(f"contract {strategy.csc.address}: {detail}")


def test_2_a_client_refuses_a_run_that_is_not_open():
    """A roster the server could still change (before ``open``) is no roster."""
    with LoopbackRPCServer() as server:
        owner = Account.from_key(simulation_key("withholding-owner", 0))
        ensure_funded(server.w3, owner)
        me = Account.from_key(simulation_key(SEED, 0))
        closed, _ = CandidateSelection.deploy(
            server.w3, owner, bytes(32), RunParams(1, 1, 100_000, False)
        )
        context = Context(
            run_id=new_run_id(),
            node_id=1,
            node_config={"partition-id": 0, "num-partitions": 1, "seccl-chain-url": server.url},
            state=RecordDict(),
            run_config={"seccl-key-seed": SEED},
        )
        with pytest.raises(UntrustedContractError, match="the run is not open"):
            trusted_contract(context, {"contract": closed.address})
        opened, _ = open_csc(server.w3, owner, b"\x01" * 32, [me], 1)
        assert trusted_contract(context, {"contract": opened.address}).address == opened.address


# ------------------------------------------------- 3. selective forwarding
def test_3_an_evaluator_sent_a_partial_set_does_not_vote():
    """Every evaluator receives the first author's update only: each raises
    ``WithheldUpdateError`` naming an author the chain anchored; no ballot reaches
    the chain and no election is held."""
    strategy, watched = lying("withhold-updates"), WatchedApp()
    with pytest.raises(NotEnoughNodesError, match="round 1: 0 valid ballots"):
        run(strategy, watched)
    authors = strategy.csc.update_authors(1)
    assert sorted(authors) == sorted(address(p) for p in range(4))
    refusals = watched.of(CROSS_EVALUATE)
    assert set(refusals) == set(authors) and len(watched.detections) == 4
    for evaluator, error in refusals.items():
        missing = sorted(set(authors[1:]) - {evaluator})
        assert_names(error, WithheldUpdateError, 1, missing[0], f"updates of {missing}")
        assert f"sent to {evaluator} lacks; no ballot on a partial set" in error.detail
    assert strategy.csc.ballot_count(1) == 0 and not strategy.csc.is_elected(1)


def test_3_partial_ballots_the_server_makes_itself_are_refused_by_the_contract():
    """The server fills in for the evaluators who would not vote: its partial ballots
    are refused before their signature is even checked (``IncompleteBallot``); a
    complete one it signs itself is refused as ``InvalidSignature``
    (``tests/test_lying_server.py::test_forged_or_altered_ballots_are_rejected_by_the_contract``)."""
    strategy, watched = lying("forge-partial-ballot"), WatchedApp()
    with pytest.raises(ContractRevertError) as info:
        run(strategy, watched)
    authors = strategy.csc.update_authors(1)
    assert info.value.function == "submitBallots"
    assert info.value.error_name == "IncompleteBallot"
    assert info.value.error_args == {
        "round": 1,
        "evaluator": authors[1],
        "peers": 1,
        "expected": 3,
    }
    assert strategy.csc.ballot_count(1) == 0


def test_3_a_signed_partial_ballot_is_refused_by_the_contract():
    """Even a partial ballot its evaluator did sign (an honest client never does):
    ``IncompleteBallot``."""
    w3 = embedded_web3()
    server = Account.from_key(b"\x71" * 32)
    ensure_funded(w3, server)
    people = [Account.from_key(keccak(text=f"partial/{i}")) for i in range(3)]
    csc, _ = open_csc(w3, server, run_id_from_label("partial"), people, 1, quorum=1)
    csc.anchor(0, Kind.GLOBAL_MODEL, [server.address], [b"\x01" * 32])
    csc.anchor(1, Kind.UPDATE, [p.address for p in people], [bytes([i + 1]) * 32 for i in range(3)])
    partial = SignedMessage.sign(
        people[0], csc.binding, 1, Kind.BALLOT, peers=[people[1].address], scores=[1000]
    )
    with pytest.raises(ContractRevertError) as info:
        csc.submit_ballots(1, [partial])
    assert info.value.error_name == "IncompleteBallot"
    assert info.value.error_args == {
        "round": 1,
        "evaluator": people[0].address,
        "peers": 1,
        "expected": 2,
    }


# ----------------------------------------------------------- 4. censorship
def test_4_a_censored_author_finds_out_at_its_next_contact_every_round():
    """The server drops the first author's update before anchoring, every round. It
    does not ask the victim to cross-evaluate; the victim's next contact is the
    round's evaluate, where it raises ``UpdateNotAnchoredError``. Only the victim
    can tell: the others see a complete, anchored set."""
    strategy, watched = lying("censor-update"), WatchedApp()
    result = run(strategy, watched, num_rounds=2)
    victim = address(0)
    assert all(victim not in record.authors for record in result.rounds)
    assert [(d.node, d.phase) for d in watched.detections] == [(victim, EVALUATE)] * 2
    for round_, detection in enumerate(watched.detections, start=1):
        assert_names(
            detection.error,
            UpdateNotAnchoredError,
            round_,
            victim,
            "is not anchored (the chain holds nothing)",
        )


def test_4_a_censored_author_not_asked_to_evaluate_finds_out_at_its_next_train():
    """Without an evaluate phase, the victim's next contact is the next round's train."""
    strategy, watched = lying("censor-update", fraction_evaluate=0.0, quorum=2), WatchedApp()
    result = run(strategy, watched, num_rounds=2)
    victim = address(0)
    assert all(victim not in record.authors for record in result.rounds)
    assert [(d.node, d.phase) for d in watched.detections] == [(victim, TRAIN)]
    assert_names(watched.detections[0].error, UpdateNotAnchoredError, 1, victim)


# ------------------------------------ 5. aggregation lies in the last round
@pytest.mark.parametrize("lie", ["aggregate-weighted", "replay-old-model", "previous-candidates"])
def test_5_an_aggregation_lie_in_the_last_round_is_caught_in_that_round(lie):
    """No store is published; every client that took part checks the last round's
    model in its evaluate phase: ``AggregationMismatchError`` naming the round and
    the server."""
    strategy, watched = lying(lie, lie_round=2), WatchedApp()
    assert strategy.store is None
    result = run(strategy, watched, num_rounds=2)
    assert len(result.rounds) == 2
    assert {(d.phase, d.error.round) for d in watched.detections} == {(EVALUATE, 2)}
    caught = watched.of(EVALUATE)
    assert set(caught) == set(result.rounds[1].authors) == {address(p) for p in range(4)}
    for error in caught.values():
        assert_names(
            error,
            AggregationMismatchError,
            2,
            strategy.csc.owner(),
            "is not the previous model plus the merge of the elected candidates",
        )
    # no evaluation of the forged model reached the chain
    assert all(strategy.csc.anchor_of(2, Kind.EVALUATION, a) == bytes(32) for a in caught)


def test_5_selective_forwarding_with_a_forged_merge_is_never_silent():
    """Only a quorum of evaluators gets every update; the others refuse to vote
    (``WithheldUpdateError``). The election still runs and the server forges the
    merge: the full evaluators catch it (``AggregationMismatchError``), the others
    say they cannot check it (``AggregationUncheckableError``). Every participant
    reports in the round's evaluate."""
    strategy, watched = lying("withhold-and-forge"), WatchedApp()
    run(strategy, watched, num_nodes=5)
    authors = strategy.csc.update_authors(1)
    quorum = strategy.csc.params().quorum
    full, partial = authors[:quorum], authors[quorum:]
    assert (quorum, len(partial)) == (3, 2)
    assert strategy.csc.evaluators_of(1) == full
    assert set(watched.of(CROSS_EVALUATE)) == set(partial)
    for evaluator, error in watched.of(CROSS_EVALUATE).items():
        assert type(error) is WithheldUpdateError and evaluator in error.detail
    caught = watched.of(EVALUATE)
    assert set(caught) == set(authors)
    for node in full:
        assert_names(caught[node], AggregationMismatchError, 1, strategy.csc.owner())
    for node in partial:
        assert_names(
            caught[node], AggregationUncheckableError, 1, node, "cannot recompute global model 1"
        )


# ------------------------------------------------------- 6. share fraction
def test_6_a_share_fraction_on_chain_other_than_the_pinned_is_refused():
    on_chain = {"share_fraction": 1.0}
    strategy, watched = lying("wrong-parameters", on_chain=on_chain), WatchedApp()
    with pytest.raises(NotEnoughNodesError, match="round 1: 0 valid updates"):
        run(strategy, watched)
    assert strategy.csc.params().share_fraction == 1.0
    refusals = watched.of(TRAIN)
    assert set(refusals) == {address(p) for p in range(4)}
    for error in refusals.values():
        assert type(error) is ParameterMismatchError
        assert "share fraction 1000000 ppm, but this node is configured with 0.1" in str(error)


class DenseAsking(SecCL):
    """Tells the clients, in every message, to share their whole update; keeps the updates."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = {}

    def relay_candidates(self, server_round, candidates, updates):
        self.seen.update(updates)
        return candidates

    def _server_fields(self, server_round, **extra):
        fields = super()._server_fields(server_round, **extra)
        fields["share-fraction"] = 1.0
        fields["per-tensor"] = True
        return fields


def test_6_a_share_fraction_in_a_server_message_is_not_used():
    """Clients take the share fraction from the chain, never from the server."""
    strategy = DenseAsking(chain_url=free_loopback_url(), candidate_fraction=0.4)
    watched = WatchedApp()
    run(strategy, watched, num_nodes=3)
    assert watched.detections == []
    layout = ModelLayout.of(digits.initial_model().state_dict())
    limit = entry_limit(layout, 0.1, False)
    assert len(strategy.seen) == 3
    assert all(len(u.payload["indices"]) <= limit < layout.size for u in strategy.seen.values())


# ----------------------------------------------------------- 7. impersonation
def test_7_a_client_registering_another_nodes_address_is_left_out_and_named(caplog):
    """Node 2 claims node 1's address (the client lie ``impersonate``,
    ``tests.test_registration.ImpersonatingApp``): the server's check of the Join
    signature names node 2 (``JoinSignatureError``), never the victim, which stays."""
    with LoopbackRPCServer() as chain:
        config = {"seccl-key-seed": SEED, "seccl-chain-url": chain.url}
        grid = InProcessGrid(ImpersonatingApp(), 4, run_config=config)
        run_id = run_id_from_label("impersonation")
        with caplog.at_level(logging.WARNING):
            roster = register_nodes(grid, run_id, chain.w3.eth.chain_id, 2, timeout=10)
    assert {node: r.address for node, r in roster.items()} == {
        1: address(0),
        3: address(2),
        4: address(3),
    }
    (warning,) = [r.getMessage() for r in caplog.records if "register" in r.getMessage()]
    assert "node 2 failed to register: JoinSignatureError: round 0, node 2: " in warning
    assert f"claims address {address(0)}" in warning
    assert JoinSignatureError.__name__ in warning


# ------------------------------------------------ 8. last-round ballot drop
def test_8_a_ballot_dropped_in_the_last_round_is_caught_in_its_evaluate():
    strategy, watched = lying("drop-ballot"), WatchedApp()
    result = run(strategy, watched, num_rounds=1)
    (record,) = result.rounds
    victim = record.authors[0]  # the server drops the first ballot it received
    assert victim not in strategy.csc.evaluators_of(1)
    assert [(d.node, d.phase) for d in watched.detections] == [(victim, EVALUATE)]
    assert_names(
        watched.detections[0].error,
        BallotMissingError,
        1,
        victim,
        f"is not on chain (found 0x{bytes(32).hex()})",
    )


def test_8_ballots_dropped_down_to_the_quorum_are_each_reported_but_the_election_stands():
    """What withholding can still do (docs/threat-model.md, section 5): choose which
    valid ballots count, down to the quorum. Each dropped evaluator reports it
    (``BallotMissingError``), after the election, which stands."""
    strategy, watched = lying("drop-ballots-to-quorum"), WatchedApp()
    result = run(strategy, watched, num_nodes=5)
    (record,) = result.rounds
    counted = strategy.csc.evaluators_of(1)
    dropped = sorted(set(record.authors) - set(counted))
    assert len(counted) == strategy.csc.params().quorum == 3 and len(dropped) == 2
    assert strategy.csc.is_elected(1) and record.candidates
    assert sorted(watched.of(EVALUATE)) == dropped and len(watched.detections) == 2
    for node, error in watched.of(EVALUATE).items():
        assert_names(error, BallotMissingError, 1, node, "is not on chain")


# ---------------------------------------------------------------- 9. gas
def test_9_a_runs_batches_are_the_ones_the_gas_model_sizes(monkeypatch):
    """With the gas model asking for one item per transaction, a run sends one
    ``register``, ``anchor`` and ``submitBallots`` transaction per item, each well
    under the cap. (At n = 256 with the cap enforced on anvil:
    ``tests/test_gas.py::test_full_round_at_256_participants_fits_the_capped_node``.)"""
    monkeypatch.setattr(gas, "register_batch_size", lambda budget=gas.DEFAULT_BUDGET: 1)
    monkeypatch.setattr(gas, "anchor_batch_size", lambda kind=Kind.UPDATE, budget=0: 1)
    monkeypatch.setattr(gas, "ballot_batch_size", lambda peers, m, budget=0, election_rule=0: 1)
    strategy = SecCL(chain_url=free_loopback_url(), candidate_fraction=0.4)
    watched = WatchedApp()
    result = run(strategy, watched, num_rounds=1)
    (record,) = result.rounds
    assert len(record.transactions["anchor"]) == 4
    assert len(record.transactions["elect"]) == 4 + 1  # one ballot per tx, then elect
    assert len(record.transactions["evaluate"]) == 4
    w3 = strategy.csc.w3
    used = [
        w3.eth.get_transaction_receipt(tx).gasUsed
        for txs in record.transactions.values()
        for tx in txs
    ]
    assert max(used) < gas.DEFAULT_BUDGET < gas.TX_GAS_CAP


# ------------------------------------------------------------------- 10. ties
def test_10_winners_at_a_tie_do_not_depend_on_the_registration_order():
    """The same updates and ballots in two runs whose roster the server registered in
    opposite orders elect the same candidates: ties go to the lower
    ``keccak(seed, address)``, the seed being the XOR of the round's update digests."""
    w3 = embedded_web3()
    server = Account.from_key(b"\x72" * 32)
    ensure_funded(w3, server)
    people = [Account.from_key(keccak(text=f"tie/{i}")) for i in range(5)]
    digests = {p.address: keccak(text=f"tie-update/{i}") for i, p in enumerate(people)}
    run_id = run_id_from_label("ties")
    elected = []
    for order in (people, people[::-1]):
        csc, _ = open_csc(w3, server, run_id, order, 2, quorum=1)
        assert csc.participants() == [p.address for p in order]
        csc.anchor(0, Kind.GLOBAL_MODEL, [server.address], [b"\x01" * 32])
        csc.anchor(1, Kind.UPDATE, [p.address for p in order], [digests[p.address] for p in order])
        voter = people[0]  # one ballot, every peer scored the same: all tied
        peers = [p.address for p in people[1:]]
        ballot = SignedMessage.sign(
            voter, csc.binding, 1, Kind.BALLOT, peers=peers, scores=[500] * 4
        )
        csc.submit_ballots(1, [ballot])
        csc.elect(1)
        elected.append(csc.candidates_of(1))
    seed = borda.round_seed(digests.values())
    tie_order = sorted(peers, key=lambda a: borda.tie_key(seed, a))
    assert elected[0] == elected[1] == tie_order[:2]

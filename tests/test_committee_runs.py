"""Evaluator committees (issue 16) through the server, the clients and the audit.

A committee run (``committee_size`` k >= 1) seals each round's updates right after
anchoring them; the hash of the sealing block and the round seed give each author
its k assigned peers (:mod:`seccl_flwr.protocol.committee`). The server sends each
evaluator only its peers' updates; every evaluator recomputes its assignment from
its OWN chain endpoint and refuses (``CommitteeMismatchError``) anything else; the
contract takes only ballots that score exactly the assignment; the audit re-derives
it from the seal block's hash on the auditor's node.

End-to-end runs are small (digits, embedded chain, 6 nodes, k = 2) to stay fast.
"""

import logging
import shutil

import pytest
from eth_account import Account
from flwr.app import ArrayRecord, ConfigRecord, RecordDict

from seccl_flwr.apps import digits
from seccl_flwr.attacks import LyingServer
from seccl_flwr.audit import ANCHOR_MISMATCH, COMMITTEE_MISMATCH, AuditPins, audit_run
from seccl_flwr.chain.csc import CandidateSelection
from seccl_flwr.chain.rpc_server import LoopbackRPCServer, free_loopback_url
from seccl_flwr.cli import build_parser, main
from seccl_flwr.client_checks import (
    check_committee,
    pinned_run_config,
    run_config_parameters,
)
from seccl_flwr.errors import (
    AggregationMismatchError,
    AggregationUncheckableError,
    CommitteeMismatchError,
    ConfigurationError,
    MalformedMessageError,
    NotEnoughNodesError,
    ParameterMismatchError,
    VerificationError,
)
from seccl_flwr.identity import simulation_key
from seccl_flwr.inprocess import InProcessGrid
from seccl_flwr.protocol.committee import assignments, committee_seed
from seccl_flwr.protocol.eip712 import Kind
from seccl_flwr.protocol.signed import SignedMessage
from seccl_flwr.store import DirectoryStore
from seccl_flwr.strategy import SecCL
from seccl_flwr.verify import verify_ballot
from seccl_flwr.wire import CROSS_EVALUATE, EVALUATE, MESSAGE_TYPE, SECCL_KEY, TRAIN
from tests.strategy_helpers import pins_of
from tests.test_withholding import WatchedApp

SEED = 11
NODES = 6
K = 2
A, B, C, D = (Account.from_key(bytes([i]) * 32).address for i in range(1, 5))


# ------------------------------------------------------------ pure functions
def test_the_assigned_peers_pass_in_any_order():
    check_committee(3, A, [B, C], [C, B, A], seal_block=7)  # its own update may come too


@pytest.mark.parametrize(
    "forwarded, missing, extra",
    [
        ([B], [C], []),  # only some of the assigned peers
        ([B, D], [C], [D]),  # a committee the server chose
        ([B, C, D], [], [D]),  # a peer too many
    ],
)
def test_other_peers_than_the_assignment_are_refused_naming_missing_and_extra(
    forwarded, missing, extra
):
    with pytest.raises(CommitteeMismatchError) as info:
        check_committee(3, A, [B, C], forwarded, seal_block=7)
    error = info.value
    assert isinstance(error, VerificationError)
    assert (error.round, error.node, error.missing, error.extra) == (3, A, missing, extra)
    assert str(error).startswith(f"CommitteeMismatchError: round 3, node {A}: ")
    assert f"missing {missing}, extra {extra}" in str(error)
    assert "seal block 7" in str(error)


def test_a_cross_evaluation_before_the_seal_is_refused():
    with pytest.raises(CommitteeMismatchError, match="not sealed on chain") as info:
        check_committee(2, A, None, [B, C], seal_block=0)
    assert info.value.extra == sorted([B, C])


def test_an_evaluator_without_an_assignment_is_refused():
    with pytest.raises(CommitteeMismatchError, match="no anchored author"):
        check_committee(2, A, None, [B], seal_block=9)


def test_the_committee_size_is_pinned_by_the_run_config():
    config = pinned_run_config(0.5, 0.3, committee_size=4)
    assert config["seccl-committee-size"] == 4
    assert run_config_parameters(config)["committee_size"] == 4
    assert run_config_parameters({})["committee_size"] == 0
    with pytest.raises(ConfigurationError, match="'seccl-committee-size' must be at least 0"):
        run_config_parameters({"seccl-committee-size": -1})
    with pytest.raises(ConfigurationError, match="'seccl-committee-size' must be an integer"):
        run_config_parameters({"seccl-committee-size": "five"})


def test_seccl_reads_the_committee_size_from_the_run_config():
    strategy = SecCL.from_run_config({"seccl-committee-size": 3})
    assert strategy.committee_size == 3
    with pytest.raises(ConfigurationError, match="committee_size must lie in"):
        SecCL(committee_size=-1)


@pytest.mark.parametrize("command", [["simulate"], ["audit", "--chain", "http://127.0.0.1:1"]])
def test_the_cli_takes_committee_size(command, tmp_path):
    extra = ["--contract", "0x" + "11" * 20, "--store", str(tmp_path)] if "audit" in command else []
    args = build_parser().parse_args([*command, *extra, "--committee-size", "5"])
    assert args.committee_size == 5


# -------------------------------------------------------------- end to end
def committee_run(strategy: SecCL, app=digits.app, num_rounds: int = 2, **config):
    """Run ``strategy`` with 6 honest digits nodes pinning its settings (plus ``config``)."""
    run_config = {
        "seccl-key-seed": SEED,
        "seccl-chain-url": strategy.chain_url,
        "seed": 0,
        "lr": 0.1,
        **pins_of(strategy),
        **config,
    }
    grid = InProcessGrid(app, NODES, run_config=run_config)
    return strategy.start(grid, ArrayRecord(digits.initial_model().state_dict()), num_rounds)


class RecordingSecCL(SecCL):
    """An honest SecCL that keeps what it forwarded to each evaluator."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.forwarded: dict[int, dict[str, list[str]]] = {}

    def relay_committee(self, server_round, assigned):
        self.forwarded[server_round] = super().relay_committee(server_round, assigned)
        return self.forwarded[server_round]


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    store_dir = tmp_path_factory.mktemp("committee") / "messages"
    strategy = RecordingSecCL(
        chain_url=free_loopback_url(),
        candidate_fraction=0.34,
        share_fraction=0.2,
        committee_size=K,
        store=store_dir,
    )
    result = committee_run(strategy)
    return result, strategy, store_dir


def test_a_committee_run_completes_with_ballots_of_the_assigned_peers_only(honest):
    result, strategy, _ = honest
    csc = strategy.csc
    assert csc.params().committee_size == K
    assert [len(r.candidates) for r in result.rounds] == [3, 3]  # M = ceil(0.34 * 6)
    for record in result.rounds:
        assert not record.dropped and not record.rejections
        assert len(record.transactions["anchor"]) == 2  # the anchors, then the seal
        assert record.ballots == NODES
        sealed = csc.seal_block(record.round)
        assert sealed > 0
        authors = csc.update_authors(record.round)
        block_hash = bytes(csc.w3.eth.get_block(sealed)["hash"])
        seed = committee_seed(block_hash, csc.round_seed(record.round))
        assert csc.committee_seed(record.round) == seed
        expected = assignments(authors, seed, K)
        assert csc.committee_assignment(record.round) == expected
        assert strategy.forwarded[record.round] == expected
        for evaluator, scored in csc.ballots_of(record.round).items():
            assert sorted(scored) == sorted(expected[evaluator])
        assert record.evaluate_metrics  # every client checked the aggregation


def test_a_committee_run_audits_clean_with_its_pins(honest):
    _, strategy, store_dir = honest
    csc = CandidateSelection.attach(strategy.csc.w3, strategy.csc.address)
    report = audit_run(csc, DirectoryStore(store_dir), pins=AuditPins(committee_size=K))
    assert report.ok, report.findings
    assert not report.notices
    wrong = audit_run(csc, DirectoryStore(store_dir), pins=AuditPins(committee_size=0))
    assert [f.kind for f in wrong.findings] == ["parameter-mismatch"]
    assert "committee size 2, but the pin is 0" in wrong.findings[0].detail


def test_the_audit_names_a_stored_ballot_that_is_not_the_assignment(honest, tmp_path):
    _, strategy, store_dir = honest
    copy = tmp_path / "messages"
    shutil.copytree(store_dir, copy)
    csc = strategy.csc
    assigned = csc.committee_assignment(1)
    evaluator = next(iter(assigned))
    others = [a for a in assigned if a != evaluator and a not in assigned[evaluator]]
    partition = next(
        p for p in range(NODES) if Account.from_key(simulation_key(SEED, p)).address == evaluator
    )
    ballot = SignedMessage.sign(
        Account.from_key(simulation_key(SEED, partition)),
        csc.binding,
        1,
        Kind.BALLOT,
        peers=others[:K],
        scores=[500_000] * K,
    )
    DirectoryStore(copy).put(ballot)
    report = audit_run(CandidateSelection.attach(csc.w3, csc.address), DirectoryStore(copy))
    assert report.finding_kinds() == {COMMITTEE_MISMATCH, ANCHOR_MISMATCH}
    (finding,) = [f for f in report.findings if f.kind == COMMITTEE_MISMATCH]
    assert (finding.round, finding.node) == (1, evaluator)
    assert f"missing {sorted(assigned[evaluator])}" in finding.detail


def test_the_audit_names_a_committee_seed_the_chain_does_not_give(honest, monkeypatch):
    _, strategy, store_dir = honest
    csc = CandidateSelection.attach(strategy.csc.w3, strategy.csc.address)
    monkeypatch.setattr(csc, "committee_seed", lambda round_: b"\x01" * 32)
    report = audit_run(csc, DirectoryStore(store_dir))
    assert {f.kind for f in report.findings} == {COMMITTEE_MISMATCH}
    assert {f.round for f in report.findings} == {1, 2}
    assert "is not the one re-derived from seal block" in report.findings[0].detail


@pytest.mark.parametrize(
    "lie, lie_round, says",
    [
        ("choose-committee", 1, "missing ["),
        ("partial-committee", 1, "extra []"),
        ("unsealed-committee", 1, "not sealed on chain"),
        ("partial-committee", 2, "extra []"),  # only in the last round
    ],
    ids=["choose-committee", "partial-committee", "unsealed-committee", "last-round"],
)
def test_a_lying_server_forwarding_another_committee_is_refused_by_every_evaluator(
    lie, lie_round, says
):
    strategy = LyingServer(
        lie=lie,
        lie_round=lie_round,
        chain_url=free_loopback_url(),
        candidate_fraction=0.34,
        committee_size=K,
    )
    watched = WatchedApp()
    with pytest.raises(NotEnoughNodesError, match=f"round {lie_round}: 0 valid ballots"):
        committee_run(strategy, app=watched, num_rounds=lie_round)
    refusals = watched.of(CROSS_EVALUATE)
    authors = strategy.csc.update_authors(lie_round)
    assert set(refusals) == set(authors) and len(authors) == NODES
    for evaluator, error in refusals.items():
        assert type(error) is CommitteeMismatchError
        assert str(error).startswith(f"CommitteeMismatchError: round {lie_round}, node {evaluator}")
        assert says in error.detail
        if lie != "unsealed-committee":
            assert error.missing  # an assigned peer was not forwarded
    assert strategy.csc.ballot_count(lie_round) == 0
    assert not watched.of(EVALUATE)  # earlier rounds (if any) went through unharmed


def test_a_client_pinned_to_another_committee_size_refuses_the_run():
    strategy = SecCL(chain_url=free_loopback_url(), candidate_fraction=0.34, committee_size=K)
    watched = WatchedApp()
    with pytest.raises(NotEnoughNodesError, match="round 1: 0 valid updates"):
        committee_run(strategy, app=watched, num_rounds=1, **{"seccl-committee-size": 0})
    refusals = watched.detections
    assert refusals and all(type(d.error) is ParameterMismatchError for d in refusals)
    assert "committee size 2, but this node is configured with 0" in str(refusals[0].error)


def test_an_aggregation_lie_in_a_committee_runs_last_round_is_caught_by_every_participant():
    """Each evaluator scored only its k peers, yet checks the merge of every candidate:
    the evaluate message brings the candidates' updates, each checked on chain."""
    strategy = LyingServer(
        lie="aggregate-non-candidate",
        lie_round=2,
        chain_url=free_loopback_url(),
        candidate_fraction=0.34,
        committee_size=K,
    )
    watched = WatchedApp()
    committee_run(strategy, app=watched, num_rounds=2)
    caught = watched.of(EVALUATE)
    assert set(caught) == set(strategy.csc.update_authors(2))
    owner = strategy.csc.owner()
    for error in caught.values():
        assert type(error) is AggregationMismatchError
        assert str(error).startswith(f"AggregationMismatchError: round 2, node {owner}: ")


class NotAsking(SecCL):
    """Never asks the first author to cross-evaluate (its committee peers lose a ballot)."""

    def relay_committee(self, server_round, assigned):
        relayed = super().relay_committee(server_round, assigned)
        self.left_out = next(iter(relayed))
        return {e: p for e, p in relayed.items() if e != self.left_out}


def test_an_author_never_asked_to_vote_says_it_cannot_vouch_for_the_model(caplog):
    strategy = NotAsking(chain_url=free_loopback_url(), candidate_fraction=0.34, committee_size=K)
    watched = WatchedApp()
    with caplog.at_level(logging.INFO, logger="flwr"):  # the CLI tests set flwr to WARNING
        result = committee_run(strategy, app=watched, num_rounds=1)
    logged = [r.getMessage() for r in caplog.records]
    assert "\t│\t├── Evaluator committees: k = 2 evaluators per update" in logged
    assert "anchor: 6 update digests anchored and sealed (gas " in "".join(logged)
    assert (
        "cross_evaluate: committees of k = 2 (each of 5 evaluators scores 2 assigned peers)"
        in logged
    )
    assert result.rounds[0].ballots == NODES - 1
    caught = watched.of(EVALUATE)
    assert list(caught) == [strategy.left_out]
    assert type(caught[strategy.left_out]) is AggregationUncheckableError


class CrashingSecCL(SecCL):
    """A committee server that dies in round 1 just before or just after the seal."""

    def __init__(self, crash_at: str, **kwargs):
        super().__init__(**kwargs)
        self.crash_at = crash_at

    def _seal_updates(self, state):
        if self.crash_at == "before-seal":
            raise ServerDied("anchored, not sealed")
        super()._seal_updates(state)
        if self.crash_at == "after-seal":
            raise ServerDied("sealed, no cross-evaluation yet")


class ServerDied(RuntimeError):
    """The server process ends here."""


@pytest.mark.parametrize("crash_at", ["before-seal", "after-seal"])
def test_a_resumed_committee_round_seals_once(crash_at, tmp_path):
    store = tmp_path / "messages"
    url = free_loopback_url()
    first = CrashingSecCL(
        crash_at, chain_url=url, candidate_fraction=0.34, committee_size=K, store=store
    )
    with pytest.raises(ServerDied):
        committee_run(first, num_rounds=1)
    csc = first.csc
    assert (csc.seal_block(1) > 0) is (crash_at == "after-seal")
    node = LoopbackRPCServer(csc.w3, "127.0.0.1", 0).start()  # the chain outlives the server
    try:
        second = SecCL(
            chain=node.url,
            contract=csc.address,
            candidate_fraction=0.34,
            committee_size=K,
            store=store,
            run_label=first.run_label,
        )
        result = committee_run(second, num_rounds=1, **{"seccl-chain-url": node.url})
    finally:
        node.stop()
    (record,) = result.rounds
    seals = record.transactions.get("anchor", [])
    assert len(seals) == (1 if crash_at == "before-seal" else 0)  # never a second seal
    assert record.ballots == NODES and csc.last_completed_round() == 1
    report = audit_run(CandidateSelection.attach(csc.w3, csc.address), DirectoryStore(store))
    assert report.ok, [str(f) for f in report.findings]


def test_simulate_runs_and_audits_a_committee_run(tmp_path, capsys):
    argv = ["simulate", "--engine", "inprocess", "--participants", "4", "--rounds", "1"]
    argv += ["--committee-size", "2", "--audit", "--out", str(tmp_path), "--no-plot"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "committee size = 2 (pinned 2: matches)" in printed
    assert "audit passed" in printed
    assert main([*argv[:-6], "--committee-size", "4", "--out", str(tmp_path)]) == 2
    assert "--committee-size: at most --participants - 1 = 3" in capsys.readouterr().err


@pytest.mark.parametrize("lying", [False, True], ids=["honest", "aggregate-non-candidate"])
def test_nodes_no_evaluate_reached_check_the_merge_at_their_next_train(lying):
    """With no evaluate phase, round 1's merge is checked at round 2's train: the train
    message brings round 1's candidates' updates, which an evaluator mostly did not score."""
    kwargs = dict(chain_url=free_loopback_url(), candidate_fraction=0.34, committee_size=K)
    kwargs["fraction_evaluate"] = 0.0
    strategy = LyingServer(lie="aggregate-non-candidate", **kwargs) if lying else SecCL(**kwargs)
    watched = WatchedApp()
    if not lying:
        result = committee_run(strategy, app=watched, num_rounds=2)
        assert not watched.detections
        assert [r.dropped for r in result.rounds] == [{}, {}]
        return
    with pytest.raises(NotEnoughNodesError, match="round 2: 0 valid updates"):
        committee_run(strategy, app=watched, num_rounds=2)
    caught = watched.of(TRAIN)
    assert set(caught) == set(strategy.csc.update_authors(1))
    assert {type(e) for e in caught.values()} == {AggregationMismatchError}
    assert all(e.round == 1 for e in caught.values())


@pytest.mark.parametrize(
    "scored, says",
    [(slice(0, 2), None), (slice(0, 3), "not assigned ["), (slice(0, 1), "missing [")],
    ids=["assigned", "one-too-many", "one-missing"],
)
def test_the_server_relays_only_ballots_of_the_evaluators_assignment(scored, says):
    """One bad ballot would revert the whole ``submitBallots`` batch: the server checks
    each against the round's assignment before relaying it."""
    from tests import test_hostile_input as h

    me, others = h.NODES[h.HOSTILE], h._others(h.HOSTILE)
    assigned = {me.address: others[:2]}
    peers = others[scored]
    fields = h.ballot_fields(me, peers, [1000] * len(peers))
    message = h.reply(
        h.HOSTILE, RecordDict({SECCL_KEY: ConfigRecord(fields)}), MESSAGE_TYPE[CROSS_EVALUATE]
    )
    if says is None:
        assert verify_ballot(h.RULES, message, h.AUTHORS, assigned=assigned).peers == tuple(peers)
        return
    with pytest.raises(MalformedMessageError, match="does not score the evaluator's 2") as info:
        verify_ballot(h.RULES, message, h.AUTHORS, assigned=assigned)
    assert says in str(info.value)


def test_candidates_updates_never_sent_leave_every_node_that_lacks_one_saying_so(monkeypatch):
    """A server that sends no candidate updates in evaluate (nor at the next train) is
    never silent: a node whose k peers and itself do not cover every candidate cannot
    recompute the merge and says so."""
    monkeypatch.setattr("seccl_flwr.strategy._attach_candidates", lambda *args: None)
    strategy = SecCL(chain_url=free_loopback_url(), candidate_fraction=0.34, committee_size=K)
    watched = WatchedApp()
    result = committee_run(strategy, app=watched, num_rounds=1)
    candidates = set(result.rounds[0].candidates)
    assigned = strategy.csc.committee_assignment(1)
    lacking = {e for e, peers in assigned.items() if not candidates <= {e, *peers}}
    caught = watched.of(EVALUATE)
    assert lacking and set(caught) == lacking
    assert {type(e) for e in caught.values()} == {AggregationUncheckableError}


@pytest.mark.anvil
def test_a_committee_run_on_anvil_with_a_fixed_gas_limit_audits_clean(anvil_url, tmp_path):
    """On a real node the ballots' preflight ``eth_call`` must not run in the seal's own
    block (its hash is not available there); with a fixed gas limit every transaction
    is preflighted. Two rounds, then the audit pinning k."""
    strategy = SecCL(
        chain=anvil_url,
        candidate_fraction=0.34,
        committee_size=K,
        gas_limit=20_000_000,
        store=tmp_path / "messages",
    )
    result = committee_run(strategy, num_rounds=2, **{"seccl-chain-url": anvil_url})
    assert [r.ballots for r in result.rounds] == [NODES, NODES]
    csc = CandidateSelection.attach(strategy.csc.w3, strategy.csc.address)
    report = audit_run(csc, DirectoryStore(tmp_path / "messages"), pins=AuditPins(committee_size=K))
    assert report.ok, [str(f) for f in report.findings]


def test_a_median_committee_run_audits_clean(tmp_path):
    """The median rule over partial ballots: each author's median of its k received
    scores, verified on chain and re-derived by the audit with the assignment."""
    strategy = SecCL(
        chain_url=free_loopback_url(),
        candidate_fraction=0.34,
        committee_size=K,
        election_rule="median",
        store=tmp_path / "messages",
    )
    result = committee_run(strategy, num_rounds=1)
    assert result.rounds[0].ballots == NODES and len(result.rounds[0].candidates) == 3
    csc = CandidateSelection.attach(strategy.csc.w3, strategy.csc.address)
    report = audit_run(csc, DirectoryStore(tmp_path / "messages"), pins=AuditPins(committee_size=K))
    assert report.ok, [str(f) for f in report.findings]

"""The offline audit: an honest run passes; every tampering the trust model names fails.

Runs are in-process on the digits app and the embedded chain; the audit attaches to
the run's contract read-only and reads only the chain and the published messages.
"""

import shlex
import shutil

import numpy as np
import pytest
from eth_account import Account
from flwr.app import ArrayRecord

from seccl_flwr import wire
from seccl_flwr.apps import digits
from seccl_flwr.attacks import LyingServer
from seccl_flwr.audit import (
    AGGREGATION_MISMATCH,
    ANCHOR_MISMATCH,
    BAD_SIGNATURE,
    BELOW_QUORUM,
    DIGEST_MISMATCH,
    ELECTION_MISMATCH,
    FAIL,
    FOREIGN_MESSAGE,
    INCOMPLETE_BALLOT,
    MALFORMED_MESSAGE,
    MISSING_ANCHOR,
    MISSING_BALLOT,
    MISSING_MESSAGE,
    MISSING_UPDATE,
    NOTHING,
    OK,
    PARAMETER_MISMATCH,
    ROSTER_MISMATCH,
    RUN_NOT_OPEN,
    STALLED_ROUND,
    UNANCHORED_MESSAGE,
    UNCHECKED,
    AuditPins,
    audit_run,
    chain_anchors,
    format_report,
)
from seccl_flwr.chain.csc import CandidateSelection
from seccl_flwr.chain.errors import ContractRevertError, NoContractError
from seccl_flwr.chain.rpc_server import LoopbackRPCServer, free_loopback_url
from seccl_flwr.cli import main
from seccl_flwr.errors import NotEnoughNodesError
from seccl_flwr.identity import simulation_key
from seccl_flwr.inprocess import InProcessGrid
from seccl_flwr.protocol.borda import elect, round_seed, tie_key
from seccl_flwr.protocol.eip712 import Kind, ballot_typed_data, run_id_from_label, sign_typed
from seccl_flwr.protocol.encoding import metrics_to_arrays
from seccl_flwr.protocol.params import RunParams
from seccl_flwr.protocol.signed import SignedMessage, next_global_model
from seccl_flwr.run_setup import server_account
from seccl_flwr.store import DirectoryStore, digest_hex, encode_message
from seccl_flwr.strategy import SecCL
from tests.csc_helpers import open_csc
from tests.strategy_helpers import pins_of

KEY_SEED = 11
NUM_NODES = 4


def run_with_store(  # noqa: PLR0913 - a run's knobs
    store_dir, strategy_cls=SecCL, num_rounds=2, raises=None, unavailable=None, **kwargs
):
    """Run SecCL in-process with a message store; return the strategy (even if it fails)."""
    url = free_loopback_url()
    strategy = strategy_cls(chain_url=url, candidate_fraction=0.4, store=store_dir, **kwargs)
    config = {"seccl-key-seed": KEY_SEED, "seccl-chain-url": url, "seed": 0, "lr": 0.1}
    config.update(pins_of(strategy))  # honest clients accept the run the server opens
    grid = InProcessGrid(digits.app, NUM_NODES, run_config=config, unavailable=unavailable)
    initial = ArrayRecord(digits.initial_model().state_dict())
    if raises is None:
        strategy.start(grid, initial, num_rounds=num_rounds)
    else:
        with pytest.raises(raises):
            strategy.start(grid, initial, num_rounds=num_rounds)
    return strategy


def audit(strategy, store_dir, **kwargs):
    """Audit as an outsider: attach read-only (code checked) and read the store."""
    csc = CandidateSelection.attach(strategy.csc.w3, strategy.csc.address)
    return audit_run(csc, DirectoryStore(store_dir), **kwargs)


def participant_key(address: str) -> bytes:
    for partition in range(NUM_NODES):
        key = simulation_key(KEY_SEED, partition)
        if Account.from_key(key).address == address:
            return key
    raise LookupError(address)


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    store_dir = tmp_path_factory.mktemp("honest") / "messages"
    strategy = run_with_store(store_dir)
    return strategy, store_dir


@pytest.fixture
def copy(honest, tmp_path):
    """A fresh copy of the honest run's store, to tamper with."""
    strategy, store_dir = honest
    target = tmp_path / "messages"
    shutil.copytree(store_dir, target)
    return strategy, target, DirectoryStore(target)


def stored(
    store: DirectoryStore, kind: Kind, round_: int
) -> dict[str, tuple[bytes, SignedMessage]]:
    """Return author -> (digest, message) of the stored messages of one kind and round."""
    found = {}
    for digest in store.digests():
        message = store.get(digest)
        if message.kind == kind and message.round == round_:
            found[message.author] = (digest, message)
    return found


def only(report, kind: str):
    """Assert every finding is of ``kind``; return them."""
    assert report.findings, "the audit found nothing"
    assert report.finding_kinds() == {kind}, format_report(report)
    return report.findings


# ---------------------------------------------------------------------- honest
def test_honest_run_audits_clean(honest):
    strategy, store_dir = honest
    report = audit(strategy, store_dir)
    assert report.ok, format_report(report)
    assert [v.round for v in report.rounds] == [0, 1, 2]
    round0, *later = report.rounds
    assert (round0.global_model, round0.updates, round0.ballots) == (OK, NOTHING, NOTHING)
    for verdict in later:
        assert (
            verdict.updates,
            verdict.ballots,
            verdict.quorum,
            verdict.election,
            verdict.global_model,
            verdict.evaluations,
        ) == (OK, OK, OK, OK, OK, OK)
        assert (verdict.updated, verdict.voted) == ("4/4", "4/4")
    assert report.notices == []  # everyone sent an update and voted
    # every anchored digest is stored, and nothing else is
    anchors = chain_anchors(strategy.csc)
    assert set(anchors.values()) == set(DirectoryStore(store_dir).digests())
    assert report.messages_checked == len(anchors) == 3 + 2 * 3 * NUM_NODES
    text = format_report(report)
    assert "audit passed" in text
    # what was read is printed, so an auditor can compare it by eye
    csc = strategy.csc
    assert report.is_open and report.participants == csc.participants()
    assert report.params == RunParams(2, 3, 100_000, False)  # λ 0.4 of 4, a majority
    assert f"roster: 4 participants, rosterDigest 0x{csc.roster_digest().hex()}" in text
    assert "M = 2 (not pinned); quorum = 3 (not pinned)" in text
    assert "share fraction = 0.1 (100000 ppm) (not pinned)" in text


def test_store_holds_exactly_what_was_anchored(honest):
    strategy, store_dir = honest
    store, csc = DirectoryStore(store_dir), strategy.csc
    for round_ in (1, 2):
        updates = stored(store, Kind.UPDATE, round_)
        assert sorted(updates) == sorted(csc.update_authors(round_))
        for author, (digest, _) in updates.items():
            assert csc.anchor_of(round_, Kind.UPDATE, author) == digest
        for evaluator, (digest, _) in stored(store, Kind.BALLOT, round_).items():
            assert csc.anchor_of(round_, Kind.BALLOT, evaluator) == digest
    (digest, model), *_ = stored(store, Kind.GLOBAL_MODEL, 0).values()
    assert list(model.payload) == list(digits.initial_model().state_dict())


# --------------------------------------------------------------- tampered updates
def test_altered_update_file_is_a_digest_mismatch(copy):
    strategy, store_dir, store = copy
    author = strategy.csc.candidates_of(1)[0]
    digest, message = stored(store, Kind.UPDATE, 1)[author]
    values = message.payload["values"].copy()
    values[0] += np.float32(1.0)
    altered = SignedMessage(
        message.binding,
        1,
        Kind.UPDATE,
        author,
        {"indices": message.payload["indices"], "values": values},
        message.signature,
    )
    (store_dir / digest_hex(digest)).write_bytes(encode_message(altered))
    report = audit(strategy, store_dir)
    (finding,) = only(report, DIGEST_MISMATCH)
    assert (finding.round, finding.node, finding.message) == (
        1,
        author,
        f"update {digest_hex(digest)}",
    )
    assert report.rounds[1].updates == FAIL
    assert report.rounds[1].global_model == UNCHECKED  # a candidate's update is unusable
    assert report.rounds[2].ok
    assert f"audit FAILED: digest-mismatch: round 1, node {author}" in format_report(report)


def test_altered_update_stored_under_its_own_digest_is_missing_and_unsigned(copy):
    strategy, store_dir, store = copy
    author, (digest, message) = next(iter(stored(store, Kind.UPDATE, 2).items()))
    altered = SignedMessage(
        message.binding,
        2,
        Kind.UPDATE,
        author,
        {"indices": message.payload["indices"], "values": message.payload["values"] * 2},
        message.signature,
    )
    (store_dir / digest_hex(digest)).unlink()
    store.put(altered)
    report = audit(strategy, store_dir)
    assert report.finding_kinds() == {MISSING_MESSAGE, BAD_SIGNATURE, ANCHOR_MISMATCH}
    assert {(f.round, f.node) for f in report.findings} == {(2, author)}


def test_swapped_update_files_are_caught_for_both_authors(copy):
    strategy, store_dir, store = copy
    (a, (digest_a, _)), (b, (digest_b, _)) = list(stored(store, Kind.UPDATE, 1).items())[:2]
    file_a, file_b = store_dir / digest_hex(digest_a), store_dir / digest_hex(digest_b)
    data_a, data_b = file_a.read_bytes(), file_b.read_bytes()
    file_a.write_bytes(data_b)
    file_b.write_bytes(data_a)
    findings = only(audit(strategy, store_dir), DIGEST_MISMATCH)
    assert {(f.round, f.node) for f in findings} == {(1, a), (1, b)}
    assert b in next(f.detail for f in findings if f.node == a)  # names whose content it is


def test_malformed_update_file_is_named(copy):
    strategy, store_dir, store = copy
    author, (digest, _) = next(iter(stored(store, Kind.UPDATE, 1).items()))
    (store_dir / digest_hex(digest)).write_bytes(b"not a message")
    (finding,) = only(audit(strategy, store_dir), MALFORMED_MESSAGE)
    assert (finding.round, finding.node) == (1, author)


# --------------------------------------------------------------- tampered ballots
@pytest.mark.parametrize(
    "tamper, kind, election",
    [
        ("alter-scores", DIGEST_MISMATCH, UNCHECKED),
        ("delete", MISSING_MESSAGE, UNCHECKED),
        ("forge-signature", BAD_SIGNATURE, OK),
    ],
)
def test_tampered_ballot_is_caught(copy, tamper, kind, election):
    strategy, store_dir, store = copy
    evaluator, (digest, ballot) = next(iter(stored(store, Kind.BALLOT, 2).items()))
    path = store_dir / digest_hex(digest)
    if tamper == "delete":
        path.unlink()
    else:
        scores, signature = ballot.scores, ballot.signature
        if tamper == "alter-scores":
            first = ballot.scores[0]
            scores = (first + 1 if first < 1_000_000 else 0, *ballot.scores[1:])
        else:  # a valid-looking signature over the same ballot, by someone else
            typed = ballot_typed_data(ballot.binding, 2, evaluator, ballot.peers, scores)
            signature = sign_typed(b"\x01" * 32, typed)
        forged = SignedMessage(
            ballot.binding,
            2,
            Kind.BALLOT,
            evaluator,
            signature=signature,
            peers=ballot.peers,
            scores=scores,
        )
        path.write_bytes(encode_message(forged))
    report = audit(strategy, store_dir)
    (finding,) = only(report, kind)
    assert (finding.round, finding.node, finding.message) == (
        2,
        evaluator,
        f"ballot {digest_hex(digest)}",
    )
    assert report.rounds[2].ballots == FAIL
    assert report.rounds[2].election == election  # the content still matches the chain
    assert report.rounds[1].ok


def test_forged_ballot_a_lying_server_published_is_caught(tmp_path):
    """The contract refuses the forged ballot; the store still shows what was relayed."""
    store_dir = tmp_path / "messages"
    strategy = run_with_store(
        store_dir, LyingServer, num_rounds=1, raises=ContractRevertError, lie="forge-ballot"
    )
    report = audit(strategy, store_dir)
    ballots = [f for f in report.findings if "ballot" in f.message]
    assert {f.kind for f in ballots} == {UNANCHORED_MESSAGE, BAD_SIGNATURE}
    forged = [f for f in ballots if f.kind == BAD_SIGNATURE]
    assert len(forged) == 1 and forged[0].round == 1
    assert report.rounds[1].updates == OK and report.rounds[0].global_model == OK


def test_an_election_the_reference_does_not_reproduce_is_caught(honest):
    """A contract (or endpoint) reporting other totals than the ballots give."""
    strategy, store_dir = honest
    csc = CandidateSelection.attach(strategy.csc.w3, strategy.csc.address)
    real = csc.totals_of
    csc.totals_of = lambda round_: {a: t + (round_ == 2) for a, t in real(round_).items()}
    report = audit_run(csc, DirectoryStore(store_dir))
    (finding,) = only(report, ELECTION_MISMATCH)
    assert (finding.round, finding.node, finding.message) == (2, "contract", "election")
    assert report.rounds[2].election == FAIL and report.rounds[1].ok


# ---------------------------------------------------------- tampered aggregation
def test_aggregating_a_non_candidate_is_an_aggregation_mismatch(tmp_path):
    store_dir = tmp_path / "messages"
    strategy = run_with_store(
        store_dir,
        LyingServer,
        num_rounds=2,
        raises=NotEnoughNodesError,  # clients refuse to train on the forged model
        lie="aggregate-non-candidate",
    )
    report = audit(strategy, store_dir)
    (finding,) = only(report, AGGREGATION_MISMATCH)
    owner = strategy.csc.owner()
    assert (finding.round, finding.node) == (1, owner)
    assert finding.message.startswith("global_model 0x")
    assert str(strategy.csc.candidates_of(1)) in finding.detail
    assert [v.round for v in report.rounds] == [0, 1]  # round 2 never got anchors
    assert report.rounds[1].global_model == FAIL
    assert (report.rounds[1].updates, report.rounds[1].election) == (OK, OK)


def test_replaced_global_model_file_is_caught(copy):
    strategy, store_dir, store = copy
    (digest0, initial), *_ = stored(store, Kind.GLOBAL_MODEL, 0).values()
    (digest1, model1), *_ = stored(store, Kind.GLOBAL_MODEL, 1).values()
    replaced = SignedMessage(model1.binding, 1, Kind.GLOBAL_MODEL, model1.author, initial.payload)
    (store_dir / digest_hex(digest1)).write_bytes(encode_message(replaced))
    report = audit(strategy, store_dir)
    (finding,) = only(report, DIGEST_MISMATCH)
    assert (finding.round, finding.node) == (1, strategy.csc.owner())
    assert finding.message == f"global_model {digest_hex(digest1)}"
    assert report.rounds[1].global_model == FAIL
    assert report.rounds[2].global_model == UNCHECKED  # its base model is not verified


# ------------------------------------------------------- unanchored, other runs
def test_messages_the_chain_does_not_anchor_are_reported(copy):
    strategy, store_dir, store = copy
    csc = strategy.csc
    author = csc.participants()[0]
    account = Account.from_key(participant_key(author))
    for round_, metrics in ((1, {"accuracy": 0.123}), (5, {"accuracy": 0.5})):
        arrays = metrics_to_arrays(metrics)
        store.put(SignedMessage.sign(account, csc.binding, round_, Kind.EVALUATION, arrays))
    report = audit(strategy, store_dir)
    assert {(f.kind, f.round, f.node) for f in report.findings} == {
        (ANCHOR_MISMATCH, 1, author),  # round 1 anchors this author's real metrics
        (UNANCHORED_MESSAGE, 5, author),
    }
    assert report.rounds[1].evaluations == FAIL


def test_auditing_another_contract_than_the_runs_fails(copy):
    strategy, store_dir, store = copy
    csc = strategy.csc
    members = [Account.from_key(participant_key(a)) for a in csc.participants()]
    other, _ = open_csc(
        csc.w3, server_account(strategy.server_key, strategy.run_label), csc.run_id(), members, 2
    )
    report = audit_run(CandidateSelection.attach(csc.w3, other.address), DirectoryStore(store_dir))
    kinds = [f.kind for f in report.findings]
    assert kinds.count(FOREIGN_MESSAGE) == len(list(store.digests()))
    assert set(kinds) == {FOREIGN_MESSAGE, MISSING_ANCHOR}
    assert all(csc.address in f.detail for f in report.findings if f.kind == FOREIGN_MESSAGE)
    # a store shared by several runs: other runs' messages are skipped, not reported
    shared = audit_run(
        CandidateSelection.attach(csc.w3, other.address),
        DirectoryStore(store_dir),
        ignore_foreign=True,
    )
    assert shared.finding_kinds() == {MISSING_ANCHOR}
    assert shared.foreign_skipped == len(list(store.digests()))
    # and a message of the other contract mixed into this run's store is reported
    (_, initial), *_ = stored(store, Kind.GLOBAL_MODEL, 0).values()
    store.put(SignedMessage(other.binding, 0, Kind.GLOBAL_MODEL, csc.owner(), initial.payload))
    (finding,) = only(audit(strategy, store_dir), FOREIGN_MESSAGE)
    assert other.address in finding.detail
    # an address without the SecCL code is refused before anything is read
    with pytest.raises(NoContractError):
        CandidateSelection.attach(csc.w3, csc.owner())


# ------------------------------------------------------------- pinned run
def honest_pins(strategy) -> AuditPins:
    csc = strategy.csc
    return AuditPins(
        roster_digest=csc.roster_digest(),
        roster=tuple(reversed(csc.participants())),  # members, in any order
        candidate_fraction=0.4,
        share_fraction=0.1,
        per_tensor=False,
        quorum=3,
    )


def test_the_pinned_roster_and_parameters_of_the_run_pass(honest):
    strategy, store_dir = honest
    report = audit(strategy, store_dir, pins=honest_pins(strategy))
    assert report.ok, format_report(report)
    text = format_report(report)
    assert "(pinned digest 0x" in text and ", 4 members: matches)" in text
    assert "M = 2 (pinned λ 0.4 -> M = 2: matches)" in text
    assert "quorum = 3 (pinned at least 3: matches)" in text
    assert "per-tensor = false (pinned false: matches)" in text


@pytest.mark.parametrize(
    "pin, kind, says",
    [
        ({"roster_digest": b"\x01" * 32}, ROSTER_MISMATCH, "differs from the pinned 0x0101"),
        ({"candidate_fraction": 0.2}, PARAMETER_MISMATCH, "M = 2, but the pinned λ = 0.2"),
        ({"candidate_fraction": 1.0}, PARAMETER_MISMATCH, "and n = 4 give M = 4"),
        ({"share_fraction": 0.2}, PARAMETER_MISMATCH, "100000 ppm, but the pinned 0.2"),
        ({"per_tensor": True}, PARAMETER_MISMATCH, "per-tensor False, but the pin is True"),
        ({"quorum": 4}, PARAMETER_MISMATCH, "quorum 3 is below the pinned 4"),
    ],
)
def test_a_roster_or_parameter_other_than_the_pinned_one_is_a_finding(honest, pin, kind, says):
    strategy, store_dir = honest
    report = audit(strategy, store_dir, pins=AuditPins(**pin))
    (finding,) = only(report, kind)
    assert (finding.round, finding.node) == (None, "contract")
    assert says in finding.detail
    assert str(finding).startswith(f"{kind}: run, node contract")
    assert "MISMATCH" in format_report(report)
    assert all(v.ok for v in report.rounds)  # the rounds themselves check out


def test_a_roster_of_other_members_names_the_strangers_and_the_absent(honest):
    strategy, store_dir = honest
    members = strategy.csc.participants()
    sybil = Account.from_key(b"\x05" * 32).address
    report = audit(strategy, store_dir, pins=AuditPins(roster=(*members[1:], sybil)))
    findings = only(report, ROSTER_MISMATCH)
    details = " ".join(f.detail for f in findings)
    assert f"the roster lists ['{members[0]}']" in details
    assert f"the roster lacks the pinned ['{sybil}']" in details


def test_a_run_never_opened_is_a_finding(honest, tmp_path):
    """A contract whose roster was never sealed: the owner could still add members."""
    strategy, _ = honest
    csc = strategy.csc
    server = server_account(strategy.server_key, strategy.run_label)
    unopened, _ = CandidateSelection.deploy(
        csc.w3, server, run_id_from_label("unopened"), RunParams(2, 3, 100_000, False)
    )
    attached = CandidateSelection.attach(csc.w3, unopened.address)
    pins = AuditPins(roster_digest=csc.roster_digest())
    report = audit_run(attached, DirectoryStore(tmp_path), pins=pins)
    assert report.finding_kinds() == {RUN_NOT_OPEN, ROSTER_MISMATCH, MISSING_ANCHOR}
    assert report.findings[0].kind == RUN_NOT_OPEN  # the run's findings come first
    assert "run NOT OPEN" in format_report(report)
    assert not report.is_open and report.roster_digest == bytes(32)


# -------------------------------------------------------------- withholding
def _cross_evaluation_of_node(node_id: int):
    """``unavailable``: node ``node_id`` never answers a cross-evaluation (drops out)."""
    return lambda node, message: node == node_id and wire.phase_of(message) == wire.CROSS_EVALUATE


@pytest.fixture(scope="module")
def dropout(tmp_path_factory):
    """An honest run in which node 4 never casts a ballot: 3 of 4, the quorum."""
    store_dir = tmp_path_factory.mktemp("dropout") / "messages"
    strategy = run_with_store(store_dir, unavailable=_cross_evaluation_of_node(4))
    return strategy, store_dir


def test_a_missing_ballot_is_a_notice_not_a_failure(dropout):
    strategy, store_dir = dropout
    report = audit(strategy, store_dir)
    assert report.ok, format_report(report)
    silent = strategy.participants[4]
    assert [(n.kind, n.round, n.node) for n in report.notices] == [
        (MISSING_BALLOT, 1, silent),
        (MISSING_BALLOT, 2, silent),
    ]
    assert "cannot tell which" in report.notices[0].detail
    assert [(v.updated, v.voted, v.quorum) for v in report.rounds[1:]] == [("4/4", "3/4", OK)] * 2
    text = format_report(report)
    assert "2 notice(s) (not failures" in text
    assert f"missing-ballot: round 2, node {silent}, ballot (none)" in text
    assert "audit passed" in text


def test_a_round_elected_below_the_quorum_is_a_finding(dropout):
    strategy, store_dir = dropout
    # the auditor accepts no quorum below 4: both rounds, elected with 3 ballots, fail
    report = audit(strategy, store_dir, pins=AuditPins(quorum=4))
    assert report.finding_kinds() == {PARAMETER_MISMATCH, BELOW_QUORUM}
    below = [f for f in report.findings if f.kind == BELOW_QUORUM]
    assert [(f.round, f.node, f.message) for f in below] == [
        (1, "contract", "election"),
        (2, "contract", "election"),
    ]
    assert "elected with 3 ballot(s), below the pinned quorum of 4 (the run's is 3)" in (
        below[0].detail
    )
    assert [v.quorum for v in report.rounds[1:]] == [FAIL, FAIL]
    assert [v.election for v in report.rounds[1:]] == [OK, OK]  # the rest checks out

    # and a contract reporting a quorum of 4 elected below it: the audit counts the
    # BallotCast events itself instead of trusting the contract's refusal
    class ClaimsQuorum4(CandidateSelection):
        def params(self) -> RunParams:
            return RunParams(2, 4, 100_000, False)

    csc = ClaimsQuorum4.attach(strategy.csc.w3, strategy.csc.address)
    findings = only(audit_run(csc, DirectoryStore(store_dir)), BELOW_QUORUM)
    assert "below the run's quorum of 4" in findings[0].detail


def test_a_node_never_asked_to_train_is_a_missing_update_notice(tmp_path):
    store_dir = tmp_path / "messages"
    strategy = run_with_store(
        store_dir,
        num_rounds=1,
        unavailable=lambda node, message: node == 2 and message.metadata.message_type == "train",
    )
    report = audit(strategy, store_dir)
    assert report.ok, format_report(report)
    assert [(n.kind, n.round, n.node) for n in report.notices] == [
        (MISSING_UPDATE, 1, strategy.participants[2])
    ]
    assert (report.rounds[1].updated, report.rounds[1].voted) == ("3/4", "3/3")


def test_a_stored_ballot_that_skips_an_anchored_author_is_incomplete(copy):
    """A ballot its evaluator signed on a partial set (updates withheld from it)."""
    strategy, store_dir, store = copy
    csc = strategy.csc
    evaluator, withheld, *others = csc.update_authors(2)
    account = Account.from_key(participant_key(evaluator))
    partial = SignedMessage.sign(
        account, csc.binding, 2, Kind.BALLOT, peers=others, scores=[500_000] * len(others)
    )
    store.put(partial)
    report = audit(strategy, store_dir)
    assert report.finding_kinds() == {INCOMPLETE_BALLOT, ANCHOR_MISMATCH}
    (finding,) = [f for f in report.findings if f.kind == INCOMPLETE_BALLOT]
    assert (finding.round, finding.node) == (2, evaluator)
    assert finding.message == f"ballot {digest_hex(partial.digest())}"
    assert f"missing ['{withheld}']" in finding.detail
    assert report.rounds[2].ballots == FAIL


class StoppingServer(SecCL):
    """A server that stops (crashes, or gives up) in round 2 before ``stop_before``."""

    def __init__(self, stop_before: str, **kwargs):
        super().__init__(**kwargs)
        self.stop_before = stop_before

    def _stop(self, phase: str, round_: int) -> None:
        if (phase, round_) == (self.stop_before, 2):
            raise ServerStopped(f"stopped in round 2 before {phase}")

    def _cross_evaluate(self, run, state):
        self._stop("cross-evaluate", state.round)
        super()._cross_evaluate(run, state)

    def _aggregate(self, run, state):
        self._stop("aggregate", state.round)
        super()._aggregate(run, state)


class ServerStopped(RuntimeError):
    """The server process ends here."""


@pytest.mark.parametrize(
    "stop_before, column, node, says",
    [
        ("cross-evaluate", "election", "contract", "4 update(s) anchored, never elected"),
        ("aggregate", "global_model", "owner", "but no global model was anchored"),
    ],
)
def test_a_round_left_open_is_a_stalled_round(tmp_path, stop_before, column, node, says):
    store_dir = tmp_path / "messages"
    strategy = run_with_store(
        store_dir, StoppingServer, raises=ServerStopped, stop_before=stop_before
    )
    report = audit(strategy, store_dir)
    (finding,) = only(report, STALLED_ROUND)
    expected_node = strategy.csc.owner() if node == "owner" else node
    assert (finding.round, finding.node) == (2, expected_node)
    assert says in finding.detail
    assert getattr(report.rounds[2], column) == FAIL
    assert report.rounds[1].ok and report.rounds[2].updates == OK
    assert report.notices == []  # round 2 was not elected, or everyone voted


# --------------------------------------------------- last-round aggregation lie
@pytest.mark.parametrize(
    "lie",
    ["aggregate-non-candidate", "aggregate-weighted", "replay-old-model", "previous-candidates"],
)
def test_an_aggregation_lie_in_the_last_round_is_caught(tmp_path, lie):
    """The server aggregates honestly until the last round, when no client trains on
    its model again: its published store still convicts it."""
    store_dir = tmp_path / "messages"
    strategy = run_with_store(store_dir, LyingServer, num_rounds=2, lie=lie, lie_round=2)
    report = audit(strategy, store_dir)
    (finding,) = only(report, AGGREGATION_MISMATCH)
    assert (finding.round, finding.node) == (2, strategy.csc.owner())
    assert str(strategy.csc.candidates_of(2)) in finding.detail
    assert report.rounds[-1].round == 2 and report.rounds[2].global_model == FAIL
    assert report.rounds[1].ok  # honest until the last round


# ------------------------------------------------- the withholding lies
def test_withheld_updates_leave_a_stalled_round_without_ballots(tmp_path):
    """Each evaluator gets one author's update only: every one refuses to vote."""
    store_dir = tmp_path / "messages"
    strategy = run_with_store(
        store_dir, LyingServer, num_rounds=1, raises=NotEnoughNodesError, lie="withhold-updates"
    )
    report = audit(strategy, store_dir)
    (finding,) = only(report, STALLED_ROUND)
    assert finding.round == 1
    assert "4 update(s) anchored, never elected (0 ballot(s) cast, quorum 3)" in finding.detail
    assert (report.rounds[1].updated, report.rounds[1].voted) == ("4/4", "0/4")


def test_a_censored_update_is_a_missing_update_notice(tmp_path):
    store_dir = tmp_path / "messages"
    strategy = run_with_store(store_dir, LyingServer, num_rounds=1, lie="censor-update")
    report = audit(strategy, store_dir)
    assert report.ok, format_report(report)
    (notice,) = report.notices
    assert (notice.kind, notice.round) == (MISSING_UPDATE, 1)
    assert notice.node in strategy.csc.participants()
    assert notice.node not in strategy.csc.update_authors(1)
    assert report.rounds[1].updated == "3/4"


def test_a_dropped_ballot_is_a_missing_ballot_notice(tmp_path):
    store_dir = tmp_path / "messages"
    strategy = run_with_store(store_dir, LyingServer, num_rounds=1, lie="drop-ballot")
    report = audit(strategy, store_dir)
    assert report.ok, format_report(report)
    (notice,) = report.notices
    assert (notice.kind, notice.round) == (MISSING_BALLOT, 1)
    assert notice.node in strategy.csc.update_authors(1)
    assert notice.node not in strategy.csc.evaluators_of(1)


def test_parameters_other_than_the_configured_ones_are_caught_with_a_pin(tmp_path):
    """The server opens with λ = 1 (every author elected); clients refuse to train."""
    store_dir = tmp_path / "messages"
    strategy = run_with_store(
        store_dir, LyingServer, num_rounds=1, raises=NotEnoughNodesError, lie="wrong-parameters"
    )
    assert audit(strategy, store_dir).ok  # unpinned, λ = 1 is only printed
    report = audit(strategy, store_dir, pins=AuditPins(candidate_fraction=0.4))
    (finding,) = only(report, PARAMETER_MISMATCH)
    assert "M = 4, but the pinned λ = 0.4 and n = 4 give M = 2" in finding.detail


# ------------------------------------------------------------------- ties
def tied_run(strategy, store: DirectoryStore) -> CandidateSelection:
    """Play one round by hand on the honest run's chain in which every ballot gives
    every peer the same score: only the tie order decides the election."""
    w3 = strategy.csc.w3
    owner = server_account(strategy.server_key, strategy.run_label)
    members = [Account.from_key(simulation_key(KEY_SEED, p)) for p in range(NUM_NODES)]
    csc, _ = open_csc(w3, owner, run_id_from_label("ties"), members, 2, quorum=3)
    initial = {"w": np.zeros(8, np.float32)}
    model0 = SignedMessage(csc.binding, 0, Kind.GLOBAL_MODEL, owner.address, initial)
    store.put(model0)
    csc.anchor(0, Kind.GLOBAL_MODEL, [owner.address], [model0.digest()])
    updates = {
        m.address: SignedMessage.sign(
            m,
            csc.binding,
            1,
            Kind.UPDATE,
            {"indices": np.array([i], np.uint32), "values": np.array([i + 1], np.float32)},
        )
        for i, m in enumerate(members)
    }
    for update in updates.values():
        store.put(update)
    csc.anchor(1, Kind.UPDATE, list(updates), [u.digest() for u in updates.values()])
    ballots = []
    for member in members:
        peers = [a for a in updates if a != member.address]
        ballot = SignedMessage.sign(
            member, csc.binding, 1, Kind.BALLOT, peers=peers, scores=[500_000] * len(peers)
        )
        store.put(ballot)
        ballots.append(ballot)
    csc.submit_ballots(1, ballots)
    csc.elect(1)
    chosen = [updates[c].payload for c in csc.candidates_of(1)]
    model1 = next_global_model(csc.binding, 1, owner.address, initial, chosen)
    store.put(model1)
    csc.anchor(1, Kind.GLOBAL_MODEL, [owner.address], [model1.digest()])
    return CandidateSelection.attach(w3, csc.address)


def test_a_tie_decided_election_is_rerun_with_the_contracts_round_seed(honest, tmp_path):
    strategy, _ = honest
    store = DirectoryStore(tmp_path / "ties")
    csc = tied_run(strategy, store)
    anchored = chain_anchors(csc)
    updates = {a: d for (r, k, a), d in anchored.items() if (r, k) == (1, Kind.UPDATE)}
    seed = csc.round_seed(1)
    assert seed == round_seed(updates.values())
    # every score ties: each ballot gives M, M-1 points to its first two peers in the
    # seed's tie order, so the candidates are the first two of that order
    candidates = csc.candidates_of(1)
    assert candidates == sorted(updates, key=lambda a: tie_key(seed, a))[:2]
    ballots = {
        e: dict.fromkeys((a for a in updates if a != e), 500_000) for e in csc.participants()
    }
    assert elect(updates, ballots, 2, 3)[0] == candidates
    report = audit_run(csc, store)
    assert report.ok, format_report(report)
    # a seed other than the contract's would re-run another election: the audit
    # checks the seed the contract breaks ties with
    csc.round_seed = lambda round_: bytes(32)
    (finding,) = only(audit_run(csc, store), ELECTION_MISMATCH)
    assert (finding.round, finding.node) == (1, "contract")
    assert f"round seed 0x{bytes(32).hex()} is not the XOR" in finding.detail


def test_the_audits_log_queries_start_at_the_opening_block(honest, monkeypatch):
    strategy, store_dir = honest
    csc = CandidateSelection.attach(strategy.csc.w3, strategy.csc.address)
    starts = []
    real_events = CandidateSelection.events

    def spy(self, name, from_block=None):
        logs = real_events(self, name, from_block)
        starts.append(self.opening_block() if from_block is None else from_block)
        return logs

    monkeypatch.setattr(CandidateSelection, "events", spy)
    assert audit_run(csc, DirectoryStore(store_dir)).ok
    assert starts and set(starts) == {csc.opening_block()}
    assert csc.opening_block() > 0


# ------------------------------------------------------------------------ CLI
@pytest.mark.anvil
def test_cli_audits_a_simulated_run_on_anvil(anvil_url, tmp_path, capsys):
    out = tmp_path / "sim"
    args = ["simulate", "--participants", "3", "--rounds", "2", "--engine", "inprocess"]
    args += ["--chain", anvil_url, "--out", str(out), "--no-plot"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if x.startswith("audit: seccl-flwr audit"))
    command = shlex.split(line.removeprefix("audit: seccl-flwr "))
    store_dir = command[command.index("--store") + 1]
    assert store_dir.startswith(str(out / "messages"))

    assert main(command) == 0
    assert "audit passed" in capsys.readouterr().out

    store = DirectoryStore(store_dir)
    (digest, update), *_ = stored(store, Kind.UPDATE, 2).values()
    altered = SignedMessage(
        update.binding, 2, Kind.UPDATE, update.author, update.payload, b"\x00" * 65
    )
    (store.path / digest_hex(digest)).write_bytes(encode_message(altered))
    assert main(command) == 1
    printed = capsys.readouterr().out
    assert f"audit FAILED: bad-signature: round 2, node {update.author}, update " in printed

    wrong = [*command]
    wrong[wrong.index("--contract") + 1] = update.author  # an account, not the contract
    assert main(wrong) == 1
    assert "is not a SecCL contract" in capsys.readouterr().out


def test_cli_audit_refuses_what_it_cannot_read(tmp_path, capsys):
    contract = "0x" + "11" * 20
    base = ["audit", "--contract", contract]
    assert main([*base, "--chain", "embedded", "--store", str(tmp_path)]) == 2
    assert "JSON-RPC URL" in capsys.readouterr().err
    missing = tmp_path / "nowhere"
    assert main([*base, "--chain", free_loopback_url(), "--store", str(missing)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main([*base, "--chain", free_loopback_url(), "--store", str(tmp_path)]) == 2
    assert "cannot read the chain" in capsys.readouterr().err
    bad = ["audit", "--contract", "0x1234", "--chain", free_loopback_url()]
    assert main([*bad, "--store", str(tmp_path)]) == 2
    assert "is not an address" in capsys.readouterr().err


def test_cli_audit_checks_the_pins_it_is_given(honest, tmp_path, capsys):
    strategy, store_dir = honest
    csc = strategy.csc
    with LoopbackRPCServer(csc.w3) as server:  # the run's chain, on JSON-RPC
        base = ["audit", "--chain", server.url, "--contract", csc.address]
        base += ["--store", str(store_dir)]
        roster = tmp_path / "roster.txt"
        roster.write_text("# the run's members\n" + "\n".join(csc.participants()) + "\n\n")
        pins = ["--roster", str(roster), "--candidate-fraction", "0.4"]
        pins += ["--share-fraction", "0.1", "--per-tensor", "false", "--quorum", "3"]
        assert main([*base, *pins]) == 0
        out = capsys.readouterr().out
        assert f"rosterDigest 0x{csc.roster_digest().hex()} (pinned 4 members" in out
        assert "audit passed" in out and "MISMATCH" not in out
        assert main([*base, "--roster-digest", "0x" + csc.roster_digest().hex()]) == 0
        assert "audit passed" in capsys.readouterr().out

        wrong = ["--roster-digest", "0x" + "00" * 32, "--candidate-fraction", "0.2"]
        assert main([*base, *wrong]) == 1
        out = capsys.readouterr().out
        assert "audit FAILED: roster-mismatch: run, node contract, roster: rosterDigest" in out
        assert "parameter-mismatch: run, node contract, params: M = 2, but the pinned λ" in out
        assert "M = 2 (pinned λ 0.2 -> M = 1: MISMATCH)" in out


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("--roster-digest", "0x1234", "'0x1234' is not a roster digest; give the run's"),
        ("--roster-digest", "ab" * 32, "is not a roster digest"),  # no 0x
        ("--roster", "nowhere.txt", "cannot read 'nowhere.txt'"),
        ("--roster", "file:0x" + "11" * 20 + "\nnope\n", "line 2: 'nope' is not an address"),
        ("--roster", "file:0x" + "11" * 20 + "\n0x" + "11" * 20, "line 2: 0x1111"),
        ("--roster", "file:# nobody\n", "lists no address"),
        ("--candidate-fraction", "0", "must lie in (0, 1], got 0; λ is the fraction"),
        ("--candidate-fraction", "1.5", "must lie in (0, 1], got 1.5"),
        ("--share-fraction", "2", "must lie in (0, 1], got 2"),
        ("--share-fraction", "1e-7", "at least 1e-6, got 1e-07; the chain stores it in ppm"),
        ("--per-tensor", "yes", "invalid choice: 'yes' (choose from 'true', 'false')"),
        ("--quorum", "0", "must be at least 1, got 0; give the least number of ballots"),
        ("--quorum", "three", "'three' is not an integer"),
    ],
)
def test_a_bad_audit_pin_is_one_line_naming_it(option, value, says, tmp_path, capsys):
    if value.startswith("file:"):
        path = tmp_path / "roster.txt"
        path.write_text(value.removeprefix("file:"))
        value = str(path)
    elif option == "--roster":
        value = str(tmp_path / value)
        says = says.replace("'nowhere.txt'", repr(value))
    argv = ["audit", "--chain", "http://127.0.0.1:8545", "--contract", "0x" + "11" * 20]
    assert main([*argv, "--store", str(tmp_path), option, value]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"seccl-flwr audit: error: argument {option}: ")
    assert says in err


def test_one_roster_pin_at_a_time(tmp_path, capsys):
    roster = tmp_path / "roster.txt"
    roster.write_text("0x" + "11" * 20)
    argv = ["audit", "--chain", "http://127.0.0.1:8545", "--contract", "0x" + "11" * 20]
    argv += ["--store", str(tmp_path), "--roster", str(roster), "--roster-digest", "0x" + "00" * 32]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "argument --roster-digest: not allowed with argument --roster" in line


@pytest.mark.slow
@pytest.mark.parametrize(("name", "number"), [("median", 1), ("rank-median", 2)])
def test_a_median_run_audits_clean_and_a_node_pinned_to_borda_refuses_it(tmp_path, name, number):
    """The audit re-derives a median-rule election; a node pinned to Borda will not vote."""
    store_dir = tmp_path / name
    strategy = run_with_store(store_dir, election_rule=name)
    report = audit(strategy, store_dir, pins=AuditPins(election_rule=number))
    assert report.ok, format_report(report)
    assert all(v.election == OK for v in report.rounds[1:])
    assert report.params.election_rule == number
    pinned = f"election rule = {number} ({name}) (pinned {number} ({name}): matches)"
    assert pinned in format_report(report)
    wrong = audit(strategy, store_dir, pins=AuditPins(election_rule=0))
    assert PARAMETER_MISMATCH in wrong.finding_kinds()

    url = free_loopback_url()
    server = SecCL(chain_url=url, candidate_fraction=0.4, election_rule=name)
    config = {"seccl-key-seed": KEY_SEED, "seccl-chain-url": url, "seed": 0, "lr": 0.1}
    config.update(pins_of(server))
    config["seccl-election-rule"] = "borda"  # what every node agreed to
    grid = InProcessGrid(digits.app, NUM_NODES, run_config=config)
    with pytest.raises(NotEnoughNodesError) as info:
        server.start(grid, ArrayRecord(digits.initial_model().state_dict()), num_rounds=1)
    assert f"election rule {number} ({name}), but this node is configured with 0 (borda)" in str(
        info.value
    )

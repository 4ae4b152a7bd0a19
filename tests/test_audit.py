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

from seccl_flwr.apps import digits
from seccl_flwr.attacks import LyingServer
from seccl_flwr.audit import (
    AGGREGATION_MISMATCH,
    ANCHOR_MISMATCH,
    BAD_SIGNATURE,
    DIGEST_MISMATCH,
    ELECTION_MISMATCH,
    FAIL,
    FOREIGN_MESSAGE,
    MALFORMED_MESSAGE,
    MISSING_ANCHOR,
    MISSING_MESSAGE,
    NOTHING,
    OK,
    UNANCHORED_MESSAGE,
    UNCHECKED,
    audit_run,
    chain_anchors,
    format_report,
)
from seccl_flwr.chain.csc import CandidateSelection
from seccl_flwr.chain.errors import ContractRevertError, NoContractError
from seccl_flwr.chain.rpc_server import free_loopback_url
from seccl_flwr.cli import main
from seccl_flwr.errors import NotEnoughNodesError
from seccl_flwr.identity import simulation_key
from seccl_flwr.inprocess import InProcessGrid
from seccl_flwr.protocol.eip712 import Kind, ballot_typed_data, sign_typed
from seccl_flwr.protocol.encoding import metrics_to_arrays
from seccl_flwr.protocol.signed import SignedMessage
from seccl_flwr.run_setup import server_account
from seccl_flwr.store import DirectoryStore, digest_hex, encode_message
from seccl_flwr.strategy import SecCL
from tests.csc_helpers import open_csc
from tests.strategy_helpers import pins_of

KEY_SEED = 11
NUM_NODES = 4


def run_with_store(store_dir, strategy_cls=SecCL, num_rounds=2, raises=None, **kwargs):
    """Run SecCL in-process with a message store; return the strategy (even if it fails)."""
    url = free_loopback_url()
    strategy = strategy_cls(chain_url=url, candidate_fraction=0.4, store=store_dir, **kwargs)
    config = {"seccl-key-seed": KEY_SEED, "seccl-chain-url": url, "seed": 0, "lr": 0.1}
    grid = InProcessGrid(digits.app, NUM_NODES, run_config={**config, **pins_of(strategy)})
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
            verdict.election,
            verdict.global_model,
            verdict.evaluations,
        ) == (OK, OK, OK, OK, OK)
    # every anchored digest is stored, and nothing else is
    anchors = chain_anchors(strategy.csc)
    assert set(anchors.values()) == set(DirectoryStore(store_dir).digests())
    assert report.messages_checked == len(anchors) == 3 + 2 * 3 * NUM_NODES
    assert "audit passed" in format_report(report)


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

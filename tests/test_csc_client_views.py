"""Every view of the contract is reachable through the typed client and agrees with Python."""

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from eth_account import Account

from seccl_flwr.chain.connection import connect, embedded_web3, ensure_funded
from seccl_flwr.chain.csc import CandidateSelection
from seccl_flwr.chain.errors import ContractRevertError
from seccl_flwr.client_checks import pinned_run_config
from seccl_flwr.protocol.borda import round_seed
from seccl_flwr.protocol.eip712 import (
    Kind,
    ballot_typed_data,
    message_typed_data,
    run_id_from_label,
    typed_digest,
)
from seccl_flwr.protocol.params import RunParams, roster_digest
from seccl_flwr.protocol.signed import SignedMessage
from tests.csc_helpers import open_csc


def test_typed_views_match_the_python_protocol():
    w3 = embedded_web3()
    server = Account.from_key(b"\x07" * 32)
    ensure_funded(w3, server)
    members = [Account.from_key(bytes([i + 1]) * 32) for i in range(3)]
    run_id = run_id_from_label("views")
    csc, _ = open_csc(w3, server, run_id, members, 2)
    binding = csc.binding
    assert csc.run_id() == run_id and binding.run_id == run_id
    assert csc.is_participant(members[1].address) and not csc.is_participant(server.address)
    assert csc.participant_index(members[2].address) == 2
    with pytest.raises(ContractRevertError) as info:
        csc.participant_index(server.address)
    assert info.value.error_name == "UnknownParticipant"
    payload = b"\x11" * 32
    assert csc.hash_message(1, Kind.UPDATE, members[0].address, payload) == typed_digest(
        message_typed_data(binding, 1, Kind.UPDATE, members[0].address, payload)
    )
    assert len(csc.domain_separator()) == 32
    csc.anchor(0, Kind.GLOBAL_MODEL, [server.address], [b"\x01" * 32])
    csc.anchor(1, Kind.UPDATE, [m.address for m in members], [bytes([9, i]) * 16 for i in range(3)])
    peers, scores = [members[1].address, members[2].address], [10, 20]
    typed = ballot_typed_data(binding, 1, members[0].address, peers, scores)
    assert csc.hash_ballot(1, members[0].address, peers, scores) == typed_digest(typed)
    ballot = SignedMessage.sign(members[0], binding, 1, Kind.BALLOT, peers=peers, scores=scores)
    assert ballot.digest() == typed_digest(typed)
    csc.submit_ballots(1, [ballot])
    assert csc.ballot_count(1) == 1


def test_anchors_of_reads_one_round_and_kind_from_the_logs():
    w3 = embedded_web3()
    server = Account.from_key(b"\x08" * 32)
    ensure_funded(w3, server)
    members = [Account.from_key(bytes([i + 20]) * 32) for i in range(3)]
    csc, _ = open_csc(w3, server, run_id_from_label("anchors"), members, 1)
    csc.anchor(0, Kind.GLOBAL_MODEL, [server.address], [b"\x01" * 32])
    digests = {m.address: bytes([5, i]) * 16 for i, m in enumerate(members[:2])}
    csc.anchor(1, Kind.UPDATE, list(digests), list(digests.values()))
    assert csc.anchors_of(1, Kind.UPDATE) == digests
    assert csc.anchors_of(1, Kind.UPDATE) == {
        m.address: csc.anchor_of(1, Kind.UPDATE, m.address) for m in members[:2]
    }
    assert csc.anchors_of(1, Kind.BALLOT) == {}
    assert csc.anchors_of(2, Kind.UPDATE) == {}
    assert csc.anchors_of(0, Kind.GLOBAL_MODEL) == {server.address: b"\x01" * 32}


def as_lists(value):
    """Nested tuples and lists as lists (web3 and eth_abi differ only in that)."""
    return [as_lists(v) for v in value] if isinstance(value, tuple | list) else value


def totals_as_lists(totals: dict) -> list:
    """``{author: points}`` as the contract returns it: ``[authors, points]``."""
    return [list(totals), list(totals.values())]


@pytest.mark.parametrize("chain", ["anvil", "embedded"])
def test_bare_eth_call_views_equal_web3s_on_a_node_and_in_process(chain, request):
    """Every view, encoded and decoded by the CSC client itself, equals web3's call."""
    w3 = connect(request.getfixturevalue("anvil_url") if chain == "anvil" else "embedded")
    server = Account.from_key(b"\x09" * 32)
    ensure_funded(w3, server)
    members = [Account.from_key(bytes([i + 30]) * 32) for i in range(3)]
    csc, _ = open_csc(w3, server, run_id_from_label("http-views"), members, 1, per_tensor=True)
    binding = csc.binding
    csc.anchor(0, Kind.GLOBAL_MODEL, [server.address], [b"\x01" * 32])
    csc.anchor(1, Kind.UPDATE, [m.address for m in members], [bytes([3, i]) * 16 for i in range(3)])
    assert csc.anchors_of(1, Kind.UPDATE) == {
        m.address: bytes([3, i]) * 16 for i, m in enumerate(members)
    }
    assert csc.anchors_of(0, Kind.GLOBAL_MODEL) == {server.address: b"\x01" * 32}
    assert csc.anchors_of(1, Kind.EVALUATION) == {}
    peers, scores = [members[1].address, members[2].address], [10, 20]
    ballot = SignedMessage.sign(members[0], binding, 1, Kind.BALLOT, peers=peers, scores=scores)
    csc.submit_ballots(1, [ballot])
    csc.elect(1)
    assert csc.params() == RunParams(1, 1, 100_000, True)
    assert csc.roster_digest() == roster_digest([m.address for m in members])
    assert csc.round_seed(1) == round_seed([bytes([3, i]) * 16 for i in range(3)])
    assert csc.is_open()
    web3 = csc.contract.functions
    reads = [  # (typed method and arguments, web3's call of the same view)
        (csc.owner, (), web3.owner()),
        (csc.run_id, (), web3.runId()),
        (lambda: list(csc.params().as_tuple()), (), web3.params()),
        (csc.roster_digest, (), web3.rosterDigest()),
        (csc.is_open, (), web3.isOpen()),
        (csc.opening_block, (), web3.openingBlock()),
        (csc.round_seed, (1,), web3.roundSeed(1)),
        (csc.participants, (), web3.participants()),
        (csc.participant_index, (members[2].address,), web3.participantIndex(members[2].address)),
        (csc.is_participant, (server.address,), web3.isParticipant(server.address)),
        (csc.last_completed_round, (), web3.lastCompletedRound()),
        (csc.current_round, (), web3.currentRound()),
        (
            csc.anchor_of,
            (1, Kind.UPDATE, members[1].address),
            web3.anchorOf(1, int(Kind.UPDATE), members[1].address),
        ),
        (
            csc.anchor_of,
            (9, Kind.UPDATE, members[1].address),
            web3.anchorOf(9, int(Kind.UPDATE), members[1].address),
        ),
        (csc.update_authors, (1,), web3.updateAuthors(1)),
        (csc.is_elected, (1,), web3.isElected(1)),
        (csc.candidates_of, (1,), web3.candidatesOf(1)),
        (lambda r: totals_as_lists(csc.totals_of(r)), (1,), web3.totalsOf(1)),
        (csc.ballot_count, (1,), web3.ballotCount(1)),
        (csc.evaluators_of, (1,), web3.evaluatorsOf(1)),
        (csc.domain_separator, (), web3.domainSeparator()),
        (
            csc.hash_ballot,
            (1, members[0].address, peers, scores),
            web3.hashBallot(1, members[0].address, peers, scores),
        ),
    ]
    for typed, args, call in reads:
        expected = call.call()
        got = typed(*args)
        assert as_lists(got) == as_lists(expected), call.fn_name
    # views read in one batch equal the same views read one by one
    assert csc.ballot_and_candidates(1, members[0].address) == (
        csc.anchor_of(1, Kind.BALLOT, members[0].address),
        csc.candidates_of(1),
    )
    with pytest.raises(ContractRevertError) as info:
        csc.ballot_and_candidates(2, members[0].address)  # round 2 has no election yet
    assert info.value.error_name == "NotElected"
    with pytest.raises(ContractRevertError) as info:
        csc.participant_index(server.address)
    assert info.value.error_name == "UnknownParticipant"
    assert info.value.error_args == {"account": server.address}


def test_update_anchor_reads_start_after_the_previous_rounds_anchors(monkeypatch):
    """Clients' log queries for a round's update anchors start at the run's opening
    block in round 1 and at the block of the previous round's anchors later (never
    at genesis), and still find every anchor of the round."""
    from flwr.app import ArrayRecord

    from seccl_flwr.apps import digits
    from seccl_flwr.chain.jsonrpc import JsonRpcHttp
    from seccl_flwr.chain.rpc_server import free_loopback_url
    from seccl_flwr.inprocess import InProcessGrid
    from seccl_flwr.strategy import SecCL

    queries = []
    real_request = JsonRpcHttp.request

    def spy(self, method, params):
        answer = real_request(self, method, params)
        topics = params[0]["topics"] if method == "eth_getLogs" else []
        if len(topics) == 3 and int(topics[2], 16) == Kind.UPDATE:
            queries.append((int(topics[1], 16), int(params[0]["fromBlock"], 16), answer))
        return answer

    monkeypatch.setattr(JsonRpcHttp, "request", spy)
    url = free_loopback_url()
    run_config = {"seccl-key-seed": 11, "seccl-chain-url": url, "seed": 0, "lr": 0.1}
    run_config.update(pinned_run_config(0.5))
    grid = InProcessGrid(digits.app, 3, run_config=run_config)
    strategy = SecCL(chain="embedded", chain_url=url, candidate_fraction=0.5, run_label="floor")
    result = strategy.start(grid, ArrayRecord(digits.initial_model().state_dict()), num_rounds=3)
    assert all(record.rejections == [] for record in result.rounds)  # every peer verified
    by_round = {}
    for round_, from_block, answer in queries:
        assert len(answer["result"]) == 3  # all three updates of the round found
        by_round.setdefault(round_, set()).add(from_block)
    opening = strategy.csc.opening_block()
    assert opening > 0
    assert by_round[1] == {opening}
    last_block = {
        r: max(int(log["blockNumber"], 16) for q, _, a in queries if q == r for log in a["result"])
        for r in by_round
    }
    for r in (2, 3):
        assert by_round[r] == {last_block[r - 1]}


def _counting_proxy(url: str, posts: list) -> tuple[ThreadingHTTPServer, str]:
    """Forward every POST to ``url`` and append its JSON body to ``posts`` (the node's view)."""

    class Forward(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append(json.loads(body))
            forwarded = urllib.request.Request(
                url, data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(forwarded, timeout=10) as answer:  # noqa: S310 - loopback
                status, reply = answer.status, answer.read()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_attach_reads_what_never_changes_in_one_round_trip(anvil_url):
    w3 = connect(anvil_url)
    server = Account.from_key(b"\x0c" * 32)
    ensure_funded(w3, server)
    members = [Account.from_key(bytes([i + 40]) * 32) for i in range(2)]
    run_id = run_id_from_label("attach-batch")
    csc, infos = open_csc(w3, server, run_id, members, 1)
    posts = []
    proxy, proxy_url = _counting_proxy(anvil_url, posts)
    try:
        proxied = connect(proxy_url)
        posts.clear()  # connect's own check
        attached = CandidateSelection.attach(proxied, csc.address)
        assert attached.binding.run_id == run_id and attached.binding.chain_id == 31337
        assert attached.owner() == server.address
        assert attached.participants() == [m.address for m in members]
        assert attached.params() == RunParams(1, 1, 100_000, False)
        assert attached.opening_block() == infos[0].block_number  # the deployment's block
        assert attached.is_open()
        assert len(posts) == 1  # one POST: the batch
    finally:
        proxy.shutdown()

"""The typed client opens runs and sends batch transactions sized by their gas, every one
under the 2^24 per-transaction cap of EIP-7825, and reads logs from the opening block."""

import math

import pytest
from eth_account import Account
from eth_utils import keccak

from seccl_flwr.chain import gas
from seccl_flwr.chain.connection import connect, embedded_web3, ensure_funded
from seccl_flwr.chain.csc import CandidateSelection
from seccl_flwr.chain.errors import ContractRevertError
from seccl_flwr.chain.jsonrpc import EmbeddedJsonRpc
from seccl_flwr.chain.rpc_server import LoopbackRPCServer
from seccl_flwr.errors import ConfigurationError
from seccl_flwr.protocol.eip712 import Kind, join_hash, run_id_from_label, sign_digest
from seccl_flwr.protocol.params import RunParams, roster_digest
from seccl_flwr.protocol.signed import SignedMessage
from tests.csc_helpers import open_csc, roster_of

CAP = 2**24


def accounts(n: int, label: str) -> list:
    return [Account.from_key(keccak(text=f"{label}/{i}")) for i in range(n)]


@pytest.mark.slow
def test_a_large_run_is_opened_anchored_and_voted_in_gas_sized_batches():
    """n = 250: more participants than one ``register`` or UPDATE ``anchor`` may take,
    and more ballots than one ``submitBallots`` may take; every transaction is under
    the cap on eth-tester, and the batches are as many as the gas model asks for."""
    w3 = embedded_web3()
    server = Account.from_key(b"\x51" * 32)
    ensure_funded(w3, server)
    n, m = 250, 100
    people = accounts(n, "batches")
    run_id = run_id_from_label("batches")
    csc, opened = open_csc(w3, server, run_id, people, m, quorum=1)
    registrations = [tx for tx in opened if tx.function == "register"]
    assert len(registrations) == math.ceil(n / gas.register_batch_size()) == 2
    assert [tx.function for tx in opened] == ["constructor", "register", "register", "open"]
    assert csc.participants() == [p.address for p in people]
    assert csc.roster_digest() == roster_digest([p.address for p in people])

    csc.anchor(0, Kind.GLOBAL_MODEL, [server.address], [b"\x01" * 32])
    digests = [keccak(text=f"update/{i}") for i in range(n)]
    anchored = csc.anchor(1, Kind.UPDATE, [p.address for p in people], digests)
    assert len(anchored) == math.ceil(n / gas.anchor_batch_size(Kind.UPDATE)) == 2
    assert csc.update_authors(1) == [p.address for p in people]

    per_batch = gas.ballot_batch_size(n - 1, m)
    evaluators = people[: per_batch + 1]  # one ballot more than one batch takes
    ballots = []
    for evaluator in evaluators:
        peers = [p.address for p in people if p is not evaluator]
        scores = [(7 * i) % 1000 for i in range(len(peers))]
        ballots.append(
            SignedMessage.sign(evaluator, csc.binding, 1, Kind.BALLOT, peers=peers, scores=scores)
        )
    submitted = csc.submit_ballots(1, ballots)
    assert len(submitted) == 2
    assert csc.evaluators_of(1) == [e.address for e in evaluators]
    elected = csc.elect(1)
    assert len(csc.candidates_of(1)) == m

    for tx in [*opened, *anchored, *submitted, elected]:
        assert 0 < tx.gas_used < CAP, tx


def test_register_checks_its_lists_and_the_contract_names_a_bad_join_signature():
    w3 = embedded_web3()
    server = Account.from_key(b"\x52" * 32)
    ensure_funded(w3, server)
    run_id = run_id_from_label("bad-join")
    honest, impostor = accounts(2, "bad-join")
    csc, _ = CandidateSelection.deploy(w3, server, run_id, RunParams(1, 1, 100_000, False))
    assert not csc.is_open() and csc.participants() == []
    with pytest.raises(ConfigurationError, match="2 participants but 1 join signatures"):
        csc.register([honest.address, impostor.address], [b"\x00" * 65])
    # the impostor signs the honest address's Join with its own key
    forged = sign_digest(impostor.key, join_hash(run_id, w3.eth.chain_id, honest.address))
    with pytest.raises(ContractRevertError) as info:
        csc.register([honest.address], [forged])
    assert info.value.error_name == "InvalidJoinSignature"
    assert info.value.error_args["participant"] == honest.address
    assert info.value.error_args["recovered"] == impostor.address
    # a Join signed for another chain does not register either
    other_chain = roster_of(run_id, w3.eth.chain_id + 1, [honest])[honest.address]
    with pytest.raises(ContractRevertError, match="InvalidJoinSignature"):
        csc.register([honest.address], [other_chain])
    csc.register(*zip(*roster_of(run_id, w3.eth.chain_id, [honest]).items(), strict=True))
    csc.open()
    assert csc.is_open() and csc.participants() == [honest.address]


def test_elect_below_the_quorum_reverts_quorum_not_reached():
    w3 = embedded_web3()
    server = Account.from_key(b"\x53" * 32)
    ensure_funded(w3, server)
    people = accounts(3, "quorum")
    csc, _ = open_csc(w3, server, run_id_from_label("quorum"), people, 1, quorum=2)
    assert csc.params().quorum == 2
    csc.anchor(0, Kind.GLOBAL_MODEL, [server.address], [b"\x01" * 32])
    csc.anchor(1, Kind.UPDATE, [p.address for p in people], [bytes([i + 1]) * 32 for i in range(3)])
    peers = [p.address for p in people[1:]]
    ballot = SignedMessage.sign(people[0], csc.binding, 1, Kind.BALLOT, peers=peers, scores=[1, 2])
    csc.submit_ballots(1, [ballot])
    with pytest.raises(ContractRevertError) as info:
        csc.elect(1)
    assert info.value.error_name == "QuorumNotReached"
    assert info.value.error_args == {"round": 1, "ballots": 1, "quorum": 2}


def test_log_queries_start_at_the_opening_block(monkeypatch):
    """anchors_of (bare JSON-RPC) and events (web3) both ask for logs from the block
    the run was deployed in, which the contract records: found from its address alone."""
    with LoopbackRPCServer() as node:
        w3 = connect(node.url)
        server = Account.from_key(b"\x54" * 32)
        ensure_funded(w3, server)
        people = accounts(2, "logs")
        open_csc(w3, server, run_id_from_label("earlier"), people, 1)  # blocks before ours
        csc, opened = open_csc(w3, server, run_id_from_label("logs"), people, 1)
        assert csc.opening_block() == opened[0].block_number > 0
        csc.anchor(0, Kind.GLOBAL_MODEL, [server.address], [b"\x07" * 32])
        starts = []
        real_answer = EmbeddedJsonRpc.answer

        def answer(self, request):  # what the node is asked, by web3 or bare JSON-RPC
            if request.get("method") == "eth_getLogs":
                starts.append(int(request["params"][0]["fromBlock"], 16))
            return real_answer(self, request)

        monkeypatch.setattr(EmbeddedJsonRpc, "answer", answer)
        attached = CandidateSelection.attach(w3, csc.address)
        assert attached.anchors_of(0, Kind.GLOBAL_MODEL) == {server.address: b"\x07" * 32}
        assert len(attached.events("Anchored")) == 1
        assert len(attached.events("Registered")) == 2
        assert starts == [csc.opening_block()] * 3

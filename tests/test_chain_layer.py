"""The chain layer: connections, the loopback JSON-RPC server and the typed CSC client."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

import numpy as np
import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from seccl_flwr.chain.connection import connect, ensure_funded
from seccl_flwr.chain.csc import ANCHORED_TOPIC, CandidateSelection, TxInfo
from seccl_flwr.chain.errors import (
    ChainUnreachableError,
    ContractCodeMismatchError,
    ContractRevertError,
    InsufficientFundsError,
    NoContractError,
    WrongChainError,
)
from seccl_flwr.chain.jsonrpc import json_rpc_of
from seccl_flwr.chain.rpc_server import LoopbackRPCServer
from seccl_flwr.protocol import borda
from seccl_flwr.protocol.eip712 import (
    Kind,
    SignatureError,
    ballot_typed_data,
    typed_digest,
    verify_typed,
)
from seccl_flwr.protocol.encoding import payload_hash
from seccl_flwr.protocol.params import RunParams
from seccl_flwr.protocol.signed import SignedMessage, message_digest
from tests.csc_helpers import open_csc, roster_of

RUN_ID = b"\x42" * 32
# Init code that deploys the 10-byte runtime 0x602a60005260206000f3 ("return 42").
TINY_INIT = bytes.fromhex("600a600c600039600a6000f3" + "602a60005260206000f3")


def fresh_accounts(n: int) -> list:
    return [Account.create() for _ in range(n)]


@pytest.fixture(scope="module")
def server():
    with LoopbackRPCServer() as srv:
        yield srv


def rpc(url: str, body, raw: bool = False):
    data = body if raw else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def call(url: str, method: str, *params, id_=1):
    return rpc(url, {"jsonrpc": "2.0", "id": id_, "method": method, "params": list(params)})


def is_hex(value) -> bool:
    return isinstance(value, str) and value.startswith("0x")


# ------------------------------------------------------------------- connections
def test_connect_embedded_gives_a_fresh_funded_chain():
    w3 = connect("embedded")
    assert w3.is_connected()
    assert w3.eth.chain_id > 0
    assert w3.eth.get_balance(w3.eth.accounts[0]) > 0
    assert connect("embedded", expected_chain_id=w3.eth.chain_id).eth.block_number == 0


@pytest.mark.parametrize("endpoint", ["ftp://x", "127.0.0.1:8545", "", "ws://localhost:8546"])
def test_connect_rejects_unknown_endpoints(endpoint):
    with pytest.raises(ValueError, match="embedded"):
        connect(endpoint)


def test_connect_to_a_closed_port_fails_fast():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ChainUnreachableError, match=str(port)):
        connect(f"http://127.0.0.1:{port}", timeout=1.0)
    assert time.monotonic() - start < 5


def test_wrong_chain_names_both_ids(server):
    actual = connect(server.url).eth.chain_id
    with pytest.raises(WrongChainError) as info:
        connect(server.url, expected_chain_id=12345)
    assert str(actual) in str(info.value) and "12345" in str(info.value)
    with pytest.raises(WrongChainError, match="12345"):
        connect("embedded", expected_chain_id=12345)
    assert connect(server.url, expected_chain_id=actual).eth.chain_id == actual


# --------------------------------------------------------------- JSON-RPC server
def test_server_answers_standard_json_rpc(server):
    url = server.url
    chain_id = call(url, "eth_chainId")
    assert chain_id["jsonrpc"] == "2.0" and chain_id["id"] == 1
    assert is_hex(chain_id["result"]) and int(chain_id["result"], 16) == server.w3.eth.chain_id
    assert is_hex(call(url, "eth_blockNumber")["result"])
    accounts = call(url, "eth_accounts")["result"]
    assert accounts and all(is_hex(a) and len(a) == 42 for a in accounts)
    balance = call(url, "eth_getBalance", accounts[0], "latest")["result"]
    assert is_hex(balance) and int(balance, 16) > 0
    block = call(url, "eth_getBlockByNumber", "latest", False)["result"]
    for key in ("number", "hash", "parentHash", "gasLimit", "timestamp", "logsBloom"):
        assert is_hex(block[key]), key
    assert len(block["hash"]) == 66 and len(block["logsBloom"]) == 2 + 512
    assert isinstance(block["transactions"], list)


def test_server_answers_batches_in_order(server):
    answer = rpc(
        server.url,
        [
            {"jsonrpc": "2.0", "id": "a", "method": "eth_chainId", "params": []},
            {"jsonrpc": "2.0", "id": 7, "method": "eth_blockNumber", "params": []},
            {"jsonrpc": "2.0", "id": 8, "method": "eth_nope", "params": []},
            5,
        ],
    )
    assert [r["id"] for r in answer] == ["a", 7, 8, None]
    assert is_hex(answer[0]["result"]) and is_hex(answer[1]["result"])
    assert isinstance(answer[2]["error"]["code"], int)
    assert answer[3]["error"]["code"] == -32600


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"", b"[1,"])
def test_malformed_json_is_a_parse_error(server, body):
    answer = rpc(server.url, body, raw=True)
    assert answer["error"]["code"] == -32700 and answer["id"] is None


def test_invalid_requests_get_numeric_error_codes(server):
    assert rpc(server.url, [])["error"]["code"] == -32600
    for body in (b"42", b'"text"', b"null"):  # valid JSON, but no request object
        assert isinstance(rpc(server.url, body, raw=True)["error"]["code"], int)
    assert rpc(server.url, {"jsonrpc": "2.0", "id": 3, "params": []})["error"]["code"] == -32600
    unknown = call(server.url, "eth_doesNotExist")
    assert unknown["id"] == 1 and unknown["error"]["code"] == -32601


def test_revert_over_http_is_a_code_3_error_with_data(server):
    w3 = connect(server.url)
    owner = fresh_accounts(1)[0]
    ensure_funded(w3, owner)
    csc, _ = open_csc(w3, owner, RUN_ID, fresh_accounts(2), 1)
    data = csc.contract.encode_abi("candidatesOf", [1])
    answer = call(server.url, "eth_call", {"to": csc.address, "data": data}, "latest")
    assert answer["error"]["code"] == 3
    assert answer["error"]["data"].startswith("0x") and len(answer["error"]["data"]) == 2 + 8 + 64


def _revert_via(w3: Web3, owner, gas_limit: int | None = None) -> dict[str, tuple[str, dict]]:
    accounts = fresh_accounts(3)
    participants = [a.address for a in accounts]
    seen: dict[str, tuple[str, dict]] = {}
    twice, _ = CandidateSelection.deploy(
        w3, owner, RUN_ID, RunParams(1, 1, 100_000, False), gas_limit=gas_limit
    )
    signature = roster_of(RUN_ID, w3.eth.chain_id, accounts[:1])[participants[0]]
    with pytest.raises(ContractRevertError) as info:
        twice.register([participants[0], participants[0]], [signature, signature])
    seen["deploy"] = (info.value.error_name, info.value.error_args)
    csc, _ = open_csc(w3, owner, RUN_ID, accounts, 2, gas_limit=gas_limit)
    with pytest.raises(ContractRevertError) as info:
        csc.elect(1)
    seen["elect"] = (info.value.error_name, info.value.error_args)
    with pytest.raises(ContractRevertError) as info:
        csc.elect(2)
    seen["wrong-round"] = (info.value.error_name, info.value.error_args)
    with pytest.raises(ContractRevertError) as info:
        csc.candidates_of(1)
    seen["view"] = (info.value.error_name, info.value.error_args)
    seen["duplicate"] = (seen["deploy"][1] == {"participant": participants[0]}, {})
    return seen


def test_web3_over_http_deploys_calls_and_sees_named_reverts_like_in_process(server):
    owner = fresh_accounts(1)[0]
    results = []
    http, embedded_w3 = connect(server.url), connect("embedded")
    assert isinstance(http.provider, HTTPProvider)
    assert not isinstance(embedded_w3.provider, HTTPProvider)
    for w3 in (http, embedded_w3):
        ensure_funded(w3, owner)
        results.append(_revert_via(w3, owner))
    over_http, in_process = results
    for seen in results:
        assert seen["deploy"][0] == "DuplicateParticipant"
        assert seen["duplicate"][0], seen["deploy"]  # names the (checksummed) duplicate
    for key in ("elect", "wrong-round", "view"):
        assert over_http[key] == in_process[key], key
    assert over_http["elect"] == ("NoUpdates", {"round": 1})
    assert over_http["wrong-round"] == ("WrongRound", {"round": 2, "expected": 1})
    assert over_http["view"] == ("NotElected", {"round": 1})


@pytest.mark.parametrize("gas_limit", [None, 8_000_000], ids=["estimated", "fixed"])
def test_transactions_on_anvil_name_reverts_and_use_the_gas_limit_asked_for(anvil_url, gas_limit):
    """On a real node, both gas modes (eth_estimateGas, or a fixed limit after an
    eth_call preflight) name every revert as in-process, and nothing reverted is sent."""
    w3 = connect(anvil_url)
    owner = fresh_accounts(1)[0]
    ensure_funded(w3, owner)
    nonce = w3.eth.get_transaction_count(owner.address)
    seen = _revert_via(w3, owner, gas_limit)
    assert seen["deploy"][0] == "DuplicateParticipant" and seen["duplicate"][0]
    assert seen["elect"] == ("NoUpdates", {"round": 1})
    assert seen["wrong-round"] == ("WrongRound", {"round": 2, "expected": 1})
    # only the good transactions were sent (two deployments, one registration, one
    # opening): the reverting ones stopped at the preflight
    assert w3.eth.get_transaction_count(owner.address) == nonce + 4
    csc, (info, *_) = open_csc(w3, owner, RUN_ID, fresh_accounts(2), 1, gas_limit=gas_limit)
    tx = w3.eth.get_transaction(info.tx_hash)
    if gas_limit is None:
        assert info.gas_used <= tx["gas"] < 2 * info.gas_used  # an estimate, not a bound
    else:
        assert tx["gas"] == gas_limit
    assert csc.gas_limit == gas_limit


@pytest.mark.parametrize("gas_limit", [0, -1])
def test_a_gas_limit_that_is_not_positive_is_rejected(gas_limit):
    with pytest.raises(ValueError, match="gas_limit must be positive"):
        CandidateSelection(connect("embedded"), "0x" + "11" * 20, gas_limit=gas_limit)


_READER = """
import json, sys
from web3 import Web3
w3 = Web3(Web3.HTTPProvider(sys.argv[1], request_kwargs={"timeout": 10}))
abi = json.loads(sys.argv[3])
contract = w3.eth.contract(address=sys.argv[2], abi=abi)
participants = contract.functions.participants().call()
print(json.dumps({"chainId": w3.eth.chain_id, "participants": participants}))
"""


def test_server_is_reachable_from_another_process(server):
    from seccl_flwr.chain.artifact import load_artifact

    w3 = connect(server.url)
    owner = fresh_accounts(1)[0]
    ensure_funded(w3, owner)
    accounts = fresh_accounts(3)
    participants = [a.address for a in accounts]
    csc, _ = open_csc(w3, owner, RUN_ID, accounts, 2)
    abi = json.dumps(load_artifact()["abi"])
    out = subprocess.run(
        [sys.executable, "-c", _READER, server.url, csc.address, abi],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "1"},
    )
    seen = json.loads(out.stdout)
    assert seen == {"chainId": w3.eth.chain_id, "participants": participants}


# ------------------------------------------------------------------- attach/funds
@pytest.fixture(scope="module")
def embedded():
    w3 = connect("embedded")
    owner = Account.create()
    ensure_funded(w3, owner)
    return w3, owner


def test_attach_checks_the_code(embedded):
    w3, owner = embedded
    with pytest.raises(NoContractError):
        CandidateSelection.attach(w3, owner.address)
    with pytest.raises(NoContractError):
        CandidateSelection.attach(w3, "0x" + "00" * 19 + "07")

    tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "data": TINY_INIT})
    tiny = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
    assert bytes(w3.eth.get_code(tiny)) == TINY_INIT[12:]
    with pytest.raises(ContractCodeMismatchError, match="10 bytes"):
        CandidateSelection.attach(w3, tiny)

    csc, _ = open_csc(w3, owner, RUN_ID, fresh_accounts(2), 1)
    attached = CandidateSelection.attach(w3, csc.address.lower())
    assert attached.address == csc.address
    assert attached.participants() == csc.participants()
    with pytest.raises(PermissionError):
        attached.elect(1)  # no sender given


def test_ensure_funded_funds_a_fresh_account_once(embedded):
    w3, _ = embedded
    account = Account.create()
    assert w3.eth.get_balance(account.address) == 0
    ensure_funded(w3, account, amount_wei=10**18)
    assert w3.eth.get_balance(account.address) == 10**18
    block = w3.eth.block_number
    ensure_funded(w3, account, amount_wei=10**18)  # enough already: no transaction
    assert w3.eth.block_number == block


def test_ensure_funded_without_unlocked_accounts_raises(embedded, monkeypatch):
    w3, _ = embedded
    monkeypatch.setattr(type(w3.eth), "accounts", property(lambda self: []))
    account = Account.create()
    with pytest.raises(InsufficientFundsError, match=account.address):
        ensure_funded(w3, account)


def test_ensure_funded_falls_back_to_an_unlocked_account_that_can_pay():
    """A long-lived dev node's first account runs dry; the next one pays."""
    w3 = connect("embedded")
    first, second = w3.eth.accounts[:2]
    burn = Account.create().address
    w3.eth.send_transaction({"from": first, "to": burn, "value": w3.eth.get_balance(first) // 2})
    amount = w3.eth.get_balance(first)  # more than the first one now holds
    account = Account.create()
    before = w3.eth.get_balance(second)
    ensure_funded(w3, account, amount_wei=amount)
    assert w3.eth.get_balance(account.address) == amount
    assert w3.eth.get_balance(second) < before - amount + 1
    with pytest.raises(InsufficientFundsError, match="none of the node's"):
        ensure_funded(w3, Account.create(), amount_wei=10 * before)


# ------------------------------------------------------------------- full flow
def test_full_round_through_the_typed_client(embedded):
    w3, owner = embedded
    people = fresh_accounts(4)
    addresses = [p.address for p in people]
    index = {a: i for i, a in enumerate(addresses)}
    csc, (deployed, *_) = open_csc(w3, owner, RUN_ID, people, 2)
    assert isinstance(deployed, TxInfo) and deployed.gas_used > 0
    assert csc.participants() == addresses
    assert csc.params().num_candidates == 2 and csc.owner() == owner.address
    binding = csc.binding
    assert binding.run_id == RUN_ID and binding.chain_id == w3.eth.chain_id
    assert binding.contract == csc.address

    rng = np.random.default_rng(0)
    global_model = {"w": rng.normal(size=(3, 2)).astype(np.float32)}
    g_digest = message_digest(binding, 0, Kind.GLOBAL_MODEL, owner.address, global_model)
    (info,) = csc.anchor(0, Kind.GLOBAL_MODEL, [owner.address], [g_digest])
    assert info.gas_used > 0 and info.function == "anchor" and info.tx_hash.startswith("0x")

    authors = people[:3]  # participant 3 only evaluates
    digests = []
    for author in authors:
        update = {"indices": np.array([0, 4], np.uint32), "values": rng.normal(size=2)}
        update["values"] = update["values"].astype(np.float32)
        digest = SignedMessage.sign(author, binding, 1, Kind.UPDATE, update).digest()
        # the contract computes the same digest
        onchain = csc.contract.functions.hashMessage(
            1, int(Kind.UPDATE), author.address, payload_hash(update)
        ).call()
        assert bytes(onchain) == digest
        digests.append(digest)
    csc.anchor(1, Kind.UPDATE, [a.address for a in authors], digests)
    assert csc.round_seed(1) == borda.round_seed(digests)
    assert csc.update_authors(1) == [a.address for a in authors]
    assert csc.anchor_of(1, Kind.UPDATE, authors[1].address) == digests[1]
    assert csc.anchor_of(1, Kind.UPDATE, people[3].address) == bytes(32)

    scores = {
        0: {1: 800_000, 2: 800_000},
        1: {0: 600_000, 2: 900_000},
        2: {0: 700_000, 1: 100_000},
        3: {0: 500_000, 1: 500_000, 2: 400_000},
    }

    def signed(evaluator: int, votes: dict[int, int]) -> SignedMessage:
        peers = [addresses[p] for p in votes]
        return SignedMessage.sign(
            people[evaluator], binding, 1, Kind.BALLOT, peers=peers, scores=list(votes.values())
        )

    ballots = [signed(e, v) for e, v in scores.items()]

    # A malleated (high-s) copy of a valid ballot: rejected off-chain and on-chain alike.
    good = ballots[0]
    s = int.from_bytes(good.signature[32:64], "big")
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    malleated_sig = (
        good.signature[:32] + (n - s).to_bytes(32, "big") + bytes([55 - good.signature[64]])
    )
    malleated = replace(good, signature=malleated_sig)
    typed0 = ballot_typed_data(binding, 1, good.evaluator, good.peers, good.scores)
    with pytest.raises(SignatureError):
        verify_typed(typed0, malleated_sig, good.evaluator)
    with pytest.raises(ContractRevertError) as info:
        csc.submit_ballots(1, [malleated])
    assert info.value.error_name == "InvalidSignature"
    assert csc.evaluators_of(1) == []

    infos = csc.submit_ballots(1, ballots)
    assert len(infos) == 1 and all(i.gas_used > 0 for i in infos)  # 4 small ballots: 1 batch
    assert csc.evaluators_of(1) == addresses
    assert csc.anchor_of(1, Kind.BALLOT, addresses[3]) == typed_digest(
        ballot_typed_data(binding, 1, addresses[3], ballots[3].peers, ballots[3].scores)
    )

    with pytest.raises(ContractRevertError) as info:
        csc.submit_ballots(1, [ballots[2]])
    error = info.value
    assert error.error_name == "DuplicateBallot"
    assert error.error_args == {"round": 1, "evaluator": addresses[2]}
    assert error.function == "submitBallots"
    assert "DuplicateBallot" in str(error)

    assert not csc.is_elected(1)
    elected = csc.elect(1)
    assert elected.gas_used > 0 and elected.function == "elect"
    assert csc.is_elected(1)

    updates = dict(zip([a.address for a in authors], digests, strict=True))
    table = {addresses[e]: {addresses[p]: s for p, s in v.items()} for e, v in scores.items()}
    candidates, totals = borda.elect(updates, table, 2, quorum=1)
    expected_candidates = [index[a] for a in candidates]
    expected_totals = {index[a]: t for a, t in totals.items()}
    assert [index[a] for a in csc.candidates_of(1)] == expected_candidates
    assert {index[a]: t for a, t in csc.totals_of(1).items()} == expected_totals
    # by hand (M = 2): ballot 1 -> 2:2, 0:1; ballot 2 -> 0:2, 1:1; ballot 0 ties peers
    # 1 and 2, ballot 3 ties 0 and 1 at the top: the round's seed order decides
    seed = borda.round_seed(digests)

    def before(p: int, q: int) -> bool:
        return borda.tie_key(seed, addresses[p]) < borda.tie_key(seed, addresses[q])

    one_first, zero_first = before(1, 2), before(0, 1)
    assert expected_totals == {
        0: 1 + 2 + (2 if zero_first else 1),
        1: (2 if one_first else 1) + 1 + (1 if zero_first else 2),
        2: (1 if one_first else 2) + 2,
    }
    assert set(expected_candidates) <= {0, 1, 2} and len(expected_candidates) == 2

    events = csc.events("Elected")
    assert len(events) == 1 and list(events[0]["args"]["candidates"]) == csc.candidates_of(1)
    with pytest.raises(ContractRevertError, match="AlreadyElected"):
        csc.elect(1)

    new_global = {"w": global_model["w"] + 1}
    csc.anchor(
        1,
        Kind.GLOBAL_MODEL,
        [owner.address],
        [message_digest(binding, 1, Kind.GLOBAL_MODEL, owner.address, new_global)],
    )
    assert csc.last_completed_round() == 1 and csc.current_round() == 2


def test_get_logs_takes_an_address_string_or_list_over_http(server):
    owner = fresh_accounts(1)[0]
    w3 = connect(server.url)
    ensure_funded(w3, owner)
    csc, _ = open_csc(w3, owner, RUN_ID, fresh_accounts(2), 1)
    csc.anchor(0, Kind.GLOBAL_MODEL, [owner.address], [b"\x07" * 32])
    for address in (csc.address, [csc.address]):
        query = {"address": address, "fromBlock": "0x0", "topics": [ANCHORED_TOPIC]}
        answer = rpc(
            server.url, {"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [query]}
        )
        assert [log["data"] for log in answer["result"]] == ["0x" + "07" * 32]
    assert csc.anchors_of(0, Kind.GLOBAL_MODEL) == {owner.address: b"\x07" * 32}


@pytest.mark.parametrize("base_fee", [True, False], ids=["eip1559", "legacy"])
def test_transaction_fees_follow_the_chain(base_fee, monkeypatch):
    """EIP-1559 fields where blocks carry a base fee (tip + 2 x base at most), the
    node's gas price where they do not."""
    w3 = connect("embedded")
    owner = fresh_accounts(1)[0]
    ensure_funded(w3, owner)
    deployed, _ = open_csc(w3, owner, RUN_ID, fresh_accounts(2), 1)
    transport = json_rpc_of(w3)
    real_request = transport.request

    def without_base_fee(method, params):
        answer = real_request(method, params)
        if method == "eth_getBlockByNumber" and not base_fee:
            answer = {**answer, "result": {**answer["result"], "baseFeePerGas": None}}
        return answer

    monkeypatch.setattr(transport, "request", without_base_fee)
    csc = CandidateSelection(w3, deployed.address, owner, transport=transport)
    (info,) = csc.anchor(0, Kind.GLOBAL_MODEL, [owner.address], [b"\x03" * 32])
    tx = w3.eth.get_transaction(info.tx_hash)
    tip = int(real_request("eth_maxPriorityFeePerGas", [])["result"], 16)
    if base_fee:
        block = w3.eth.get_block(info.block_number - 1)
        assert tx["type"] == 2 and tx["maxPriorityFeePerGas"] == tip
        assert tx["maxFeePerGas"] == tip + 2 * block["baseFeePerGas"]
    else:
        assert tx["type"] == 0
        assert tx["gasPrice"] == int(real_request("eth_gasPrice", [])["result"], 16)
    assert csc.anchor_of(0, Kind.GLOBAL_MODEL, owner.address) == b"\x03" * 32


def test_the_loopback_server_keeps_connections_alive_until_it_stops():
    from seccl_flwr.chain.jsonrpc import JsonRpcHttp

    server = LoopbackRPCServer().start()
    rpc = JsonRpcHttp(server.url, timeout=2)
    for _ in range(3):
        assert rpc.request("eth_chainId", [])["result"].startswith("0x")
    assert len(server._connections) == 1  # one kept-alive connection served all three
    server.stop()
    with pytest.raises(ChainUnreachableError):
        rpc.request("eth_chainId", [])
    rpc.close()

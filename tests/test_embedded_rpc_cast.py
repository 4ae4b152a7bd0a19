"""The embedded chain's loopback endpoint, driven by an independent client: foundry's cast.

A SecCL-style chain (the packaged contract deployed, a round's global model anchored,
which emits an ``Anchored`` log) is served on loopback as ``SecCL`` serves it; cast
reads it as any user would, and every answer must equal what the chain layer reads
in process. Without cast (``npm ci --prefix contracts``) the cast tests skip locally
and fail in CI; the raw-request tests below them need no cast.
"""

import json
import subprocess
import urllib.request

import pytest
from eth_account import Account

from seccl_flwr.chain.anvil import foundry_command
from seccl_flwr.chain.connection import chain_id_of, ensure_funded
from seccl_flwr.chain.rpc_server import LoopbackRPCServer
from seccl_flwr.chain.tester_dialect import CALL_OBJECT_METHODS, RequestError, request_for_tester
from seccl_flwr.protocol.eip712 import Kind

from .conftest import skip_or_fail
from .csc_helpers import open_csc

OWNER = Account.from_key(b"\x0b" * 32)
PEER = Account.from_key(b"\x0c" * 32)
DIGEST = b"\x07" * 32
OWNER_SELECTOR = "0x8da5cb5b"  # owner()


@pytest.fixture(scope="module")
def chain():
    """A served embedded chain with the contract deployed and one anchor logged."""
    with LoopbackRPCServer() as server:
        w3 = server.w3
        ensure_funded(w3, OWNER)
        csc, (deployed, *_) = open_csc(w3, OWNER, b"\x01" * 32, [OWNER, PEER], 1)
        (anchored,) = csc.anchor(0, Kind.GLOBAL_MODEL, [OWNER.address], [DIGEST])
        yield server, csc, deployed, anchored


@pytest.fixture(scope="module")
def cast(chain):
    """Run ``cast <args> --rpc-url <loopback>``; return its stdout (stripped)."""
    command = foundry_command("cast")
    if command is None:
        skip_or_fail("cast not found; run `npm ci --prefix contracts`")
    url = chain[0].url

    def run(*args: str) -> str:
        done = subprocess.run(
            [*command, *args, "--rpc-url", url], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"cast {' '.join(args)} failed: {done.stderr.strip()}"
        return done.stdout.strip()

    return run


def test_cast_reads_chain_id_block_number_and_code(chain, cast):
    server, csc, _, _ = chain
    w3 = server.w3
    assert int(cast("chain-id")) == chain_id_of(w3)
    assert int(cast("block-number")) == w3.eth.block_number
    assert bytes.fromhex(cast("code", csc.address)[2:]) == bytes(w3.eth.get_code(csc.address))


def test_cast_calls_views_with_their_signatures(chain, cast):
    """cast sends ``input`` (and ``data``) and ``chainId``, from 0x0 with no fee: the
    call is free, as on a node, and decodes to what the chain layer reads."""
    _, csc, deployed, anchored = chain
    assert cast("call", csc.address, "owner()(address)") == csc.owner()
    assert int(cast("call", csc.address, "openingBlock()(uint256)")) == csc.opening_block()
    anchor = cast(
        "call", csc.address, "anchorOf(uint32,uint8,address)(bytes32)",
        "0", str(int(Kind.GLOBAL_MODEL)), OWNER.address,
    )  # fmt: skip
    assert bytes.fromhex(anchor[2:]) == csc.anchor_of(0, Kind.GLOBAL_MODEL, OWNER.address)
    # at a past block, by number and by hash (EIP-1898): before the anchor, none
    before = str(deployed.block_number)
    block_hash = cast("block", before, "--field", "hash")
    for block in (before, block_hash):
        empty = cast(
            "call", csc.address, "anchorOf(uint32,uint8,address)(bytes32)",
            "0", str(int(Kind.GLOBAL_MODEL)), OWNER.address, "--block", block,
        )  # fmt: skip
        assert bytes.fromhex(empty[2:]) == bytes(32)
    for tag in ("pending", "safe", "finalized"):
        assert cast("call", csc.address, "owner()(address)", "--block", tag) == csc.owner()
    assert int(cast("estimate", csc.address, "owner()")) > 21_000


def test_cast_logs_are_the_chain_layers_events(chain, cast):
    server, csc, deployed, anchored = chain
    logs = json.loads(cast("logs", "--address", csc.address, "--json"))  # from earliest
    expected = server.w3.eth.get_logs({"address": csc.address, "fromBlock": 0})
    assert [(entry["transactionHash"], entry["topics"]) for entry in logs] == [
        (e["transactionHash"].to_0x_hex(), [t.to_0x_hex() for t in e["topics"]]) for e in expected
    ]
    assert all(entry["removed"] is False for entry in logs)
    signature = "Anchored(uint32,uint8,address,bytes32)"
    (event,) = csc.events("Anchored")
    (log,) = json.loads(cast("logs", "--address", csc.address, signature, "--json"))
    assert log["transactionHash"] == anchored.tx_hash == event["transactionHash"].to_0x_hex()
    assert int(log["blockNumber"], 16) == anchored.block_number
    assert bytes.fromhex(log["data"][2:]) == DIGEST == event["args"]["digest"]
    assert log["topics"][3][-40:] == OWNER.address[2:].lower()
    ranged = cast(
        "logs", "--address", csc.address, "--from-block", str(anchored.block_number),
        "--to-block", "latest", "--json",
    )  # fmt: skip
    assert json.loads(ranged) == [log]


def test_cast_receipt_matches_the_chain_layers(chain, cast):
    server, _, _, anchored = chain
    w3 = server.w3
    receipt = json.loads(cast("receipt", anchored.tx_hash, "--json"))
    expected = w3.eth.get_transaction_receipt(anchored.tx_hash)
    assert int(receipt["status"], 16) == expected["status"] == 1
    assert int(receipt["blockNumber"], 16) == expected["blockNumber"] == anchored.block_number
    assert int(receipt["gasUsed"], 16) == expected["gasUsed"] == anchored.gas_used
    assert receipt["blockHash"] == expected["blockHash"].to_0x_hex()
    assert [entry["data"] for entry in receipt["logs"]] == ["0x" + DIGEST.hex()]
    # the only transaction of its block: the block's bloom is the receipt's (compared
    # as numbers: web3 in process drops the bloom's leading zero bytes)
    block_bloom = bytes(w3.eth.get_block(anchored.block_number)["logsBloom"])
    assert len(receipt["logsBloom"]) == 2 + 2 * 256
    assert int(receipt["logsBloom"], 16) == int.from_bytes(block_bloom, "big") != 0
    assert "state_root" not in receipt


def test_cast_blocks_match_the_chain_layers(chain, cast):
    server, csc, deployed, anchored = chain
    w3 = server.w3
    latest = json.loads(cast("block", "latest", "--json"))
    head = w3.eth.get_block("latest")
    assert latest["hash"] == head["hash"].to_0x_hex()
    assert int(latest["number"], 16) == head["number"]
    by_number = json.loads(cast("block", str(deployed.block_number), "--json"))
    block = w3.eth.get_block(deployed.block_number)
    assert by_number["hash"] == block["hash"].to_0x_hex()
    assert by_number["parentHash"] == block["parentHash"].to_0x_hex()
    assert by_number["transactions"] == [deployed.tx_hash]
    full = json.loads(cast("block", str(anchored.block_number), "--full", "--json"))
    (transaction,) = full["transactions"]
    expected = w3.eth.get_transaction(anchored.tx_hash)
    assert transaction["hash"] == anchored.tx_hash
    assert transaction["input"] == expected["input"].to_0x_hex()
    assert transaction["from"].lower() == OWNER.address.lower()
    assert transaction["to"].lower() == csc.address.lower()
    assert int(transaction["blockNumber"], 16) == anchored.block_number
    assert "block_hash" not in transaction and "data" not in transaction


# ----------------------------------------------------- raw requests (no cast needed)
def _rpc(url: str, method: str, *params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_input_and_data_differing_is_an_invalid_params_error_as_in_geth(chain):
    server, csc, _, _ = chain
    call = {"to": csc.address, "input": OWNER_SELECTOR}
    owner_word = "0x" + bytes(12).hex() + OWNER.address[2:].lower()
    for method in ("eth_call", "eth_estimateGas"):
        answer = _rpc(server.url, method, {**call, "data": "0x12345678"}, "latest")
        assert answer["error"]["code"] == -32602
        assert '"data" and "input"' in answer["error"]["message"]
    same = _rpc(server.url, "eth_call", {**call, "data": "0x8DA5CB5B"}, "latest")  # same bytes
    assert same["result"] == owner_word
    assert _rpc(server.url, "eth_call", call)["result"] == owner_word  # no block: latest


def test_full_call_objects_and_block_objects_are_taken(chain):
    """The fields ethers and viem send in a call object, and EIP-1898 block objects."""
    server, csc, _, anchored = chain
    w3 = server.w3
    call = {
        "from": OWNER.address,
        "to": csc.address,
        "input": OWNER_SELECTOR,
        "type": "0x2",
        "chainId": hex(chain_id_of(w3)),
        "accessList": [],
        "maxFeePerGas": hex(2 * 10**9),
    }
    block_hash = w3.eth.get_block(anchored.block_number)["hash"].to_0x_hex()
    for block in ({"blockHash": block_hash}, {"blockNumber": hex(anchored.block_number)}):
        answer = _rpc(server.url, "eth_call", call, block)
        assert answer["result"][-40:] == OWNER.address[2:].lower()
    unknown = _rpc(server.url, "eth_call", call, {"blockHash": "0x" + "11" * 32})
    assert "unknown block hash" in unknown["error"]["message"]


def test_logs_by_block_hash_and_its_conflict_with_a_range(chain):
    server, csc, _, anchored = chain
    block_hash = server.w3.eth.get_block(anchored.block_number)["hash"].to_0x_hex()
    (log,) = _rpc(server.url, "eth_getLogs", {"blockHash": block_hash})["result"]
    assert log["transactionHash"] == anchored.tx_hash
    both = _rpc(server.url, "eth_getLogs", {"blockHash": block_hash, "fromBlock": "0x0"})
    assert both["error"]["code"] == -32602
    assert _rpc(server.url, "net_version")["result"] == str(chain_id_of(server.w3))


@pytest.mark.parametrize("method", sorted(CALL_OBJECT_METHODS))
def test_every_method_that_takes_a_call_object_takes_input(method):
    (call, *_) = request_for_tester(method, [{"to": PEER.address, "input": "0x01"}], tester=None)
    assert call == {"to": PEER.address, "data": "0x01"}
    with pytest.raises(RequestError, match='"data" and "input"'):
        request_for_tester(method, [{"input": "0x01", "data": "0x02"}], tester=None)

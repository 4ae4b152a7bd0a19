"""The main CSC flow on a real node (anvil from npm) over JSON-RPC."""

import pytest
from eth_utils import keccak
from web3 import HTTPProvider, Web3

from seccl_flwr.protocol import borda
from seccl_flwr.protocol.eip712 import Kind
from tests.conftest_contract import (
    ARTIFACT,
    binding_of,
    deploy,
    digest,
    make_keys,
    reverts,
    send,
    signed_ballot,
    table_of,
)

pytestmark = pytest.mark.anvil


def test_main_flow_on_anvil(anvil_url):
    w3 = Web3(HTTPProvider(anvil_url))
    assert w3.is_connected()
    owner = w3.eth.accounts[0]
    keys = make_keys(4, "anvil")
    addr = [k.address for k in keys]

    csc = deploy(w3, owner, keccak(text="anvil-run"), keys, 2, quorum=3, batch=3)
    assert csc.functions.isOpen().call()
    assert csc.functions.participants().call() == addr
    assert bytes(w3.eth.get_code(csc.address)) == bytes.fromhex(ARTIFACT["deployedBytecode"][2:])
    binding = binding_of(w3, csc)
    assert binding.chain_id == 31337

    send(csc.functions.anchor(0, Kind.GLOBAL_MODEL, [owner], [digest("g0")]), owner)
    send(
        csc.functions.anchor(1, Kind.UPDATE, addr, [digest(f"u{a}") for a in addr]),
        owner,
    )
    table = {
        0: {1: 10, 2: 30, 3: 20},
        1: {0: 5, 2: 5, 3: 7},
        3: {0: 1, 1: 1, 2: 1},
    }
    incomplete = signed_ballot(binding, 1, keys[2], addr[:2], [1, 1])
    with reverts("IncompleteBallot", round=1, evaluator=addr[2], peers=2, expected=3):
        csc.functions.submitBallots(1, [incomplete]).transact({"from": owner})
    ballots = [
        signed_ballot(binding, 1, keys[ev], [addr[p] for p in row], list(row.values()))
        for ev, row in table.items()
    ]
    send(csc.functions.submitBallots(1, ballots[:2]), owner)
    with reverts("DuplicateBallot", round=1, evaluator=addr[0]):
        csc.functions.submitBallots(1, ballots[:1]).transact({"from": owner})
    with reverts("QuorumNotReached", round=1, ballots=2, quorum=3):
        csc.functions.elect(1).transact({"from": owner})
    forged = signed_ballot(binding, 1, keys[2], [addr[0], addr[1], addr[3]], [9, 9, 9], key=keys[3])
    with reverts("InvalidSignature", evaluator=addr[2], recovered=addr[3]):
        csc.functions.submitBallots(1, [forged]).transact({"from": owner})
    send(csc.functions.submitBallots(1, ballots[2:]), owner)

    receipt = send(csc.functions.elect(1), owner)
    updates = {a: digest(f"u{a}") for a in addr}
    expected, totals = borda.elect(updates, table_of(ballots), 2, 3)
    (event,) = csc.events.Elected().process_receipt(receipt)
    assert event.args.candidates == expected
    assert event.args.totals == [totals[c] for c in expected]

    send(csc.functions.anchor(1, Kind.GLOBAL_MODEL, [owner], [digest("g1")]), owner)
    assert csc.functions.lastCompletedRound().call() == 1
    assert csc.functions.currentRound().call() == 2
    assert csc.functions.candidatesOf(1).call() == expected
    with reverts("NotOwner", caller=w3.eth.accounts[1]):
        csc.functions.elect(2).transact({"from": w3.eth.accounts[1]})

"""Transaction sending on its own: revert naming, gas policy, fees and receipt polling.

A scripted transport stands in for the node, so each rule is checked without a chain.
"""

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector

from seccl_flwr.chain.abi import contract_abi
from seccl_flwr.chain.errors import (
    ChainError,
    ChainUnreachableError,
    ContractRevertError,
    NodeError,
    NoSenderError,
)
from seccl_flwr.chain.retry import NO_RETRY
from seccl_flwr.chain.transactions import Node, TransactionSender, revert_error
from seccl_flwr.errors import ConfigurationError

ABI = contract_abi()
OWNER = Account.from_key(b"\x05" * 32)


class ScriptedNode:
    """A transport answering each method from a table (a value, or a function of params)."""

    def __init__(self, answers: dict):
        self.answers = answers
        self.asked: list[str] = []

    def request(self, method, params):
        self.asked.append(method)
        answer = self.answers[method]
        answer = answer(params) if callable(answer) else answer
        if isinstance(answer, dict) and "error" in answer:
            return {"jsonrpc": "2.0", "id": 1, **answer}
        return {"jsonrpc": "2.0", "id": 1, "result": answer}

    def batch(self, calls):
        return [self.request(method, params) for method, params in calls]


def sender_on(answers: dict, gas_limit=None, embedded=False, account=OWNER):
    transport = ScriptedNode(answers)
    node = Node(transport, NO_RETRY, ABI)
    return TransactionSender(node, account, lambda: 31337, gas_limit, embedded), transport


def revert_data(signature: str, types: list[str], values: list) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, values)).hex()


# ------------------------------------------------------------------ revert decoding
def test_a_code_3_error_is_named_by_the_contracts_custom_error():
    data = revert_data("WrongRound(uint32,uint32)", ["uint32", "uint32"], [2, 1])
    error = revert_error("elect", {"code": 3, "message": "execution reverted", "data": data}, ABI)
    assert isinstance(error, ContractRevertError)
    assert (error.function, error.error_name) == ("elect", "WrongRound")
    assert error.error_args == {"round": 2, "expected": 1}


def test_address_arguments_of_a_revert_are_checksummed():
    account = OWNER.address.lower()
    data = revert_data("UnknownParticipant(address)", ["address"], [account])
    error = revert_error("participantIndex", {"code": 3, "data": data}, ABI)
    assert error.error_args == {"account": OWNER.address}


def test_reverts_without_known_data_are_named_unknown_or_plain():
    unknown = revert_error("elect", {"code": 3, "data": "0x12345678"}, ABI)
    assert unknown.error_name == "UnknownError" and unknown.error_args == {"data": "0x12345678"}
    plain = revert_error("elect", {"code": -32000, "message": "execution reverted"}, ABI)
    assert plain.error_name == "Revert" and "execution reverted" in plain.error_args["message"]
    assert revert_error("elect", {"code": -32000, "message": "out of gas"}, ABI) is None


def test_a_node_error_is_a_node_error_and_a_revert_only_when_a_function_is_named():
    node = Node(ScriptedNode({}), NO_RETRY, ABI)
    data = revert_data("NotElected(uint32)", ["uint32"], [1])
    response = {"error": {"code": 3, "data": data}}
    with pytest.raises(ContractRevertError, match="NotElected"):
        node.checked(response, "eth_call", "candidatesOf")
    with pytest.raises(NodeError) as info:
        node.checked(response, "eth_call", None)
    assert info.value.method == "eth_call"
    assert node.checked({"result": "0x01"}, "eth_call", "owner") == "0x01"


# ----------------------------------------------------------------------- gas policy
def test_gas_is_the_nodes_estimate_by_default():
    sender, node = sender_on({"eth_estimateGas": hex(123_456)})
    assert sender.gas("anchor", {"data": "0x"}) == 123_456
    assert node.asked == ["eth_estimateGas"]


def test_a_fixed_gas_limit_is_preflighted_by_one_call():
    sender, node = sender_on({"eth_call": "0x"}, gas_limit=7_000_000)
    assert sender.gas("anchor", {"data": "0x"}) == 7_000_000
    assert node.asked == ["eth_call"]


def test_a_preflight_that_reverts_is_named_before_anything_is_sent():
    data = revert_data("NoUpdates(uint32)", ["uint32"], [1])
    sender, node = sender_on({"eth_call": {"error": {"code": 3, "data": data}}}, gas_limit=10**6)
    with pytest.raises(ContractRevertError, match="NoUpdates"):
        sender.send("elect", b"\x00", "0x" + "11" * 20)
    assert "eth_sendRawTransaction" not in node.asked


def test_the_embedded_chain_takes_90_percent_of_its_block_gas_limit_read_once():
    sender, node = sender_on({"eth_getBlockByNumber": {"gasLimit": hex(30_000_000)}}, embedded=True)
    assert sender.gas("anchor", {}) == 27_000_000
    assert sender.gas("elect", {}) == 27_000_000
    assert node.asked == ["eth_getBlockByNumber"]  # no estimate, no preflight
    fixed, node = sender_on({}, gas_limit=5_000_000, embedded=True)
    assert fixed.gas("anchor", {}) == 5_000_000 and node.asked == []


@pytest.mark.parametrize("gas_limit", [0, -5])
def test_a_gas_limit_that_is_not_positive_is_a_configuration_error(gas_limit):
    with pytest.raises(ConfigurationError, match="gas_limit must be positive"):
        sender_on({}, gas_limit=gas_limit)


def test_a_client_without_an_account_cannot_send():
    sender, node = sender_on({}, account=None)
    with pytest.raises(NoSenderError, match="give the client a sender"):
        sender.send("elect", b"", "0x" + "11" * 20)
    with pytest.raises(PermissionError):  # the stdlib type callers may catch
        sender.send("elect", b"", "0x" + "11" * 20)
    assert node.asked == []


# ----------------------------------------------------------------------------- fees
def test_fees_are_eip1559_where_blocks_have_a_base_fee():
    sender, _ = sender_on(
        {"eth_getBlockByNumber": {"baseFeePerGas": hex(100)}, "eth_maxPriorityFeePerGas": hex(7)}
    )
    assert sender.fee_fields("anchor") == {"maxPriorityFeePerGas": 7, "maxFeePerGas": 207}


def test_fees_are_the_gas_price_where_blocks_have_no_base_fee():
    sender, node = sender_on({"eth_getBlockByNumber": {"number": "0x1"}, "eth_gasPrice": hex(9)})
    assert sender.fee_fields("anchor") == {"gasPrice": 9}
    assert "eth_maxPriorityFeePerGas" not in node.asked


# -------------------------------------------------------------------- receipt polling
def test_receipt_polling_waits_until_the_transaction_is_mined():
    answers = iter([None, None, None, {"status": "0x1"}])
    sender, node = sender_on({"eth_getTransactionReceipt": lambda params: next(answers)})
    assert sender.await_receipt("anchor", "0xab", timeout=5) == {"status": "0x1"}
    assert node.asked == ["eth_getTransactionReceipt"] * 4


def test_receipt_polling_gives_up_after_its_timeout():
    sender, _ = sender_on({"eth_getTransactionReceipt": None})
    with pytest.raises(ChainUnreachableError, match="no receipt for 0xab within 0.05s"):
        sender.await_receipt("anchor", "0xab", timeout=0.05)


def test_a_resend_that_the_node_already_knows_awaits_the_same_receipt():
    receipt = {"status": "0x1"}
    sender, node = sender_on(
        {
            "eth_sendRawTransaction": {"error": {"code": -32000, "message": "already known"}},
            "eth_getTransactionReceipt": receipt,
        }
    )
    assert sender.send_and_wait("anchor", b"\x01", "0xab", 3) == receipt
    failing, _ = sender_on(
        {"eth_sendRawTransaction": {"error": {"code": -32000, "message": "insufficient funds"}}}
    )
    with pytest.raises(NodeError, match="insufficient funds"):
        failing.send_and_wait("anchor", b"\x01", "0xab", 3)


def test_a_nonce_taken_by_another_transaction_is_not_resent():
    sender, node = sender_on(
        {
            "eth_sendRawTransaction": {"error": {"code": -32000, "message": "nonce too low"}},
            "eth_getTransactionReceipt": None,
        }
    )
    with pytest.raises(ChainError, match="nonce 3 of the sender was used by another") as info:
        sender.send_and_wait("anchor", b"\x01", "0xab", 3)
    assert not isinstance(info.value, ChainUnreachableError)  # so never retried
    assert node.asked.count("eth_sendRawTransaction") == 1

"""Sending transactions to the contract, and the checked node requests they are made of.

The split follows web3.py's: :class:`~seccl_flwr.chain.csc.CandidateSelection` is
the typed contract client (what to call), this module how a call reaches the chain:

* :class:`Node`: one node asked over a bare JSON-RPC transport
  (:mod:`~seccl_flwr.chain.jsonrpc`), views called with bare ``eth_call``, every
  request retried per a
  :class:`~seccl_flwr.chain.retry.RetryPolicy` while the node is unreachable, and
  every error answer raised: a revert as
  :class:`~seccl_flwr.chain.errors.ContractRevertError` named from the contract's
  custom errors (:func:`revert_error`), anything else as
  :class:`~seccl_flwr.chain.errors.NodeError`;
* :class:`TransactionSender`: one account's transactions: gas policy, nonce, fees
  (as web3 fills them by default), signing once, sending and resending those very
  bytes, polling for the receipt, and naming the revert of a failed transaction.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from ..errors import ConfigurationError
from .abi import ContractAbi, hex_bytes
from .errors import ChainError, ChainUnreachableError, ContractRevertError, NodeError, NoSenderError
from .jsonrpc import JsonRpc
from .retry import RetryPolicy, retrying

RECEIPT_TIMEOUT = 60.0
"""Seconds one send waits for its receipt before the retry policy sends it again."""


@dataclass(frozen=True)
class TxInfo:
    """What a mined transaction cost."""

    function: str
    tx_hash: str
    gas_used: int
    block_number: int


def checked_gas_limit(gas_limit: int | None) -> int | None:
    """Return ``gas_limit`` if it is ``None`` (estimate) or positive.

    Raises
    ------
    ConfigurationError
        If it is zero or negative; the message names ``gas_limit``.
    """
    if gas_limit is not None and gas_limit <= 0:
        raise ConfigurationError(f"gas_limit must be positive, got {gas_limit}")
    return gas_limit


def revert_error(function: str, error: Any, abi: ContractAbi) -> ContractRevertError | None:
    """Return the revert a node's JSON-RPC error object stands for, or ``None``.

    A revert is a code-3 error, or (on nodes that word it so) any error whose text
    says "revert"; its ``data``, if any, is decoded into the contract's custom
    error. Revert data of no known error gives ``UnknownError`` with the data, a
    revert without data ``Revert`` with the node's message.

    Parameters
    ----------
    function : str
        The contract function the request served (named in the error).
    error : Any
        The ``error`` member of the node's answer.
    abi : ContractAbi
        The contract's ABI, for its custom errors.
    """
    if isinstance(error, dict) and error.get("code") == 3:
        data, message = error.get("data"), str(error.get("message"))
    elif "revert" in str(error).lower():
        data, message = (error.get("data") if isinstance(error, dict) else None), str(error)
    else:
        return None
    if not (isinstance(data, str) and data.startswith("0x") and len(data) >= 10):
        return ContractRevertError(function, "Revert", {"message": message})
    raw = hex_bytes(data)
    decoded = abi.decode_error(raw)
    if decoded is None:
        return ContractRevertError(function, "UnknownError", {"data": "0x" + raw.hex()})
    return ContractRevertError(function, *decoded)


class Node:
    """One chain node, asked over a bare JSON-RPC transport with retries.

    Parameters
    ----------
    transport : JsonRpc
        The transport to the node (:func:`~seccl_flwr.chain.jsonrpc.json_rpc_of`).
    retry : RetryPolicy
        How a request that finds the node unreachable is retried.
    abi : ContractAbi
        The contract's ABI, to name reverts.
    """

    def __init__(self, transport: JsonRpc, retry: RetryPolicy, abi: ContractAbi) -> None:
        self.transport = transport
        self.retry = retry
        self.abi = abi

    def result(self, method: str, params: list, function: str | None = None) -> Any:
        """Return the result of one JSON-RPC call, retried while the node is down.

        ``function`` is the contract function the call serves: errors name it, and
        a revert is decoded into its custom error.

        Raises
        ------
        ContractRevertError
            If ``function`` is given and the call reverted.
        NodeError
            If the node answers with another error.
        ChainUnreachableError
            If the node stays unreachable through the retry policy.
        """
        what = method if function is None else f"{function} ({method})"
        response = retrying(lambda: self.transport.request(method, params), self.retry, what)
        return self.checked(response, method, function)

    def results(self, calls: list[tuple[str, list]], functions: list[str | None]) -> list[Any]:
        """Return the results of several JSON-RPC calls made in one batch.

        As :meth:`result`, with one contract function name (or ``None``) per call.
        """
        what = "+".join(
            method if f is None else f for (method, _), f in zip(calls, functions, strict=True)
        )
        responses = self.responses(calls, what)
        return [
            self.checked(response, method, function)
            for response, (method, _), function in zip(responses, calls, functions, strict=True)
        ]

    def responses(self, calls: list[tuple[str, list]], what: str) -> list[dict]:
        """Return the raw responses of one batch, retried while the node is down."""
        return retrying(lambda: self.transport.batch(calls), self.retry, what)

    def checked(self, response: dict, method: str, function: str | None) -> Any:
        """Return a response's result, or raise its error (a named revert if ``function``).

        Raises
        ------
        ContractRevertError
            If ``function`` is given and the response is a revert.
        NodeError
            For any other error.
        """
        error = response.get("error")
        if error is None:
            return response.get("result")
        revert = revert_error(function, error, self.abi) if function is not None else None
        if revert is not None:
            raise revert
        raise NodeError(method, error)

    def call(self, address: str, function: str, args: tuple) -> Any:
        """Call a view with one bare ``eth_call``: a fifth of web3's per-call cost.

        The call is encoded with eth-abi and sent as is, skipping web3's encoder,
        middleware and result formatters; the reply is decoded with the ABI's output
        types, addresses checksummed, and a revert is named from the contract's
        custom errors.
        """
        result = self.result(*self.call_request(address, function, args), function)
        return self.abi.decode_result(function, result)

    def calls(self, address: str, calls: tuple[tuple[str, tuple], ...]) -> list[Any]:
        """Return several views' values, read in one round trip (a JSON-RPC batch).

        ``calls`` are ``(function name, arguments)``; a revert raises
        :class:`~seccl_flwr.chain.errors.ContractRevertError` as :meth:`call` does.
        """
        results = self.results(
            [self.call_request(address, name, args) for name, args in calls],
            [name for name, _ in calls],
        )
        return [
            self.abi.decode_result(name, result)
            for (name, _), result in zip(calls, results, strict=True)
        ]

    def call_request(self, address: str, function: str, args: tuple) -> tuple[str, list]:
        """Return the ``eth_call`` of a view of the contract at ``address`` on the latest block."""
        data = "0x" + self.abi.call_data(function, args).hex()
        return "eth_call", [{"to": address, "data": data}, "latest"]

    def receipt(self, tx_hash: str) -> dict | None:
        """Return a transaction's receipt (wire values), or ``None`` if not mined.

        Asked once, not retried: the caller's polling and retry decide what follows.
        """
        response = self.transport.request("eth_getTransactionReceipt", [tx_hash])
        return self.checked(response, "eth_getTransactionReceipt", None)


class TransactionSender:
    """Signs, sends and awaits one account's transactions to the contract.

    Parameters
    ----------
    node : Node
        The node the transactions go to.
    account : LocalAccount | None
        The account that signs (the run's owner); ``None`` for a read-only client,
        whose transactions raise :class:`~seccl_flwr.chain.errors.NoSenderError`.
    chain_id : Callable[[], int]
        Returns the chain id every transaction is signed for.
    gas_limit : int | None
        The gas policy. ``None`` asks the node (``eth_estimateGas``, which also
        surfaces any revert, named). An integer is every transaction's limit: one
        ``eth_call`` first surfaces any revert, and the account must cover
        ``gas_limit`` x gas price. On the embedded chain (``embedded=True``) nothing
        is executed before sending and ``None`` means 90% of the block gas limit;
        a transaction that reverts there is replayed as a call to name its error.
    embedded : bool
        Whether the node is the in-process eth-tester chain, on which py-evm runs a
        transaction a dozen times to estimate its gas and as slowly again for a
        preflight call.

    Raises
    ------
    ConfigurationError
        If ``gas_limit`` is not positive.
    """

    def __init__(
        self,
        node: Node,
        account: LocalAccount | None,
        chain_id: Callable[[], int],
        gas_limit: int | None = None,
        embedded: bool = False,
    ) -> None:
        self.node = node
        self.account = account
        self.gas_limit = checked_gas_limit(gas_limit)
        self.embedded = embedded
        self._chain_id = chain_id
        self._block_gas_limit: int | None = None

    def send(self, function: str, data: bytes, to: str | None) -> tuple[dict, TxInfo]:
        """Send one transaction and return its receipt (wire values) and cost.

        The transaction is signed once; only those signed bytes are ever resent
        (per the node's retry policy), so a lost reply cannot cause a second effect.

        Parameters
        ----------
        function : str
            The contract function called (``"constructor"`` for a deployment).
        data : bytes
            The call data (or init code and constructor arguments).
        to : str | None
            The contract's address; ``None`` deploys.

        Raises
        ------
        NoSenderError
            If there is no account to sign.
        ContractRevertError
            If the transaction reverts (before sending, or once mined).
        ChainUnreachableError
            If the node stays unreachable, or no receipt comes, through the policy.
        """
        if self.account is None:
            raise NoSenderError(f"{function} sends a transaction; give the client a sender")
        call = {"from": self.account.address, "data": "0x" + data.hex()}
        if to is not None:
            call["to"] = to
        gas = self.gas(function, call)
        nonce = self.nonce(function)
        tx = {**call, "gas": gas, "chainId": self._chain_id(), "nonce": nonce, "value": 0}
        signed = self.account.sign_transaction({**tx, **self.fee_fields(function)})
        tx_hash = "0x" + bytes(signed.hash).hex()
        receipt = retrying(
            lambda: self.send_and_wait(function, signed.raw_transaction, tx_hash, nonce),
            self.node.retry,
            function,
        )
        if int(receipt["status"], 16) != 1:
            # replay the call on the state the transaction ran on to name its error
            before = hex(int(receipt["blockNumber"], 16) - 1)
            self.node.result("eth_call", [call, before], function)
            raise ContractRevertError(function, "TransactionReverted", {"tx": tx_hash})
        gas_used, block = int(receipt["gasUsed"], 16), int(receipt["blockNumber"], 16)
        return receipt, TxInfo(function, tx_hash, gas_used, block)

    def gas(self, function: str, call: dict) -> int:
        """Return the transaction's gas limit per the gas policy (see the class).

        Raises
        ------
        ContractRevertError
            If the estimate or the preflight call reverts.
        """
        if self.embedded:
            return self.gas_limit or self._embedded_gas_limit(function)
        if self.gas_limit is None:  # the estimate surfaces any revert, named
            return int(self.node.result("eth_estimateGas", [call], function), 16)
        self.node.result("eth_call", [call, "latest"], function)  # surfaces any revert
        return self.gas_limit

    def nonce(self, function: str) -> int:
        """Return the account's next nonce, counting its pending transactions."""
        address = self.account.address if self.account is not None else None
        return int(self.node.result("eth_getTransactionCount", [address, "pending"], function), 16)

    def fee_fields(self, function: str) -> dict[str, int]:
        """Return a transaction's fee fields, as web3 fills them by default.

        EIP-1559 where blocks have a base fee: the node's suggested priority fee,
        and at most that plus twice the base fee; else the node's gas price.
        """
        block = self.node.result("eth_getBlockByNumber", ["latest", False], function)
        if block.get("baseFeePerGas") is None:
            return {"gasPrice": int(self.node.result("eth_gasPrice", [], function), 16)}
        tip = int(self.node.result("eth_maxPriorityFeePerGas", [], function), 16)
        return {
            "maxPriorityFeePerGas": tip,
            "maxFeePerGas": tip + 2 * int(block["baseFeePerGas"], 16),
        }

    def _embedded_gas_limit(self, function: str) -> int:
        """Return 90% of the embedded chain's block gas limit (read once)."""
        if self._block_gas_limit is None:
            block = self.node.result("eth_getBlockByNumber", ["latest", False], function)
            self._block_gas_limit = int(block["gasLimit"], 16)
        return self._block_gas_limit * 9 // 10

    def send_and_wait(self, function: str, raw: bytes, tx_hash: str, nonce: int) -> dict:
        """Send one signed transaction (again) and wait for its receipt.

        Resending the same signed bytes is idempotent: a node that already has the
        transaction answers "already known", one that mined it "nonce too low"; in
        both cases the receipt of this very hash is what is awaited. A receipt that
        does not come (a node restarted without the pending transaction) makes the
        caller's retry send the same bytes again.

        Raises
        ------
        ChainError
            If the nonce was used by another transaction (nothing is resent).
        NodeError
            If the node refuses the transaction for another reason.
        ChainUnreachableError
            If no receipt comes within :data:`RECEIPT_TIMEOUT`.
        """
        response = self.node.transport.request("eth_sendRawTransaction", ["0x" + bytes(raw).hex()])
        error = response.get("error")
        if error is not None:  # the wording is node-specific
            text = str(error).lower()
            if "already known" not in text and "nonce too low" not in text:
                raise NodeError("eth_sendRawTransaction", error)
            if "nonce too low" in text and self.node.receipt(tx_hash) is None:
                raise ChainError(
                    f"{function}: nonce {nonce} of the sender was used by another "
                    f"transaction than {tx_hash}; not resending"
                )
        return self.await_receipt(function, tx_hash, RECEIPT_TIMEOUT)

    def await_receipt(self, function: str, tx_hash: str, timeout: float) -> dict:
        """Poll for a transaction's receipt: from 2 ms, doubling up to 0.5 s.

        An auto-mining dev node answers in a few ms (web3's fixed 0.1 s poll made
        every transaction cost 0.1 s there), and a node with 12 s blocks is asked a
        few times a second at most.

        Raises
        ------
        ChainUnreachableError
            If no receipt comes within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        delay = 0.002
        while (receipt := self.node.receipt(tx_hash)) is None:
            if time.monotonic() >= deadline:
                raise ChainUnreachableError(
                    f"{function}: no receipt for {tx_hash} within {timeout}s"
                )
            time.sleep(delay)
            delay = min(2 * delay, 0.5)
        return receipt

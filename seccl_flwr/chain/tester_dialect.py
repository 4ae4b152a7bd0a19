"""Standard JSON-RPC requests in eth-tester's dialect, and its answers in a node's.

web3's eth-tester middleware was written for web3's own requests: it renames the
camelCase keys it knows and turns hex quantities into integers, and what it does not
know reaches eth-tester unchanged and is refused or misread.
:class:`~seccl_flwr.chain.jsonrpc.EmbeddedJsonRpc` (also what the loopback server
serves) passes every wire request through :func:`request_for_tester` before that
middleware and every answer through :func:`node_result` after it, so the embedded
chain answers what clients such as foundry's ``cast``, ethers or viem send:

* a call object's ``input`` (the spec's name; eth-tester knows only the legacy
  ``data``); both given and different is an invalid-params error, as in geth; a
  ``maxFeePerGas`` without a tip;
* an EIP-1898 block object (``{"blockHash": ...}`` or ``{"blockNumber": ...}``)
  where a block is asked for (web3's middleware failed on it: "unhashable dict"),
  a hex block number for ``eth_getStorageAt``, no block for ``eth_call`` (geth
  reads ``latest``), and ``pending`` for ``eth_estimateGas`` (cast's, for every
  ``cast send``);
* a log filter's single ``address``, its ``blockHash`` (EIP-234) and block tags:
  eth-tester's filter matches ``earliest`` only against pending logs, so
  ``fromBlock: "earliest"`` (cast's default) found nothing, and ``safe`` or
  ``finalized`` failed;
* answers: full transactions of a block with the keys of
  ``eth_getTransactionByHash`` (not eth-tester's snake_case), and ``yParity``
  for eth-tester's ``y_parity`` in both; receipts with their
  ``logsBloom`` (cast refuses a receipt without it) and without eth-tester's
  ``state_root``; logs with ``removed`` and without eth-tester's ``type``.

Pure functions, but for reading block numbers from the tester.
"""

from collections.abc import Mapping
from typing import Any

from eth_bloom import BloomFilter
from eth_utils import decode_hex
from eth_utils.toolz import compose
from web3.providers.eth_tester.middleware import (
    transaction_result_formatter,
    transaction_result_remapper,
)

CALL_OBJECT_METHODS = frozenset(
    {"eth_call", "eth_estimateGas", "eth_sendTransaction", "eth_createAccessList"}
)
"""Methods whose first parameter is a transaction call object."""

BLOCK_PARAMETER_INDEX = {
    "eth_call": 1,
    "eth_estimateGas": 1,
    "eth_createAccessList": 1,
    "eth_getBalance": 1,
    "eth_getCode": 1,
    "eth_getTransactionCount": 1,
    "eth_getStorageAt": 2,
}
"""Where a method takes its block parameter (a tag, a number or an EIP-1898 object)."""

FILTER_METHODS = frozenset({"eth_getLogs", "eth_newFilter"})
MOVING_TAGS = frozenset({"latest", "pending"})
"""Tags an installed filter keeps following (it reports later blocks' logs too)."""

DEFAULT_LATEST = frozenset({"eth_call", "eth_createAccessList"})
"""Methods whose block parameter may be left out (geth reads ``latest`` then)."""

_TRANSACTION_METHODS = frozenset(
    {
        "eth_getTransactionByHash",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getTransactionByBlockHashAndIndex",
        "eth_getTransactionByBlockNumberAndIndex",
    }
)
_LOG_METHODS = frozenset({"eth_getLogs", "eth_getFilterLogs", "eth_getFilterChanges"})

INVALID_PARAMS = -32602
SERVER_ERROR = -32000

_web3_transaction = compose(transaction_result_remapper, transaction_result_formatter)


def node_transaction(transaction: Mapping[str, Any]) -> dict[str, Any]:
    """Return eth-tester's transaction with a node's keys.

    web3's own formatter for ``eth_getTransactionByHash`` (which web3 does not apply
    to the transactions of a block), and ``yParity`` for eth-tester's ``y_parity``.
    """
    renamed = dict(_web3_transaction(transaction))
    if "y_parity" in renamed:
        renamed["yParity"] = renamed.pop("y_parity")
    return renamed


class RequestError(ValueError):
    """A request eth-tester cannot be asked; answered as a JSON-RPC error.

    Attributes
    ----------
    code : int
        The JSON-RPC error code (``-32602`` invalid params, ``-32000`` unknown block).
    """

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


def request_for_tester(method: str, params: Any, tester: Any) -> Any:
    """Return ``params`` as web3's eth-tester middleware and eth-tester take them.

    Parameters
    ----------
    method : str
        The JSON-RPC method.
    params : Any
        Its parameters, as a client sent them (JSON values).
    tester : EthereumTester
        The chain, to turn block hashes and tags into numbers.

    Raises
    ------
    RequestError
        If a call object's ``input`` and ``data`` differ, a filter names a block
        hash together with a range, or a block hash is unknown.
    """
    if not isinstance(params, list | tuple) or not params:
        return params
    params = list(params)
    if method in CALL_OBJECT_METHODS and isinstance(params[0], Mapping):
        params[0] = call_object(params[0])
    index = BLOCK_PARAMETER_INDEX.get(method)
    if method in DEFAULT_LATEST and len(params) == 1:
        params.append("latest")
    if index is not None and len(params) > index:
        params[index] = block_number(params[index], tester)
        if method == "eth_estimateGas" and params[index] == "pending":
            # eth-tester estimates only on mined blocks; it mines every transaction
            # at once, so the pending block holds none and its state is the latest
            params[index] = "latest"
    if method in FILTER_METHODS and isinstance(params[0], Mapping):
        moving = MOVING_TAGS if method == "eth_newFilter" else frozenset()
        params[0] = log_filter(params[0], tester, keep=moving)
    return params


def call_object(call: Mapping[str, Any]) -> dict[str, Any]:
    """Return a transaction call object with its ``input`` as eth-tester's ``data``.

    A ``maxFeePerGas`` without ``maxPriorityFeePerGas`` gets a tip of 0, as in geth.

    Raises
    ------
    RequestError
        If both are given and differ (the same answer as geth's).
    """
    call = dict(call)
    if "maxFeePerGas" in call and "maxPriorityFeePerGas" not in call:
        # eth-tester builds a legacy transaction then and fails; geth takes a 0 tip
        call["maxPriorityFeePerGas"] = 0
    if "input" not in call:
        return call
    given = call.pop("input")
    if "data" in call and _hex_bytes(call["data"]) != _hex_bytes(given):
        raise RequestError(
            INVALID_PARAMS,
            'both "data" and "input" are set and not equal. '
            'Please use "input" to pass transaction call data',
        )
    call["data"] = given
    return call


def block_number(block: Any, tester: Any) -> Any:
    """Return a block parameter as a tag or a number (EIP-1898 objects resolved).

    An object names the block by ``blockHash`` (all embedded blocks are canonical,
    so ``requireCanonical`` holds) or ``blockNumber``.

    Raises
    ------
    RequestError
        If the block hash is unknown or the object names no block.
    """
    if isinstance(block, str) and block.startswith("0x"):
        return int(block, 16)  # web3's middleware leaves eth_getStorageAt's block as hex
    if not isinstance(block, Mapping):
        return block
    if "blockHash" in block:
        return _number_of_hash(block["blockHash"], tester)
    if "blockNumber" in block:
        return block_number(block["blockNumber"], tester)
    raise RequestError(INVALID_PARAMS, f"block object names no block: {dict(block)}")


def log_filter(
    query: Mapping[str, Any], tester: Any, keep: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Return a log filter as eth-tester takes it.

    A single ``address`` becomes a list, ``blockHash`` becomes that block's
    number at both ends, and block tags other than ``keep`` become numbers.

    Raises
    ------
    RequestError
        If ``blockHash`` comes with ``fromBlock`` or ``toBlock``, or is unknown.
    """
    query = dict(query)
    if isinstance(query.get("address"), str):
        query["address"] = [query["address"]]
    if query.get("blockHash") is not None:
        if query.get("fromBlock") is not None or query.get("toBlock") is not None:
            raise RequestError(
                INVALID_PARAMS,
                "cannot specify both BlockHash and FromBlock/ToBlock, choose one or the other",
            )
        query["fromBlock"] = query["toBlock"] = hex(_number_of_hash(query["blockHash"], tester))
    query.pop("blockHash", None)
    for end in ("fromBlock", "toBlock"):
        tag = query.get(end)
        if isinstance(tag, str) and not tag.startswith("0x") and tag not in keep:
            query[end] = hex(tester.get_block_by_number(tag)["number"])
    return query


def node_result(method: str, result: Any) -> Any:
    """Return an answer (after web3's middleware) with the keys a node sends."""
    if method in _TRANSACTION_METHODS and isinstance(result, Mapping):
        if "transactions" in result:  # a block
            transactions = [
                node_transaction(t) if isinstance(t, Mapping) else t for t in result["transactions"]
            ]
            return {**result, "transactions": transactions}
        return node_transaction(result)
    if method == "eth_getTransactionReceipt" and isinstance(result, Mapping):
        return receipt(result)
    if method in _LOG_METHODS and isinstance(result, list | tuple):
        return [node_log(entry) if isinstance(entry, Mapping) else entry for entry in result]
    return result


def receipt(tester_receipt: Mapping[str, Any]) -> dict[str, Any]:
    """Return a receipt with its logs' bloom filter and without ``state_root``.

    eth-tester's ``state_root`` is the status byte again (a node sends ``root``
    only before Byzantium); clients that decode receipts require ``logsBloom``.
    """
    answer = {k: v for k, v in tester_receipt.items() if k != "state_root"}
    logs = [node_log(entry) for entry in tester_receipt.get("logs", ())]
    bloom = BloomFilter()
    for entry in logs:
        bloom.add(decode_hex(entry["address"]))
        for topic in entry["topics"]:
            bloom.add(_hex_bytes(topic))
    answer["logs"] = logs
    answer["logsBloom"] = "0x" + int(bloom).to_bytes(256, "big").hex()
    return answer


def node_log(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Return a log entry with ``removed`` (never, on this chain) and no ``type``."""
    answer = {k: v for k, v in entry.items() if k != "type"}
    answer["removed"] = False
    return answer


def _number_of_hash(block_hash: Any, tester: Any) -> int:
    from eth_tester.exceptions import BlockNotFound, ValidationError

    try:
        return int(tester.get_block_by_hash(block_hash)["number"])
    except (BlockNotFound, ValidationError) as exc:
        raise RequestError(SERVER_ERROR, f"unknown block hash {block_hash}") from exc


def _hex_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return decode_hex(str(value))

"""Typed Python client of the candidate selection contract (CSC).

One :class:`CandidateSelection` wraps one deployed contract, i.e. one SecCL run.
Transactions are signed locally by the ``sender`` account (the server, who owns the
run and pays gas), their receipts are awaited, and every revert is raised as a
:class:`~seccl_flwr.chain.errors.ContractRevertError` that names the contract's
custom error and its arguments. Views need no sender.

Calls are ABI-encoded with eth-abi and sent as bare JSON-RPC on the fastest
transport to the chain (:func:`~seccl_flwr.chain.jsonrpc.json_rpc_of`); web3 is used
for event decoding only.
"""

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import function_signature_to_4byte_selector, keccak
from eth_utils import to_checksum_address as _to_checksum_address
from web3 import Web3

from ..protocol.eip712 import Kind, RunBinding
from .artifact import load_artifact
from .connection import EmbeddedProvider
from .errors import (
    ChainError,
    ChainUnreachableError,
    ContractCodeMismatchError,
    ContractRevertError,
    NoContractError,
    NodeError,
)
from .jsonrpc import json_rpc_of
from .retry import RetryPolicy, retrying

T = TypeVar("T")

to_checksum_address = functools.lru_cache(maxsize=1 << 16)(_to_checksum_address)
"""eth-utils' checksum (a keccak per call), cached: a run names the same few addresses
in every read, and decoding a round's anchors or candidates checksums each of them."""

ANCHORED_TOPIC = "0x" + keccak(text="Anchored(uint32,uint8,address,bytes32)").hex()
"""Topic 0 of the contract's ``Anchored`` event."""

IN_ROUND_ORDER = (Kind.UPDATE, Kind.GLOBAL_MODEL)
"""Kinds the contract anchors strictly in round order: round r's anchors of these
kinds are in blocks at or after round r-1's (updates need round r open, i.e. the
global model of r-1 anchored; global models follow one another)."""

BALLOT_CHUNK = 25
"""Ballots per ``submitBallots`` transaction (keeps each well under the gas limit)."""


@dataclass(frozen=True)
class TxInfo:
    """What a mined transaction cost."""

    function: str
    tx_hash: str
    gas_used: int
    block_number: int


@dataclass(frozen=True)
class SignedBallot:
    """One evaluator's signed score vector, as the contract takes it."""

    evaluator: str
    peers: tuple[str, ...]
    scores: tuple[int, ...]
    signature: bytes

    def as_tuple(self) -> tuple:
        """Return the ABI tuple ``(evaluator, peers, scores, signature)``."""
        return (self.evaluator, list(self.peers), list(self.scores), self.signature)


@functools.cache
def _abi_tables() -> tuple[dict, dict[str, list[str]], dict[str, list[str]], dict[str, bytes]]:
    """Return the artifact's error table and each function's types and call prefix.

    The prefix is what a call's data starts with: the selector, or the init code
    for the constructor.
    """
    artifact = load_artifact()
    abi = artifact["abi"]
    functions = [e for e in abi if e.get("type") in ("function", "constructor")]
    inputs = {e.get("name", "constructor"): [_abi_type(i) for i in e["inputs"]] for e in functions}
    views = [e for e in functions if e["type"] == "function"]
    outputs = {e["name"]: [_abi_type(o) for o in e["outputs"]] for e in views}
    prefixes = {
        e["name"]: function_signature_to_4byte_selector(
            f"{e['name']}({','.join(inputs[e['name']])})"
        )
        for e in views
    }
    prefixes["constructor"] = bytes.fromhex(artifact["bytecode"].removeprefix("0x"))
    return _error_table(abi), inputs, outputs, prefixes


def _error_table(abi: list[dict]) -> dict[bytes, tuple[str, list[str], list[str]]]:
    table = {}
    for entry in abi:
        if entry.get("type") != "error":
            continue
        types = [_abi_type(i) for i in entry["inputs"]]
        selector = function_signature_to_4byte_selector(f"{entry['name']}({','.join(types)})")
        table[selector] = (entry["name"], [i["name"] for i in entry["inputs"]], types)
    return table


def _abi_type(item: dict) -> str:
    if item["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){item['type'][5:]}"
    return item["type"]


class CandidateSelection:
    """Client of one deployed candidate selection contract.

    Parameters
    ----------
    w3 : Web3
        Connection to the chain.
    address : str | None
        Address of the contract (``None`` only inside :meth:`deploy`, before it exists).
    sender : LocalAccount | None
        Account that signs transactions (the run's owner). Views work without it.
    retry : RetryPolicy | None
        How views and sends are retried while the node is unreachable (default:
        :class:`RetryPolicy`'s defaults, about a minute). A transaction is signed
        once and only that signed transaction is ever resent, so a retry cannot
        have a second effect.
    gas_limit : int | None
        Gas limit of every transaction. ``None`` (default) asks the node
        (``eth_estimateGas``) for each one; on the embedded chain, whose estimate
        runs py-evm a dozen times, 90% of the block gas limit is used instead. An
        integer skips the estimate, which on a node costs a binary search of a
        dozen executions (80 ms for a ballot batch of 20 on anvil): one ``eth_call``
        first surfaces any revert with its named error, and the account must be
        able to cover ``gas_limit`` x gas price. Meant for private chains. On the
        embedded chain nothing is executed before sending; a transaction that
        reverts is replayed as a call to name its error.
    """

    def __init__(
        self,
        w3: Web3,
        address: str | None,
        sender: LocalAccount | None = None,
        retry: RetryPolicy | None = None,
        gas_limit: int | None = None,
    ):
        self.retry = retry or RetryPolicy()
        self.w3 = w3
        self.address = to_checksum_address(address) if address is not None else None
        self.sender = sender
        if gas_limit is not None and gas_limit <= 0:
            raise ValueError(f"gas_limit must be positive, got {gas_limit}")
        self.gas_limit = gas_limit
        self._errors, self._inputs, self._outputs, self._prefixes = _abi_tables()
        self._chain_id: int | None = None
        self._node = json_rpc_of(w3)
        self._anchor_blocks: dict[tuple[Kind, int], int] = {}  # (kind, round) -> last block
        self._block_gas_limit: int | None = None
        self._binding: RunBinding | None = None
        self._owner: str | None = None
        self._participants: list[str] | None = None

    @functools.cached_property
    def contract(self) -> Any:
        """The web3 contract object (for event decoding), built on first use.

        Calls, transactions and anchor reads go through :attr:`_node` instead;
        building it costs 2 ms, which clients never need to pay.
        """
        return self.w3.eth.contract(address=self.address, abi=load_artifact()["abi"])

    # ------------------------------------------------------------------ set-up
    @classmethod
    def deploy(
        cls,
        w3: Web3,
        sender: LocalAccount,
        run_id: bytes,
        participants: Sequence[str],
        num_candidates: int,
        gas_limit: int | None = None,
    ) -> tuple["CandidateSelection", TxInfo]:
        """Deploy a new contract, which opens a run; return its client and the tx.

        Raises
        ------
        ContractRevertError
            If the run parameters are rejected (e.g. ``DuplicateParticipant``).
        """
        deployer = cls(w3, None, sender, gas_limit=gas_limit)
        receipt, info = deployer._transact(
            "constructor", run_id, [to_checksum_address(p) for p in participants], num_candidates
        )
        return cls(w3, receipt["contractAddress"], sender, gas_limit=gas_limit), info

    @classmethod
    def attach(
        cls,
        w3: Web3,
        address: str,
        sender: LocalAccount | None = None,
        gas_limit: int | None = None,
    ) -> "CandidateSelection":
        """Attach to an existing contract after checking its code.

        The code, chain id, run id, owner and participants (none of which changes
        once deployed) are read in one round trip and kept.

        Raises
        ------
        NoContractError
            If there is no code at ``address``.
        ContractCodeMismatchError
            If the code is not the packaged artifact's runtime code.
        """
        csc = cls(w3, address, sender, gas_limit=gas_limit)
        address = csc.address
        fixed = ("runId", "owner", "participants")
        calls = [("eth_getCode", [address, "latest"]), ("eth_chainId", [])]
        calls += [csc._call_request(name, ()) for name in fixed]
        responses = csc._responses(calls, "attach")
        code = _hex_bytes(csc._checked(responses[0], "eth_getCode", None))
        if not code:
            raise NoContractError(f"no contract code at {address}")
        expected = bytes.fromhex(load_artifact()["deployedBytecode"].removeprefix("0x"))
        if code != expected:
            raise ContractCodeMismatchError(
                f"code at {address} ({len(code)} bytes) is not the CandidateSelection "
                f"artifact's runtime code ({len(expected)} bytes)"
            )
        # the views are decoded only now: at another address they mean nothing
        run_id, owner, participants = (
            csc._decoded_view(name, csc._checked(response, "eth_call", name))
            for name, response in zip(fixed, responses[2:], strict=True)
        )
        csc._chain_id = int(csc._checked(responses[1], "eth_chainId", None), 16)
        csc._binding = RunBinding(chain_id=csc._chain_id, contract=address, run_id=bytes(run_id))
        csc._owner, csc._participants = str(owner), list(participants)
        return csc

    @property
    def binding(self) -> RunBinding:
        """The run binding (chain id, contract, run id) of every digest of this run."""
        if self._binding is None:
            self._binding = RunBinding(
                chain_id=self.chain_id(),
                contract=self.address,
                run_id=self.run_id(),
            )
        return self._binding

    def chain_id(self) -> int:
        """Return the chain id (read once)."""
        if self._chain_id is None:
            self._chain_id = int(self._result("eth_chainId", []), 16)
        return self._chain_id

    # ------------------------------------------------------------ transactions
    def anchor(
        self, round_: int, kind: Kind, authors: Sequence[str], digests: Sequence[bytes]
    ) -> TxInfo:
        """Anchor the digests of one phase of a round in one transaction."""
        return self._transact(
            "anchor", round_, int(kind), [to_checksum_address(a) for a in authors], list(digests)
        )[1]

    def submit_ballots(
        self, round_: int, ballots: Sequence[SignedBallot], chunk: int = BALLOT_CHUNK
    ) -> list[TxInfo]:
        """Submit signed ballots, ``chunk`` per transaction."""
        infos = []
        for start in range(0, len(ballots), chunk):
            part = [b.as_tuple() for b in ballots[start : start + chunk]]
            infos.append(self._transact("submitBallots", round_, part)[1])
        return infos

    def elect(self, round_: int) -> TxInfo:
        """Close the round's vote and store its candidates."""
        return self._transact("elect", round_)[1]

    # ------------------------------------------------------------------- views
    def anchor_of(self, round_: int, kind: Kind, author: str) -> bytes:
        """Return the digest anchored for (round, kind, author); 32 zero bytes if none."""
        return bytes(self._view("anchorOf", round_, int(kind), to_checksum_address(author)))

    def anchors_of(self, round_: int, kind: Kind) -> dict[str, bytes]:
        """Return every digest anchored for (round, kind), by author, in one log query.

        Cheaper than one :meth:`anchor_of` call per author when a client checks a
        whole round's updates; the contract anchors each (round, kind, author) once.
        For the kinds in :data:`IN_ROUND_ORDER` the query starts at the last block
        this client saw an earlier round's anchor in, not at the genesis block (a
        node's log search, and eth-tester's above all, grows with the range).
        """
        kind = Kind(kind)
        topics = [
            ANCHORED_TOPIC,
            "0x" + int(round_).to_bytes(32, "big").hex(),
            "0x" + int(kind).to_bytes(32, "big").hex(),
        ]
        earlier = [b for (k, r), b in self._anchor_blocks.items() if k == kind and r < round_]
        query = {
            "address": self.address,
            "fromBlock": hex(max(earlier, default=0)),
            "toBlock": "latest",
            "topics": topics,
        }
        logs = [log for log in self._result("eth_getLogs", [query]) if not log.get("removed")]
        if kind in IN_ROUND_ORDER and logs:
            self._anchor_blocks[(kind, round_)] = max(int(log["blockNumber"], 16) for log in logs)
        return {
            to_checksum_address("0x" + log["topics"][3][-40:]): _hex_bytes(log["data"])
            for log in logs
        }

    def update_authors(self, round_: int) -> list[str]:
        """Return the round's update authors in anchoring order."""
        return list(self._view("updateAuthors", round_))

    def candidates_of(self, round_: int) -> list[str]:
        """Return the round's elected candidates, best first."""
        return list(self._view("candidatesOf", round_))

    def totals_of(self, round_: int) -> dict[str, int]:
        """Return every update author's Borda total for the round."""
        authors, points = self._view("totalsOf", round_)
        return dict(zip(authors, points, strict=True))

    def is_elected(self, round_: int) -> bool:
        """Return whether the round's election has run."""
        return bool(self._view("isElected", round_))

    def evaluators_of(self, round_: int) -> list[str]:
        """Return who cast a ballot in the round, in submission order."""
        return list(self._view("evaluatorsOf", round_))

    def participants(self) -> list[str]:
        """Return the run's participants in registration order (fixed at deployment)."""
        if self._participants is None:
            self._participants = list(self._view("participants"))
        return list(self._participants)

    def num_candidates(self) -> int:
        """Return the number of candidates ``M`` per round."""
        return int(self._view("numCandidates"))

    def owner(self) -> str:
        """Return the run's owner (the server)."""
        if self._owner is None:  # set once by the constructor, never changes
            self._owner = str(self._view("owner"))
        return self._owner

    def last_completed_round(self) -> int:
        """Return the last round whose new global model is anchored."""
        return int(self._view("lastCompletedRound"))

    def current_round(self) -> int:
        """Return the round that is open (``lastCompletedRound + 1``)."""
        return int(self._view("currentRound"))

    def ballot_count(self, round_: int) -> int:
        """Return how many ballots the round has."""
        return int(self._view("ballotCount", round_))

    def is_participant(self, account: str) -> bool:
        """Return whether ``account`` is registered in the run."""
        return bool(self._view("isParticipant", to_checksum_address(account)))

    def participant_index(self, account: str) -> int:
        """Return the registration index of ``account`` (reverts ``UnknownParticipant``)."""
        return int(self._view("participantIndex", to_checksum_address(account)))

    def run_id(self) -> bytes:
        """Return the run id."""
        return bytes(self._view("runId"))

    def domain_separator(self) -> bytes:
        """Return the contract's EIP-712 domain separator."""
        return bytes(self._view("domainSeparator"))

    def hash_message(self, round_: int, kind: Kind, author: str, payload_hash: bytes) -> bytes:
        """Return the contract's EIP-712 digest of a ``Message`` (for auditors)."""
        return bytes(
            self._view("hashMessage", round_, int(kind), to_checksum_address(author), payload_hash)
        )

    def hash_ballot(
        self, round_: int, evaluator: str, peers: Sequence[str], scores: Sequence[int]
    ) -> bytes:
        """Return the contract's EIP-712 digest of a ``Ballot``."""
        return bytes(
            self._view(
                "hashBallot",
                round_,
                to_checksum_address(evaluator),
                [to_checksum_address(p) for p in peers],
                [int(s) for s in scores],
            )
        )

    def events(self, name: str, from_block: int = 0) -> list[Any]:
        """Return all logs of event ``name`` since ``from_block``."""
        event = getattr(self.contract.events, name)
        return self._rpc(f"{name} logs", lambda: list(event.get_logs(from_block=from_block)))

    def ballot_and_candidates(self, round_: int, evaluator: str) -> tuple[bytes, list[str]]:
        """Return the evaluator's anchored ballot digest and the round's candidates.

        Both are read in one round trip (a JSON-RPC batch); a client checks them
        together after the round's election.
        """
        ballot, candidates = self.views(
            ("anchorOf", (round_, int(Kind.BALLOT), to_checksum_address(evaluator))),
            ("candidatesOf", (round_,)),
        )
        return bytes(ballot), candidates

    # --------------------------------------------------------------- internals
    def views(self, *calls: tuple[str, tuple]) -> list[Any]:
        """Return several views' values, read in one round trip (a JSON-RPC batch).

        ``calls`` are ``(function name, arguments)``; a revert raises
        :class:`ContractRevertError` as :meth:`_view` does.
        """
        results = self._results(
            [self._call_request(name, args) for name, args in calls], [n for n, _ in calls]
        )
        return [self._decoded_view(name, r) for (name, _), r in zip(calls, results, strict=True)]

    def _view(self, name: str, *args: Any) -> Any:
        """Call a view with one bare ``eth_call``: a fifth of web3's per-call cost.

        The call is encoded with eth-abi and sent on :attr:`_node`, skipping web3's
        encoder, middleware and result formatters; the reply is decoded with the
        ABI's output types here, addresses checksummed, and a revert is named from
        the contract's custom errors.
        """
        return self._decoded_view(name, self._result(*self._call_request(name, args), name))

    def _call_request(self, name: str, args: tuple) -> tuple[str, list]:
        """Return the ``eth_call`` of a view on the latest block."""
        data = "0x" + self._call_data(name, args).hex()
        return "eth_call", [{"to": self.address, "data": data}, "latest"]

    def _decoded_view(self, name: str, result: Any) -> Any:
        values = _abi_values(self._outputs[name], _hex_bytes(result))
        return values[0] if len(values) == 1 else tuple(values)

    def _result(self, method: str, params: list, name: str | None = None) -> Any:
        """Return the result of one JSON-RPC call, retried while the node is down.

        ``name`` is the contract function the call serves: errors name it, and a
        revert is decoded into its custom error.

        Raises
        ------
        ContractRevertError
            If ``name`` is given and the call reverted.
        NodeError
            If the node answers with another error.
        ChainUnreachableError
            If the node stays unreachable through the retry policy.
        """
        what = method if name is None else f"{name} ({method})"
        response = retrying(lambda: self._node.request(method, params), self.retry, what)
        return self._checked(response, method, name)

    def _results(self, calls: list[tuple[str, list]], names: list[str | None]) -> list[Any]:
        """Return the results of several JSON-RPC calls made in one batch.

        As :meth:`_result`, with one contract function name (or ``None``) per call.
        """
        what = "+".join(
            method if n is None else n for (method, _), n in zip(calls, names, strict=True)
        )
        return [
            self._checked(response, method, name)
            for response, (method, _), name in zip(
                self._responses(calls, what), calls, names, strict=True
            )
        ]

    def _responses(self, calls: list[tuple[str, list]], what: str) -> list[dict]:
        """Return the raw responses of one batch, retried while the node is down."""
        return retrying(lambda: self._node.batch(calls), self.retry, what)

    def _checked(self, response: dict, method: str, name: str | None) -> Any:
        """Return a response's result, or raise its error (a named revert if ``name``)."""
        error = response.get("error")
        if error is None:
            return response.get("result")
        if name is not None and isinstance(error, dict) and error.get("code") == 3:
            raise self._revert_of(name, error.get("data"), str(error.get("message")))
        if name is not None and "revert" in str(error).lower():
            data = error.get("data") if isinstance(error, dict) else None
            raise self._revert_of(name, data, str(error))
        raise NodeError(method, error)

    def _call_data(self, name: str, args: tuple) -> bytes:
        """ABI-encode a call (or the deployment) with eth-abi: a tenth of web3's cost."""
        return self._prefixes[name] + abi_encode(self._inputs[name], list(args))

    def _transact(self, name: str, *args: Any) -> tuple[dict, TxInfo]:
        if self.sender is None:
            raise PermissionError(f"{name} sends a transaction; give the client a sender")
        address = self.sender.address
        call = {"from": address, "data": "0x" + self._call_data(name, args).hex()}
        if self.address is not None:
            call["to"] = self.address
        if isinstance(self.w3.provider, EmbeddedProvider):
            # py-evm runs a transaction a dozen times to estimate its gas and as
            # slowly again for a preflight call: neither is done, the block's gas
            # limit bounds it on this private chain, and a revert (which eth-tester
            # mines with status 0) is named by replaying it below
            gas = self.gas_limit or self._embedded_gas_limit(name)
        elif self.gas_limit is None:  # the estimate surfaces any revert, named
            gas = int(self._result("eth_estimateGas", [call], name), 16)
        else:  # one execution surfaces any revert (with its named error)
            gas = self.gas_limit
            self._result("eth_call", [call, "latest"], name)
        nonce = int(self._result("eth_getTransactionCount", [address, "pending"], name), 16)
        tx = {
            **call,
            "gas": gas,
            "chainId": self.chain_id(),
            "nonce": nonce,
            "value": 0,
            **self._fee_fields(name),
        }
        signed = self.sender.sign_transaction(tx)
        tx_hash = "0x" + bytes(signed.hash).hex()
        receipt = retrying(
            lambda: self._send_and_wait(name, signed.raw_transaction, tx_hash, nonce),
            self.retry,
            name,
        )
        if int(receipt["status"], 16) != 1:
            # replay the call on the state the transaction ran on to name its error
            before = hex(int(receipt["blockNumber"], 16) - 1)
            self._result("eth_call", [call, before], name)
            raise ContractRevertError(name, "TransactionReverted", {"tx": tx_hash})
        info = TxInfo(name, tx_hash, int(receipt["gasUsed"], 16), int(receipt["blockNumber"], 16))
        return receipt, info

    def _fee_fields(self, name: str) -> dict[str, int]:
        """Return a transaction's fee fields, as web3 fills them by default.

        EIP-1559 where blocks have a base fee: the node's suggested priority fee,
        and at most that plus twice the base fee; else the node's gas price.
        """
        block = self._result("eth_getBlockByNumber", ["latest", False], name)
        if block.get("baseFeePerGas") is None:
            return {"gasPrice": int(self._result("eth_gasPrice", [], name), 16)}
        tip = int(self._result("eth_maxPriorityFeePerGas", [], name), 16)
        return {
            "maxPriorityFeePerGas": tip,
            "maxFeePerGas": tip + 2 * int(block["baseFeePerGas"], 16),
        }

    def _embedded_gas_limit(self, name: str) -> int:
        """Return 90% of the embedded chain's block gas limit (read once)."""
        if self._block_gas_limit is None:
            block = self._result("eth_getBlockByNumber", ["latest", False], name)
            self._block_gas_limit = int(block["gasLimit"], 16)
        return self._block_gas_limit * 9 // 10

    def _rpc(self, what: str, call: Callable[[], T]) -> T:
        return retrying(lambda: _rpc(call), self.retry, what)

    def _send_and_wait(
        self, name: str, raw: bytes, tx_hash: str, nonce: int, timeout: float = 60.0
    ) -> dict:
        """Send one signed transaction (again) and wait for its receipt.

        Resending the same signed bytes is idempotent: a node that already has the
        transaction answers "already known", one that mined it "nonce too low"; in
        both cases the receipt of this very hash is what is awaited. A receipt that
        does not come (a node restarted without the pending transaction) makes the
        caller's retry send the same bytes again.
        """
        response = self._node.request("eth_sendRawTransaction", ["0x" + bytes(raw).hex()])
        error = response.get("error")
        if error is not None:  # the wording is node-specific
            text = str(error).lower()
            if "already known" not in text and "nonce too low" not in text:
                raise NodeError("eth_sendRawTransaction", error)
            if "nonce too low" in text and self._receipt(tx_hash) is None:
                raise ChainError(
                    f"{name}: nonce {nonce} of the sender was used by another transaction "
                    f"than {tx_hash}; not resending"
                )
        # poll from 2 ms, doubling up to 0.5 s: an auto-mining dev node answers in a
        # few ms (web3's fixed 0.1 s poll made every transaction cost 0.1 s there),
        # and a node with 12 s blocks is asked a few times a second at most
        deadline = time.monotonic() + timeout
        delay = 0.002
        while (receipt := self._receipt(tx_hash)) is None:
            if time.monotonic() >= deadline:
                raise ChainUnreachableError(f"{name}: no receipt for {tx_hash} within {timeout}s")
            time.sleep(delay)
            delay = min(2 * delay, 0.5)
        return receipt

    def _receipt(self, tx_hash: str) -> dict | None:
        """Return the transaction's receipt (wire values), or ``None`` if not mined."""
        response = self._node.request("eth_getTransactionReceipt", [tx_hash])
        return self._checked(response, "eth_getTransactionReceipt", None)

    def _revert_of(self, name: str, data: Any, message: str) -> ContractRevertError:
        """Name a revert by its custom error if ``data`` holds one, else ``Revert``."""
        if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
            return self._revert_error(name, data)
        return ContractRevertError(name, "Revert", {"message": message})

    def _revert_error(self, name: str, data: str) -> ContractRevertError:
        raw = bytes.fromhex(data.removeprefix("0x"))
        entry = self._errors.get(raw[:4])
        if entry is None:
            return ContractRevertError(name, "UnknownError", {"data": "0x" + raw.hex()})
        error_name, arg_names, types = entry
        values = _abi_values(types, raw[4:])
        return ContractRevertError(name, error_name, dict(zip(arg_names, values, strict=True)))


def _abi_values(types: list[str], data: bytes) -> list[Any]:
    """Decode ABI ``data``, with addresses checksummed as web3 returns them."""
    return [_checksummed(t, v) for t, v in zip(types, abi_decode(types, data), strict=True)]


def _checksummed(abi_type: str, value: Any) -> Any:
    if abi_type == "address":
        return to_checksum_address(value)
    if abi_type == "address[]":
        return [to_checksum_address(v) for v in value]
    return value


def _hex_bytes(value: Any) -> bytes:
    """Return the bytes of a ``0x``-hex wire value."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ChainError(f"expected 0x-hex bytes from the node, got {value!r:.80}")
    return bytes.fromhex(value[2:])


def _rpc(call: Callable[[], T]) -> T:
    try:
        return call()
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise ChainUnreachableError(f"chain endpoint does not answer: {exc}") from exc

"""The event logs of one SecCL run: its anchors by round and kind, and decoded events.

:class:`RunLogs` reads what the contract logged for one run, every query starting
at the run's opening block (which the contract records), never at the genesis
block: a node's log search, and eth-tester's above all, grows with the range.
:class:`~seccl_flwr.chain.csc.CandidateSelection` reads its logs through one.
"""

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from eth_utils import keccak
from web3 import Web3

from ..protocol.eip712 import Kind
from .abi import hex_bytes, to_checksum_address
from .artifact import load_artifact
from .errors import ChainUnreachableError
from .retry import retrying
from .transactions import Node

__all__ = ["ANCHORED_TOPIC", "IN_ROUND_ORDER", "RunLogs"]

T = TypeVar("T")

ANCHORED_TOPIC = "0x" + keccak(text="Anchored(uint32,uint8,address,bytes32)").hex()
"""Topic 0 of the contract's ``Anchored`` event."""

IN_ROUND_ORDER = (Kind.UPDATE, Kind.GLOBAL_MODEL)
"""Kinds the contract anchors strictly in round order: round r's anchors of these
kinds are in blocks at or after round r-1's (updates need round r open, i.e. the
global model of r-1 anchored; global models follow one another)."""


class RunLogs:
    """The logs of the contract at ``address``, from the run's opening block on.

    Parameters
    ----------
    w3 : Web3
        Connection to the chain (for web3's event decoding).
    address : str | None
        Address of the contract.
    node : Node
        The node that answers the bare log queries.
    opening_block : Callable[[], int]
        Returns the run's opening block (read from the contract once, then kept).
    """

    def __init__(
        self, w3: Web3, address: str | None, node: Node, opening_block: Callable[[], int]
    ) -> None:
        self.w3 = w3
        self.address = address
        self._node = node
        self._opening_block = opening_block
        self._anchor_blocks: dict[tuple[Kind, int], int] = {}  # (kind, round) -> last block

    @functools.cached_property
    def contract(self) -> Any:
        """The web3 contract object (for event decoding), built on first use.

        Calls, transactions and anchor reads are encoded here and sent bare
        instead; building it costs 2 ms, which clients never need to pay.
        """
        return self.w3.eth.contract(address=self.address, abi=load_artifact()["abi"])

    def anchors_of(self, round_: int, kind: Kind) -> dict[str, bytes]:
        """Return every digest anchored for (round, kind), by author, in one log query.

        Cheaper than one ``anchorOf`` call per author when a client checks a whole
        round's updates; the contract anchors each (round, kind, author) once. The
        query starts at the run's opening block; for the kinds in
        :data:`IN_ROUND_ORDER` at the last block these logs saw an earlier round's
        anchor in.
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
            "fromBlock": hex(max(earlier, default=self._opening_block())),
            "toBlock": "latest",
            "topics": topics,
        }
        logs = [log for log in self._node.result("eth_getLogs", [query]) if not log.get("removed")]
        if kind in IN_ROUND_ORDER and logs:
            self._anchor_blocks[(kind, round_)] = max(int(log["blockNumber"], 16) for log in logs)
        return {
            to_checksum_address("0x" + log["topics"][3][-40:]): hex_bytes(log["data"])
            for log in logs
        }

    def events(self, name: str, from_block: int | None = None) -> list[Any]:
        """Return all logs of event ``name`` since ``from_block`` (default: the opening block)."""
        event = getattr(self.contract.events, name)
        start = self._opening_block() if from_block is None else from_block
        return retrying(
            lambda: _web3_read(lambda: list(event.get_logs(from_block=start))),
            self._node.retry,
            f"{name} logs",
        )


def _web3_read(call: Callable[[], T]) -> T:
    """Return ``call()`` (a read through web3), a dead endpoint as ChainUnreachableError."""
    try:
        return call()
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise ChainUnreachableError(f"chain endpoint does not answer: {exc}") from exc

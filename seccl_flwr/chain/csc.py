"""Typed Python client of the candidate selection contract (CSC).

One :class:`CandidateSelection` wraps one deployed contract, i.e. one SecCL run: its
functions as typed Python methods (round numbers, :class:`~seccl_flwr.protocol.eip712.Kind`,
addresses and digests in; lists, dicts and bytes out), opening a run (deploy with
its :class:`~seccl_flwr.protocol.params.RunParams`, register the roster, open) and
attachment with a code check, the round's anchors from the logs, and events (read
by :class:`~seccl_flwr.chain.run_logs.RunLogs`). Nobody outside this module names a
Solidity function.

Batch transactions (``register``, ``anchor``, ``submitBallots``) are split into
batches sized by their gas (:mod:`~seccl_flwr.chain.gas`), so each stays under the
2^24 per-transaction cap of EIP-7825 for every run the contract accepts; every log
query starts at the run's opening block, which the contract records.

How a call reaches the chain is :mod:`~seccl_flwr.chain.transactions`' job, split
as web3.py splits its contract and ``eth`` modules: its
:class:`~seccl_flwr.chain.transactions.Node` retries requests and names reverts
(:class:`~seccl_flwr.chain.errors.ContractRevertError`, with the contract's custom
error and its arguments), and its
:class:`~seccl_flwr.chain.transactions.TransactionSender` signs the ``sender``'s
transactions (the server, who owns the run and pays gas) and awaits their receipts.
Views need no sender.

Calls are ABI-encoded with eth-abi (:mod:`~seccl_flwr.chain.abi`) and sent by the
:class:`~seccl_flwr.chain.transactions.Node` as bare JSON-RPC on the fastest transport to the chain
(:func:`~seccl_flwr.chain.jsonrpc.json_rpc_of`); web3 is used for event decoding only.
"""

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from ..errors import ConfigurationError
from ..protocol import committee
from ..protocol.borda import ballot_points
from ..protocol.eip712 import Kind, RunBinding
from ..protocol.election import MEDIAN_RULES
from ..protocol.params import TRUNCATED_BORDA, RunParams
from ..protocol.signed import SignedMessage
from . import gas
from .abi import contract_abi, hex_bytes, to_checksum_address
from .artifact import load_artifact
from .connection import EmbeddedProvider
from .errors import (
    CommitteeSeedMismatchError,
    CommitteeUnavailableError,
    ContractCodeMismatchError,
    NoContractError,
    NodeError,
)
from .jsonrpc import JsonRpc, json_rpc_of
from .retry import RetryPolicy
from .run_logs import ANCHORED_TOPIC, IN_ROUND_ORDER, RunLogs
from .transactions import Node, TransactionSender, TxInfo

__all__ = [
    "ANCHORED_TOPIC",
    "IN_ROUND_ORDER",
    "CandidateSelection",
    "TxInfo",
    "open_run",
]

SEAL_SUCCESSOR_TIMEOUT = 120.0
"""Seconds :meth:`CandidateSelection.submit_ballots` waits for a block after the seal."""

_FIXED_VIEWS = ("runId", "owner", "params", "openingBlock", "isOpen", "participants")
"""The views :meth:`CandidateSelection.attach` reads: fixed once deployed (the roster
once the run is open)."""


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
        :class:`RetryPolicy`'s defaults: 8 attempts, 31.5 s of back-off in all). A
        transaction is signed once and only that signed transaction is ever
        resent, so a retry cannot have a second effect.
    gas_limit : int | None
        Gas limit of every transaction. ``None`` (default) asks the node for an
        estimate of each one (90% of the block gas limit on the embedded chain). An
        integer skips the estimate, which on a node costs a binary search of a
        dozen or more executions (about 20 times one ``eth_call`` of a ballot batch
        on anvil); one ``eth_call`` still names any revert before sending. Batches
        are sized by :mod:`~seccl_flwr.chain.gas` to stay under 80% of the 2^24
        per-transaction cap, so a limit of 2^24 always suffices.
        Meant for private chains. The whole policy:
        :class:`~seccl_flwr.chain.transactions.TransactionSender`.
    transport : JsonRpc | None
        The bare JSON-RPC transport to the chain; by default the fastest one for
        ``w3``'s provider (:func:`~seccl_flwr.chain.jsonrpc.json_rpc_of`).

    Raises
    ------
    ConfigurationError
        If ``gas_limit`` is zero or negative.
    """

    def __init__(
        self,
        w3: Web3,
        address: str | None,
        sender: LocalAccount | None = None,
        retry: RetryPolicy | None = None,
        gas_limit: int | None = None,
        transport: JsonRpc | None = None,
    ):
        self.w3 = w3
        self.address = to_checksum_address(address) if address is not None else None
        self._abi = contract_abi()
        self._node = Node(transport or json_rpc_of(w3), retry or RetryPolicy(), self._abi)
        self._transactions = TransactionSender(
            self._node,
            sender,
            self.chain_id,
            gas_limit,
            embedded=isinstance(w3.provider, EmbeddedProvider),
        )
        self._chain_id: int | None = None
        self._binding: RunBinding | None = None
        self._owner: str | None = None
        self._params: RunParams | None = None
        self._opening_block: int | None = None
        self._open = False  # once open, a run stays open
        self._participants: list[str] | None = None  # kept once the run is open
        self._logs = RunLogs(w3, self.address, self._node, self.opening_block)

    @property
    def contract(self) -> Any:
        """The web3 contract object (for event decoding), built on first use.

        See :attr:`~seccl_flwr.chain.run_logs.RunLogs.contract`.
        """
        return self._logs.contract

    @property
    def gas_limit(self) -> int | None:
        """Gas limit of every transaction, or ``None`` for the node's estimate."""
        return self._transactions.gas_limit

    # ------------------------------------------------------------------ set-up
    @classmethod
    def deploy(
        cls,
        w3: Web3,
        sender: LocalAccount,
        run_id: bytes,
        params: RunParams,
        gas_limit: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> tuple["CandidateSelection", TxInfo]:
        """Deploy a new contract with the run's parameters; return its client and the tx.

        The run has no participant yet and is not open: :meth:`register` the roster,
        then :meth:`open` it (or do all three with :func:`open_run`).

        Raises
        ------
        ContractRevertError
            If the node rejects the deployment.
        """
        deployer = cls(w3, None, sender, retry, gas_limit)
        receipt, info = deployer._transact("constructor", run_id, params.as_tuple())
        csc = cls(w3, receipt["contractAddress"], sender, retry, gas_limit)
        csc._params, csc._opening_block = params, info.block_number
        return csc, info

    @classmethod
    def attach(
        cls,
        w3: Web3,
        address: str,
        sender: LocalAccount | None = None,
        gas_limit: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> "CandidateSelection":
        """Attach to an existing contract after checking its code.

        The code, chain id, run id, owner, parameters and opening block (none of
        which changes once deployed) and the roster are read in one round trip and
        kept; the roster only if the run is open (it is final from then on).

        Raises
        ------
        NoContractError
            If there is no code at ``address``.
        ContractCodeMismatchError
            If the code is not the packaged artifact's runtime code.
        """
        csc = cls(w3, address, sender, retry, gas_limit)
        run = _read_deployed_run(csc._node, csc.address)
        csc._chain_id = run.chain_id
        csc._binding = RunBinding(chain_id=run.chain_id, contract=csc.address, run_id=run.run_id)
        csc._owner, csc._params, csc._opening_block = run.owner, run.params, run.opening_block
        if run.participants is not None:  # open: the roster is final
            csc._open, csc._participants = True, run.participants
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
            self._chain_id = int(self._node.result("eth_chainId", []), 16)
        return self._chain_id

    # ------------------------------------------------------------ transactions
    def register(
        self, participants: Sequence[str], join_signatures: Sequence[bytes]
    ) -> list[TxInfo]:
        """Add participants to the roster, in gas-sized batches, before :meth:`open`.

        Parameters
        ----------
        participants : Sequence[str]
            Addresses, in registration order.
        join_signatures : Sequence[bytes]
            Each participant's ``Join(run_id, participant)`` signature, in the same order.

        Raises
        ------
        ConfigurationError
            If the two lists differ in length.
        ContractRevertError
            If the contract refuses a batch (e.g. ``InvalidJoinSignature``,
            ``RunAlreadyOpen``); earlier batches stay registered.
        """
        batches = _paired_batches(
            "register",
            ("participants", participants),
            ("join signatures", join_signatures),
            gas.register_batch_size,
        )
        return [
            self._transact("register", [to_checksum_address(p) for p in accounts], sigs)[1]
            for accounts, sigs in batches
        ]

    def open(self) -> TxInfo:
        """Seal the roster and open the run (rounds may start, :meth:`register` reverts)."""
        info = self._transact("open")[1]
        self._open = True
        return info

    def anchor(
        self, round_: int, kind: Kind, authors: Sequence[str], digests: Sequence[bytes]
    ) -> list[TxInfo]:
        """Anchor the digests of one phase of a round, in gas-sized batches.

        Raises
        ------
        ConfigurationError
            If ``authors`` and ``digests`` differ in length.
        """
        batches = _paired_batches(
            "anchor",
            ("authors", authors),
            ("digests", digests),
            lambda: gas.anchor_batch_size(Kind(kind)),
        )
        return [
            self._transact(
                "anchor", round_, int(kind), [to_checksum_address(a) for a in part], part_digests
            )[1]
            for part, part_digests in batches
        ]

    def seal_updates(self, round_: int) -> TxInfo:
        """Seal the round's updates: none can be anchored afterwards (``sealUpdates``).

        Required before the first ballot of a committee run, whose committees are
        drawn from the hash of this transaction's block; optional with committee size
        0. The first ballot must then come in a later block and within 256 blocks.

        Raises
        ------
        ContractRevertError
            ``UpdatesSealed`` if already sealed (by this, a ballot or the election),
            ``NoUpdates``, ``WrongRound``.
        """
        return self._transact("sealUpdates", round_)[1]

    def submit_ballots(self, round_: int, ballots: Sequence[SignedMessage]) -> list[TxInfo]:
        """Submit signed ballots in batches sized by their gas (peers, ``M``, the rule).

        Ballots may be partial (a committee run's ``k_eff`` peers): batches are sized
        for the largest. A committee run's batches are sized by
        :func:`~seccl_flwr.chain.gas.committee_ballot_batch_size` (at most 10 M gas,
        the first batch's committee draw included); it first waits for a block after
        the seal block (:meth:`_await_block_after_seal`).
        """
        if not ballots:
            return []
        peers = max(len(b.peers) for b in ballots)
        params = self.params()
        if params.committee_size:
            self._await_block_after_seal(round_)
            parts = self._committee_batches(round_, list(ballots), peers)
        else:
            m = gas.ballot_model_candidates(peers, params.num_candidates, params.election_rule)
            size = gas.ballot_batch_size(peers, m, election_rule=params.election_rule)
            parts = gas.batches(list(ballots), size)
        return [
            self._transact("submitBallots", round_, [b.as_tuple() for b in part])[1]
            for part in parts
        ]

    def elect(self, round_: int) -> TxInfo:
        """Close the round's vote and store its candidates, under the run's election rule.

        Under a median rule the contract verifies the medians it is given; they are
        computed here (:data:`~seccl_flwr.protocol.election.MEDIAN_RULES`: the scores'
        or the ranks' medians) from the ballots the chain accepted (:meth:`ballots_of`).
        """
        rule = self.params().election_rule
        if rule == TRUNCATED_BORDA:
            return self._transact("elect", round_)[1]
        authors = self.update_authors(round_)
        medians = MEDIAN_RULES[rule](dict.fromkeys(authors, b""), self.ballots_of(round_))
        return self._transact("electByMedian", round_, [medians[a] for a in authors])[1]

    def ballots_of(self, round_: int) -> dict[str, dict[str, int]]:
        """Return the ballots the chain accepted in a round: evaluator -> peer -> score.

        Read from the calldata of the ``submitBallots`` transactions that logged the
        round's ``BallotCast`` events (the contract keeps only packed scores).
        """
        cast = [e for e in self.events("BallotCast") if e.args.round == round_]
        ballots: dict[str, dict[str, int]] = {}
        for tx_hash in dict.fromkeys(e.transactionHash for e in cast):  # a batch: all or none
            data = self.w3.eth.get_transaction(tx_hash)["input"]
            _, args = self.contract.decode_function_input(data)
            for ballot in args["ballots"]:  # web3 decodes a struct as a dict by field name
                ballots[to_checksum_address(ballot["evaluator"])] = {
                    to_checksum_address(p): int(s)
                    for p, s in zip(ballot["peers"], ballot["scores"], strict=True)
                }
        return ballots

    # ------------------------------------------------------------------- views
    def anchor_of(self, round_: int, kind: Kind, author: str) -> bytes:
        """Return the digest anchored for (round, kind, author); 32 zero bytes if none."""
        return bytes(self._view("anchorOf", round_, int(kind), to_checksum_address(author)))

    def anchors_of(self, round_: int, kind: Kind) -> dict[str, bytes]:
        """Return every digest anchored for (round, kind), by author, in one log query.

        Cheaper than one :meth:`anchor_of` call per author when a client checks a
        whole round's updates; the query starts at the run's :meth:`opening_block`
        (see :meth:`~seccl_flwr.chain.run_logs.RunLogs.anchors_of`).
        """
        return self._logs.anchors_of(round_, kind)

    def update_authors(self, round_: int) -> list[str]:
        """Return the round's update authors in anchoring order."""
        return list(self._view("updateAuthors", round_))

    def candidates_of(self, round_: int) -> list[str]:
        """Return the round's elected candidates, best first."""
        return list(self._view("candidatesOf", round_))

    def totals_of(self, round_: int) -> dict[str, int]:
        """Return every update author's standing in the round.

        Truncated Borda: the total points so far; median rule: the median received
        score, from the election on (0 before).
        """
        authors, points = self._view("totalsOf", round_)
        return dict(zip(authors, points, strict=True))

    def is_elected(self, round_: int) -> bool:
        """Return whether the round's election has run."""
        return bool(self._view("isElected", round_))

    def evaluators_of(self, round_: int) -> list[str]:
        """Return who cast a ballot in the round, in submission order."""
        return list(self._view("evaluatorsOf", round_))

    def participants(self) -> list[str]:
        """Return the run's participants in registration order (kept once the run is open)."""
        if self._participants is not None:
            return list(self._participants)
        if self._open:
            participants = self._view("participants")
        else:
            participants, self._open = self._node.calls(
                self.address, (("participants", ()), ("isOpen", ()))
            )
        if self._open:
            self._participants = list(participants)
        return list(participants)

    def params(self) -> RunParams:
        """Return the run's parameters (``M``, quorum, share fraction, ...), fixed at deployment."""
        if self._params is None:
            self._params = RunParams.from_tuple(self._view("params"))
        return self._params

    def roster_digest(self) -> bytes:
        """Return the roster digest the run was opened with (32 zero bytes before ``open``)."""
        return bytes(self._view("rosterDigest"))

    def is_open(self) -> bool:
        """Return whether the run is open (roster sealed, rounds allowed)."""
        if not self._open:
            self._open = bool(self._view("isOpen"))
        return self._open

    def opening_block(self) -> int:
        """Return the block of the deployment: every event of the run is at or after it."""
        if self._opening_block is None:
            self._opening_block = int(self._view("openingBlock"))
        return self._opening_block

    def round_seed(self, round_: int) -> bytes:
        """Return the seed of the round's tie order (XOR of its anchored update digests)."""
        return bytes(self._view("roundSeed", round_))

    def seal_block(self, round_: int) -> int:
        """Return the block of the round's :meth:`seal_updates` (0: not sealed that way)."""
        return int(self._view("sealBlockOf", round_))

    def block_hash(self, number: int) -> bytes | None:
        """Return the hash of block ``number`` as the connected node reports it.

        ``None`` if the node does not return the block. Used for the seal block of a
        committee run, whose hash seeds the round's committees.
        """
        block = self._node.result("eth_getBlockByNumber", [hex(number), False])
        return hex_bytes(block["hash"]) if block and block.get("hash") else None

    def committee_seed(self, round_: int) -> bytes:
        """Return the committee seed the contract drew at the round's first ballot.

        ``keccak256(abi.encode(blockhash(seal_block), round_seed))``; 32 zero bytes
        until drawn (and always with committee size 0).
        """
        return bytes(self._view("committeeSeedOf", round_))

    def committee_slots(self, round_: int) -> list[int]:
        """Return each update author's committee slot, in anchoring order (empty until drawn)."""
        return [int(s) for s in self._view("committeeSlotsOf", round_)]

    def updates_sealed(self, round_: int) -> bool:
        """Return whether no update of the round can be anchored any more.

        True once :meth:`seal_updates` ran, a ballot was cast or the round was
        elected: what a resumed server needs to know before anchoring updates.
        """
        seal_block, ballots, elected = self._node.calls(
            self.address,
            (("sealBlockOf", (round_,)), ("ballotCount", (round_,)), ("isElected", (round_,))),
        )
        return bool(seal_block) or bool(ballots) or bool(elected)

    def committee_assignment(self, round_: int) -> dict[str, list[str]]:
        """Return the round's assignment: every update author -> the peers it scores.

        The one derivation of the committees (strategy, client checks and audit all
        call it): the run's committee size, the round's update authors, its seed and
        seal block are read from the contract, the seal block's hash from the node
        this client is connected to (never from the server), and
        :func:`seccl_flwr.protocol.committee.assignments` does the rest. With committee
        size 0 every author scores every other author and no seal is needed. Once the
        contract has drawn the committees, its seed must equal the derived one.

        Raises
        ------
        CommitteeUnavailableError
            If a committee run's round is not sealed yet, or the node does not know
            the seal block.
        CommitteeSeedMismatchError
            If the contract's drawn seed differs from the derived one.
        """
        size = self.params().committee_size
        authors, round_seed, seal_block, drawn = self._node.calls(
            self.address,
            (
                ("updateAuthors", (round_,)),
                ("roundSeed", (round_,)),
                ("sealBlockOf", (round_,)),
                ("committeeSeedOf", (round_,)),
            ),
        )
        if not authors:
            return {}
        if size == committee.FULL_CROSS_EVALUATION:
            return committee.assignments(authors, None, size)
        if not seal_block:
            raise CommitteeUnavailableError(
                f"round {round_}'s updates are not sealed: its committees are not drawn yet"
            )
        block_hash = self.block_hash(int(seal_block))
        if block_hash is None:
            raise CommitteeUnavailableError(
                f"the node does not return block {int(seal_block)}, which sealed round {round_}"
            )
        seed = committee.committee_seed(block_hash, bytes(round_seed))
        if any(drawn) and bytes(drawn) != seed:
            raise CommitteeSeedMismatchError(
                f"round {round_}: the contract drew committee seed 0x{bytes(drawn).hex()}, "
                f"but block {int(seal_block)}'s hash 0x{block_hash.hex()} from "
                f"this node gives 0x{seed.hex()}"
            )
        return committee.assignments(authors, seed, size)

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

    def events(self, name: str, from_block: int | None = None) -> list[Any]:
        """Return all logs of event ``name`` since ``from_block`` (default: the opening block)."""
        return self._logs.events(name, from_block)

    def ballot_and_candidates(self, round_: int, evaluator: str) -> tuple[bytes, list[str]]:
        """Return the evaluator's anchored ballot digest and the round's candidates.

        Both are read in one round trip (a JSON-RPC batch); a client checks them
        together after the round's election.
        """
        ballot, candidates = self._node.calls(
            self.address,
            (
                ("anchorOf", (round_, int(Kind.BALLOT), to_checksum_address(evaluator))),
                ("candidatesOf", (round_,)),
            ),
        )
        return bytes(ballot), candidates

    # --------------------------------------------------------------- internals
    def _committee_batches(
        self, round_: int, ballots: list[SignedMessage], peers: int
    ) -> list[list[SignedMessage]]:
        """Cut a committee run's ballots into gas-sized batches (``gas.committee_batch_sizes``).

        Each batch is costed with the authors it gives their first Borda points
        (computed here, as the contract tallies, from the chain's round seed and the
        standings so far) and only a round's first batch with the committee draw.
        """
        params = self.params()
        authors, seed, (_, points), drawn = self._node.calls(
            self.address,
            (
                ("updateAuthors", (round_,)),
                ("roundSeed", (round_,)),
                ("totalsOf", (round_,)),
                ("committeeSeedOf", (round_,)),
            ),
        )
        points_to: list[list[str]] = [[] for _ in ballots]
        if params.election_rule == TRUNCATED_BORDA:
            points_to = [
                list(
                    ballot_points(
                        dict(zip((to_checksum_address(p) for p in b.peers), b.scores, strict=True)),
                        params.num_candidates,
                        bytes(seed),
                    )
                )
                for b in ballots
            ]
        sizes = gas.committee_batch_sizes(
            points_to,
            peers,
            params.num_candidates,
            params.election_rule,
            len(authors),
            with_points=[a for a, p in zip(authors, points, strict=True) if p],
            draw=not any(bytes(drawn)),
        )
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return [ballots[s : s + size] for s, size in zip(starts, sizes, strict=True)]

    def _await_block_after_seal(self, round_: int) -> None:
        """Return once the chain has a block after the round's seal block.

        The first ballot of a committee run reads ``blockhash(sealBlock)``, which is 0
        inside the seal block itself: a transaction mined later succeeds, but a
        preflight ``eth_call`` or estimate against the seal block (the latest block on
        an auto-mining dev chain) reverts ``CommitteeSeedUnavailable``. A dev chain
        (embedded, anvil) is asked to mine an empty block (``evm_mine``); any other
        node is polled until its next block, for at most :data:`SEAL_SUCCESSOR_TIMEOUT`.

        Raises
        ------
        CommitteeUnavailableError
            If no block follows the seal block in time.
        """
        seal_block, drawn = self._node.calls(
            self.address, (("sealBlockOf", (round_,)), ("committeeSeedOf", (round_,)))
        )
        if not seal_block or any(bytes(drawn)):
            return  # the contract names a missing seal; a drawn round needs no hash
        asked_to_mine = False
        deadline = time.monotonic() + SEAL_SUCCESSOR_TIMEOUT
        while int(self._node.result("eth_blockNumber", []), 16) <= int(seal_block):
            if not asked_to_mine:
                asked_to_mine = True
                try:
                    self._node.result("evm_mine", [])
                    continue
                except NodeError:
                    pass  # not a dev chain: its next block will come
            if time.monotonic() > deadline:
                raise CommitteeUnavailableError(
                    f"no block after the seal block {int(seal_block)} of round {round_} "
                    f"within {SEAL_SUCCESSOR_TIMEOUT:.0f} s"
                )
            time.sleep(0.5)

    def _transact(self, name: str, *args: Any) -> tuple[dict, TxInfo]:
        """Send a transaction calling ``name`` (or deploying) with ``args``."""
        data = self._abi.call_data(name, args)
        return self._transactions.send(name, data, self.address)

    def _view(self, name: str, *args: Any) -> Any:
        """Return the value of view ``name`` (one bare ``eth_call``, see :meth:`Node.call`)."""
        return self._node.call(self.address, name, args)


def open_run(  # noqa: PLR0913 - deploy's arguments plus the roster
    w3: Web3,
    sender: LocalAccount,
    run_id: bytes,
    params: RunParams,
    roster: Mapping[str, bytes],
    gas_limit: int | None = None,
    retry: RetryPolicy | None = None,
    committee_size: int | None = None,
) -> tuple[CandidateSelection, list[TxInfo]]:
    """Deploy, register ``roster`` and open a run; return its client and the txs.

    The three steps of opening a run, in order: :meth:`CandidateSelection.deploy`,
    :meth:`~CandidateSelection.register` and :meth:`~CandidateSelection.open`.

    Parameters
    ----------
    roster : Mapping[str, bytes]
        Participant address -> its ``Join(run_id, address)`` signature
        (:func:`~seccl_flwr.protocol.eip712.sign_join`), in registration order.
    committee_size : int | None
        The committee size ``k`` to open with, overriding ``params.committee_size``
        (``None``, default: keep it; 0 is full cross-evaluation).

    Raises
    ------
    ContractRevertError
        If the contract refuses a participant (e.g. ``InvalidJoinSignature``) or
        the parameters at opening (e.g. ``M`` or the quorum above ``n``).
    """
    if committee_size is not None:
        params = replace(params, committee_size=committee_size)
    csc, deployed = CandidateSelection.deploy(w3, sender, run_id, params, gas_limit, retry)
    registered = csc.register(list(roster), list(roster.values()))
    return csc, [deployed, *registered, csc.open()]


def _paired_batches(
    function: str,
    first: tuple[str, Sequence[Any]],
    second: tuple[str, Sequence[Any]],
    batch_size: Callable[[], int],
) -> list[tuple[list, list]]:
    """Return two parallel lists cut into the same batches of ``batch_size()`` entries.

    ``first`` and ``second`` are (what the list holds, the list); ``batch_size`` is
    called once the lengths are checked.

    Raises
    ------
    ConfigurationError
        If the lists differ in length, naming ``function`` and both lists.
    """
    (first_name, firsts), (second_name, seconds) = first, second
    if len(firsts) != len(seconds):
        raise ConfigurationError(
            f"{function}: {len(firsts)} {first_name} but {len(seconds)} {second_name}"
        )
    size = batch_size()
    return list(zip(gas.batches(list(firsts), size), gas.batches(list(seconds), size), strict=True))


@dataclass(frozen=True)
class _DeployedRun:
    """What a deployed run holds that never changes, read once on attaching."""

    chain_id: int
    run_id: bytes
    owner: str
    params: RunParams
    opening_block: int
    participants: list[str] | None  # None until the run is open


def _read_deployed_run(node: Node, address: str) -> _DeployedRun:
    """Check the code at ``address``; return its run's fixed state, read in one round trip.

    Raises
    ------
    NoContractError
        If there is no code at ``address``.
    ContractCodeMismatchError
        If the code is not the packaged artifact's runtime code.
    """
    calls = [("eth_getCode", [address, "latest"]), ("eth_chainId", [])]
    calls += [node.call_request(address, name, ()) for name in _FIXED_VIEWS]
    responses = node.responses(calls, "attach")
    code = hex_bytes(node.checked(responses[0], "eth_getCode", None))
    if not code:
        raise NoContractError(f"no contract code at {address}")
    expected = bytes.fromhex(load_artifact()["deployedBytecode"].removeprefix("0x"))
    if code != expected:
        raise ContractCodeMismatchError(
            f"code at {address} ({len(code)} bytes) is not the CandidateSelection "
            f"artifact's runtime code ({len(expected)} bytes)"
        )
    # the views are decoded only now: at another address they mean nothing
    run_id, owner, params, opening_block, is_open, participants = (
        node.abi.decode_result(name, node.checked(response, "eth_call", name))
        for name, response in zip(_FIXED_VIEWS, responses[2:], strict=True)
    )
    return _DeployedRun(
        chain_id=int(node.checked(responses[1], "eth_chainId", None), 16),
        run_id=bytes(run_id),
        owner=str(owner),
        params=RunParams.from_tuple(params),
        opening_block=int(opening_block),
        participants=list(participants) if is_open else None,
    )

"""The SecCL strategy: Flower's Message-API strategy with on-chain candidate selection.

One server round of :class:`SecCL`:

1. **train** - sampled nodes verify the global model against its anchor, train, and
   return the top ``share_fraction`` changes, signed.
2. **anchor updates** - the server checks every update's form and signature and
   anchors all digests in one transaction.
3. **cross-evaluate** - every author receives the others' updates, checks each
   against the chain and its author's signature, scores the verified ones (macro F1
   on its validation split) and returns a signed score vector.
4. **elect** - the server relays the signed ballots to the contract, which checks
   the signatures and runs the truncated Borda election.
5. **aggregate** - new global = old global + merge of the candidates' sparse
   changes; its digest is anchored, so clients can check it next round.
6. **evaluate** - federated evaluation of the new model; signed metrics anchored.

The server is not trusted: what it could falsify is checked by the clients or the
contract (see README, "Trust model"). Subclasses that simulate a lying server
override the ``relay_*`` hooks (see :mod:`seccl_flwr.attacks`).
"""

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from logging import INFO, WARNING
from urllib.parse import urlparse

import numpy as np
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords, sample_nodes

from .chain.connection import EMBEDDED, connect, embedded_web3, ensure_funded
from .chain.csc import CandidateSelection, SignedBallot, TxInfo
from .chain.rpc_server import LoopbackRPCServer
from .client import CROSS_EVALUATE, REGISTER
from .errors import (
    BallotSignatureError,
    MalformedMessageError,
    NotEnoughNodesError,
    UntrustedContractError,
    VerificationError,
)
from .messages import (
    SECCL_KEY,
    arrays_of,
    message_digest,
    record_of,
    typed_field,
    typed_list_field,
    verify_message,
)
from .protocol.eip712 import (
    MAX_SCORE,
    Kind,
    SignatureError,
    ballot_hash,
    verify_digest,
)
from .protocol.encoding import EncodingError, metrics_to_arrays
from .protocol.params import num_candidates
from .protocol.sparse import (
    ModelLayout,
    SparseUpdate,
    SparseUpdateError,
    aggregate,
    budget,
    entry_limit,
)
from .resume import ResumePoint, resume_point
from .store import MessageStore, StoredMessage, open_store

PHASES = ("train", "anchor", "cross_evaluate", "elect", "aggregate", "evaluate")


@dataclass
class RoundRecord:
    """What happened in one SecCL round.

    Attributes
    ----------
    round : int
        Server round, from 1.
    authors : list[str]
        Addresses whose update was verified and anchored.
    candidates : list[str]
        Elected candidates, best first (the only updates aggregated).
    totals : dict[str, int]
        Borda total of every author.
    transactions : dict[str, list[str]]
        Transaction hashes per phase.
    gas : dict[str, int]
        Gas used per phase.
    seconds : dict[str, float]
        Wall time per phase.
    chain_seconds : float
        Server time spent in chain calls, hashing and signature checks.
    dropped : dict[str, str]
        Node (address or node id) -> why its message of this round was not used.
    rejections : list[str]
        Mismatches that honest evaluators reported (named errors).
    train_metrics, evaluate_metrics : dict[str, float]
        Aggregated client metrics.
    """

    round: int
    authors: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    transactions: dict[str, list[str]] = field(default_factory=dict)
    gas: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    chain_seconds: float = 0.0
    dropped: dict[str, str] = field(default_factory=dict)
    rejections: list[str] = field(default_factory=list)
    train_metrics: dict[str, float] = field(default_factory=dict)
    evaluate_metrics: dict[str, float] = field(default_factory=dict)

    def record_tx(self, phase: str, info: TxInfo) -> None:
        """Add a mined transaction to the round's accounts."""
        self.transactions.setdefault(phase, []).append(info.tx_hash)
        self.gas[phase] = self.gas.get(phase, 0) + info.gas_used


@dataclass
class SecCLResult(Result):
    """Flower's ``Result`` plus SecCL's per-round records and the run's identity."""

    chain_id: int = 0
    contract: str = ""
    run_id: str = ""
    participants: dict[int, str] = field(default_factory=dict)
    rounds: list[RoundRecord] = field(default_factory=list)


@dataclass
class _Update:
    author: str
    node_id: int | None
    update: SparseUpdate
    signature: bytes
    digest: bytes


def _checked_metrics(
    server_round: int, sender: str, content: RecordDict, weighted_by_key: str
) -> MetricRecord:
    """Return a reply's only MetricRecord, ``metrics``, once every value is a finite number.

    Raises
    ------
    MalformedMessageError
        If the reply holds another MetricRecord layout, a list, NaN or infinite value,
        or a missing or negative weight ``weighted_by_key``.
    """
    records = content.metric_records
    if list(records) != ["metrics"]:
        raise MalformedMessageError(
            server_round, sender, f"expected one MetricRecord 'metrics', got {list(records)}"
        )
    metrics = records["metrics"]
    for key, value in metrics.items():
        if isinstance(value, list) or not math.isfinite(value):
            raise MalformedMessageError(
                server_round, sender, f"metric {key!r} must be a finite number, got {value!r:.80}"
            )
    if metrics.get(weighted_by_key, -1) < 0:
        raise MalformedMessageError(
            server_round, sender, f"metric {weighted_by_key!r} missing or negative"
        )
    return metrics


def _aggregate_metrics(contents: list[RecordDict], weighted_by_key: str) -> MetricRecord | None:
    """Flower's weighted metric average; ``None`` without replies or total weight."""
    if not contents or sum(c["metrics"][weighted_by_key] for c in contents) <= 0:
        return None
    return aggregate_metricrecords(contents, weighted_by_key)


class SecCL(Strategy):
    """SecCL: federated learning whose aggregation is chosen by an on-chain vote.

    Parameters
    ----------
    candidate_fraction : float (default: 0.2)
        λ; ``M = ceil(λ·n)`` candidates are elected per round among ``n`` registered
        participants.
    share_fraction : float (default: 0.1)
        Fraction of parameter changes (largest magnitudes) a client shares.
    fraction_train : float (default: 1.0)
        Fraction of registered nodes sampled for training each round.
    fraction_evaluate : float (default: 1.0)
        Fraction of registered nodes sampled for federated evaluation.
    min_train_nodes : int (default: 2)
        Minimum valid updates (and ballots) a round needs to go on.
    min_evaluate_nodes : int (default: 2)
        Minimum nodes sampled for evaluation.
    min_available_nodes : int (default: 2)
        Nodes to wait for before registration.
    chain : str (default: "embedded")
        ``"embedded"`` for an in-process EVM, or a JSON-RPC URL (anvil, geth, ...).
    chain_url : str | None (default: None)
        With the embedded chain: the loopback ``http://127.0.0.1:PORT`` to serve it
        on, so ClientApps in other processes can read it (the same value they find
        in ``seccl-chain-url``). Ignored for a URL chain.
    contract : str | None (default: None)
        Attach to this already deployed contract instead of deploying a new one.
    server_key : str | bytes | None (default: None)
        Private key of the server's account, which owns the run and pays gas. If
        ``None``, a key derived from ``run_label`` is used and funded by the dev
        chain (embedded or anvil); pass a real key for any other chain.
    run_label : str (default: "seccl")
        Human-readable run name; the run id is its keccak-256.
    per_tensor : bool (default: False)
        Sparsify per tensor instead of with one global budget.
    weighted_by_key : str (default: "num-examples")
        Metric key used to weight aggregated metrics.
    store : MessageStore | str | os.PathLike | None (default: None)
        Where to publish every message the run anchors (verified updates with their
        signatures, submitted ballots, global models from round 0, signed
        evaluation metrics), each stored before the transaction that anchors it. A
        path is a :class:`~seccl_flwr.store.DirectoryStore` (the run directory).
        ``seccl-flwr audit`` re-verifies a run from the chain and this store.
    gas_limit : int | None (default: None)
        Gas limit of every server transaction. ``None`` asks the node for an
        estimate of each; an integer skips the estimate (after a revert-checking
        ``eth_call``), which saves the node's binary search, about 0.1 s per round
        on anvil at 20 clients. Use it on a private chain whose server account can
        cover ``gas_limit`` x gas price; it must exceed the largest transaction
        (a ballot batch of 25 at ``n`` = 100 needs about 13 M gas).
    """

    def __init__(  # noqa: PLR0913 - mirrors Flower's strategies
        self,
        candidate_fraction: float = 0.2,
        share_fraction: float = 0.1,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        chain: str = EMBEDDED,
        chain_url: str | None = None,
        contract: str | None = None,
        server_key: str | bytes | None = None,
        run_label: str = "seccl",
        per_tensor: bool = False,
        weighted_by_key: str = "num-examples",
        store: MessageStore | str | os.PathLike | None = None,
        gas_limit: int | None = None,
    ) -> None:
        if not 0.0 < candidate_fraction <= 1.0:
            raise ValueError(f"candidate_fraction must lie in (0, 1], got {candidate_fraction}")
        budget(1, share_fraction)  # validates the share fraction
        for name, value in (
            ("fraction_train", fraction_train),
            ("fraction_evaluate", fraction_evaluate),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if gas_limit is not None and gas_limit <= 0:
            raise ValueError(f"gas_limit must be positive, got {gas_limit}")
        self.candidate_fraction = candidate_fraction
        self.share_fraction = share_fraction
        self.fraction_train = fraction_train
        self.fraction_evaluate = fraction_evaluate
        self.min_train_nodes = min_train_nodes
        self.min_evaluate_nodes = min_evaluate_nodes
        self.min_available_nodes = min_available_nodes
        self.chain = chain
        self.chain_url = chain_url
        self.contract_address = contract
        self.server_key = server_key
        self.run_label = run_label
        self.per_tensor = per_tensor
        self.weighted_by_key = weighted_by_key
        self.store = open_store(store)
        self.gas_limit = gas_limit
        self.csc: CandidateSelection | None = None
        self.participants: dict[int, str] = {}
        self._rpc_server: LoopbackRPCServer | None = None
        self._record: RoundRecord | None = None
        self._updates: dict[str, _Update] = {}

    # ----------------------------------------------------------------- summary
    def summary(self) -> None:
        """Log the strategy's settings, in the style of Flower's strategies."""
        log(INFO, "\t├──> SecCL:")
        log(INFO, "\t│\t├── Candidate fraction λ: %.2f", self.candidate_fraction)
        log(
            INFO,
            "\t│\t├── Share fraction: %.3f%s",
            self.share_fraction,
            " (per tensor)" if self.per_tensor else "",
        )
        log(
            INFO,
            "\t│\t└── Chain: %s%s (gas limit: %s)",
            self.chain,
            f" served at {self.chain_url}" if self.chain == EMBEDDED and self.chain_url else "",
            "estimated" if self.gas_limit is None else f"{self.gas_limit:,}",
        )
        log(INFO, "\t└──> Sampling:")
        log(
            INFO,
            "\t\t├── Fraction: train (%.2f) | evaluate (%.2f)",
            self.fraction_train,
            self.fraction_evaluate,
        )
        log(
            INFO,
            "\t\t├── Minimum nodes: train (%d) | evaluate (%d)",
            self.min_train_nodes,
            self.min_evaluate_nodes,
        )
        log(INFO, "\t\t└── Minimum available nodes: %d", self.min_available_nodes)

    # -------------------------------------------------------------- chain set-up
    def _server_account(self) -> LocalAccount:
        key = self.server_key or keccak(text=f"seccl-server:{self.run_label}")
        return Account.from_key(key)

    def _open_chain(self):
        if self.chain == EMBEDDED:
            w3 = embedded_web3()
            if self.chain_url:
                parsed = urlparse(self.chain_url)
                if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
                    raise ValueError(
                        f"the embedded chain is served on loopback only, got {self.chain_url}"
                    )
                self._rpc_server = LoopbackRPCServer(w3, "127.0.0.1", parsed.port or 0).start()
                log(INFO, "SecCL: embedded chain served at %s", self._rpc_server.url)
            return w3
        return connect(self.chain)

    def close(self) -> None:
        """Stop serving the embedded chain (if this strategy serves it)."""
        if self._rpc_server is not None:
            self._rpc_server.stop()
            self._rpc_server = None

    def register(self, grid: Grid, timeout: float) -> dict[int, str]:
        """Ask every connected node for its address; return node id -> address."""
        sample_nodes(grid, self.min_available_nodes, self.min_available_nodes)  # waits
        node_ids = list(grid.get_node_ids())
        messages = [
            Message(
                RecordDict({SECCL_KEY: ConfigRecord({"run": self.run_label})}),
                message_type=REGISTER,
                dst_node_id=node_id,
            )
            for node_id in node_ids
        ]
        participants: dict[int, str] = {}
        for reply in grid.send_and_receive(messages, timeout=timeout):
            node_id = reply.metadata.src_node_id
            if reply.has_error():
                log(
                    WARNING,
                    "SecCL: node %s failed to register: %s",
                    node_id,
                    reply.error.reason,
                )
                continue
            address = str(reply.content[SECCL_KEY]["address"])
            if address in participants.values():
                log(
                    WARNING,
                    "SecCL: node %s repeats address %s; ignored",
                    node_id,
                    address,
                )
                continue
            participants[node_id] = address
        if len(participants) < self.min_available_nodes:
            raise NotEnoughNodesError(
                f"{len(participants)} nodes registered, fewer than min_available_nodes="
                f"{self.min_available_nodes}"
            )
        return dict(sorted(participants.items()))

    # ------------------------------------------------------------ Strategy API
    def _seccl_config(self, server_round: int, **extra) -> ConfigRecord:
        assert self.csc is not None
        return ConfigRecord(
            {
                "round": server_round,
                "contract": self.csc.address,
                "share-fraction": self.share_fraction,
                "per-tensor": self.per_tensor,
                **extra,
            }
        )

    def _sample(self, grid: Grid, fraction: float, minimum: int) -> list[int]:
        registered = [n for n in grid.get_node_ids() if n in self.participants]
        size = max(int(len(registered) * fraction), minimum)
        size = min(size, len(registered))
        # sample positions, not ids: Flower's node ids can exceed int64 and numpy
        # would turn a mixed array of them into floats
        chosen = np.random.default_rng().choice(len(registered), size=size, replace=False)
        return sorted(registered[int(i)] for i in chosen)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send the global model and the SecCL settings to the sampled nodes."""
        if self.fraction_train == 0.0:
            return []
        config["server-round"] = server_round
        seccl = self._seccl_config(server_round)
        return [
            Message(
                RecordDict({"arrays": arrays, "config": config, SECCL_KEY: seccl}),
                message_type="train",
                dst_node_id=node_id,
            )
            for node_id in self._sample(grid, self.fraction_train, self.min_train_nodes)
        ]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Verify the updates (form, author, signature) and keep them for the vote.

        Returns no arrays: SecCL aggregates only after the on-chain election.
        """
        record, layout = self._record, self._layout
        self._updates = {}
        contents = []
        for reply in replies:
            node = reply.metadata.src_node_id
            try:
                item = self._verify_update(server_round, node, reply, layout)
                if item.author in self._updates:
                    raise MalformedMessageError(server_round, item.author, "second update")
            except (VerificationError, KeyError, TypeError, ValueError) as exc:
                record.dropped[f"train:{self.participants.get(node, node)}"] = str(exc)
                log(WARNING, "SecCL: update of node %s dropped: %s", node, exc)
                continue
            self._updates[item.author] = item
            contents.append(reply.content)
        return None, _aggregate_metrics(contents, self.weighted_by_key)

    @staticmethod
    def _seccl_fields(
        server_round: int, sender: str, reply: Message, claim: str | None = None
    ) -> ConfigRecord:
        """Return a reply's SecCL fields; raise if it is an error or claims another sender.

        Parameters
        ----------
        server_round : int
            Round of the reply (for the error message).
        sender : str
            Registered address of the node that replied.
        reply : Message
            The reply.
        claim : str | None
            Field that must name ``sender`` (e.g. ``"author"``), if any.
        """
        if reply.has_error():
            raise VerificationError(server_round, sender, f"node error: {reply.error.reason}")
        fields = reply.content.config_records.get(SECCL_KEY)
        if fields is None:
            raise MalformedMessageError(server_round, sender, f"no {SECCL_KEY!r} ConfigRecord")
        if claim is not None and typed_field(server_round, sender, fields, claim, str) != sender:
            raise MalformedMessageError(server_round, sender, f"claims to be {fields[claim]}")
        return fields

    def _verify_update(
        self, server_round: int, node: int, reply: Message, layout: ModelLayout
    ) -> _Update:
        author = self.participants.get(node)
        if author is None and not reply.has_error():
            raise MalformedMessageError(server_round, str(node), "unknown node")
        fields = self._seccl_fields(server_round, author or str(node), reply, claim="author")
        _checked_metrics(server_round, author, reply.content, self.weighted_by_key)
        if "update" not in reply.content.array_records:
            raise MalformedMessageError(server_round, author, "no 'update' ArrayRecord")
        try:
            update = SparseUpdate.from_arrays(
                arrays_of(reply.content.array_records["update"]),
                layout.size,
                entry_limit(layout, self.share_fraction, self.per_tensor),
            )
        except (EncodingError, SparseUpdateError) as exc:
            raise MalformedMessageError(server_round, author, str(exc)) from exc
        signature = typed_field(server_round, author, fields, "signature", bytes)
        with self._chain_timer():
            try:
                digest = verify_message(
                    self.csc.binding,
                    server_round,
                    Kind.UPDATE,
                    author,
                    update.to_arrays(),
                    signature,
                )
            except SignatureError as exc:
                raise MalformedMessageError(server_round, author, str(exc)) from exc
        return _Update(author, node, update, signature, digest)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send the new global model to the nodes sampled for evaluation."""
        if self.fraction_evaluate == 0.0:
            return []
        config["server-round"] = server_round
        seccl = self._seccl_config(server_round)
        return [
            Message(
                RecordDict({"arrays": arrays, "config": config, SECCL_KEY: seccl}),
                message_type="evaluate",
                dst_node_id=node_id,
            )
            for node_id in self._sample(grid, self.fraction_evaluate, self.min_evaluate_nodes)
        ]

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Verify the signed metrics, anchor their digests, average them."""
        record = self._record
        authors, digests, contents = [], [], []
        for reply in replies:
            node = reply.metadata.src_node_id
            author = self.participants.get(node, str(node))
            try:
                if node not in self.participants:
                    raise MalformedMessageError(server_round, author, "unknown node")
                if author in authors:
                    raise MalformedMessageError(server_round, author, "second evaluation")
                fields = self._seccl_fields(server_round, author, reply)
                metrics = dict(
                    _checked_metrics(server_round, author, reply.content, self.weighted_by_key)
                )
                signature = typed_field(server_round, author, fields, "signature", bytes)
                with self._chain_timer():
                    try:
                        digest = verify_message(
                            self.csc.binding,
                            server_round,
                            Kind.EVALUATION,
                            author,
                            metrics_to_arrays(metrics),
                            signature,
                        )
                    except SignatureError as exc:
                        raise MalformedMessageError(server_round, author, str(exc)) from exc
            except (
                VerificationError,
                SignatureError,
                KeyError,
                TypeError,
                ValueError,
            ) as exc:
                record.dropped[f"evaluate:{author}"] = str(exc)
                continue
            authors.append(author)
            digests.append(digest)
            contents.append(reply.content)
            self._publish(
                server_round,
                Kind.EVALUATION,
                author,
                metrics_to_arrays(metrics),
                signature=signature,
            )
        if authors:
            with self._chain_timer():
                record.record_tx(
                    "evaluate",
                    self.csc.anchor(server_round, Kind.EVALUATION, authors, digests),
                )
        return _aggregate_metrics(contents, self.weighted_by_key)

    # ------------------------------------------------------- lying-server hooks
    def relay_updates(
        self, server_round: int, updates: Mapping[str, _Update]
    ) -> dict[str, _Update]:
        """Return the updates forwarded for cross-evaluation (honest: unchanged)."""
        return dict(updates)

    def relay_ballots(self, server_round: int, ballots: list[SignedBallot]) -> list[SignedBallot]:
        """Return the ballots submitted to the contract (honest: unchanged)."""
        return ballots

    def relay_candidates(self, server_round: int, candidates: list[str]) -> list[str]:
        """Return whose updates are aggregated (honest: exactly the candidates)."""
        return candidates

    def relay_global(self, server_round: int, arrays: ArrayRecord) -> ArrayRecord:
        """Return the global model sent to clients (honest: the anchored one)."""
        return arrays

    # ------------------------------------------------------- published messages
    def _publish(
        self,
        server_round: int,
        kind: Kind,
        author: str,
        payload: Mapping[str, np.ndarray],
        signature: bytes = b"",
    ) -> None:
        """Store a message about to be anchored, if the strategy has a store."""
        if self.store is not None:
            self.store.put(
                StoredMessage(self.csc.binding, server_round, kind, author, payload, signature)
            )

    def _publish_ballot(self, server_round: int, ballot: SignedBallot) -> None:
        """Store a ballot about to be submitted, if the strategy has a store."""
        if self.store is not None:
            self.store.put(
                StoredMessage(
                    self.csc.binding,
                    server_round,
                    Kind.BALLOT,
                    ballot.evaluator,
                    signature=ballot.signature,
                    peers=ballot.peers,
                    scores=ballot.scores,
                )
            )

    # -------------------------------------------------------------- the round
    @contextmanager
    def _chain_timer(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._record is not None:
                self._record.chain_seconds += time.perf_counter() - start

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._record.seconds[name] = time.perf_counter() - start

    def _cross_evaluate(
        self,
        grid: Grid,
        server_round: int,
        arrays: ArrayRecord,
        anchor_tx: str,
        timeout: float,
        skip: set[str] | frozenset[str] = frozenset(),
    ) -> list[SignedBallot]:
        """Send every author the others' updates; return the verified ballots.

        Authors in ``skip`` (their ballot is already on chain) and authors whose
        node is not connected are not asked.
        """
        record = self._record
        forwarded = self.relay_updates(server_round, self._updates)
        authors = list(forwarded)
        content: dict = {"arrays": arrays}
        for author, item in forwarded.items():
            content[f"update.{author}"] = record_of(item.update.to_arrays())
        seccl = self._seccl_config(
            server_round,
            authors=authors,
            signatures=[forwarded[a].signature for a in authors],
            **{"anchor-tx": anchor_tx},
        )
        content[SECCL_KEY] = seccl
        evaluators = [
            item.node_id
            for author, item in self._updates.items()
            if author not in skip and item.node_id is not None
        ]
        messages = [
            Message(RecordDict(content), message_type=CROSS_EVALUATE, dst_node_id=node_id)
            for node_id in evaluators
        ]
        ballots = []
        for reply in self._send(grid, messages, timeout, "ballot"):
            node = reply.metadata.src_node_id
            evaluator = self.participants.get(node, str(node))
            try:
                if any(b.evaluator == evaluator for b in ballots):
                    raise MalformedMessageError(server_round, evaluator, "second ballot")
                ballots.append(self._verify_ballot(server_round, evaluator, reply))
            except (
                VerificationError,
                SignatureError,
                KeyError,
                TypeError,
                ValueError,
            ) as exc:
                record.dropped[f"ballot:{evaluator}"] = str(exc)
                log(WARNING, "SecCL: ballot of %s dropped: %s", evaluator, exc)
                continue
            record.rejections.extend(str(r) for r in reply.content[SECCL_KEY].get("rejected", []))
        return ballots

    def _verify_ballot(self, server_round: int, evaluator: str, reply: Message) -> SignedBallot:
        if evaluator not in self.participants.values():
            raise MalformedMessageError(server_round, evaluator, "unknown node")
        fields = self._seccl_fields(server_round, evaluator, reply, claim="evaluator")
        peers = typed_list_field(server_round, evaluator, fields, "peers", str)
        scores = typed_list_field(server_round, evaluator, fields, "scores", int)
        typed_list_field(server_round, evaluator, fields, "rejected", str)
        if len(peers) != len(scores) or len(set(peers)) != len(peers):
            raise MalformedMessageError(server_round, evaluator, "peers and scores do not match")
        if evaluator in peers or not set(peers) <= set(self._updates):
            raise MalformedMessageError(server_round, evaluator, "scores itself or a non-author")
        if any(not 0 <= s <= MAX_SCORE for s in scores):
            raise MalformedMessageError(
                server_round, evaluator, f"score out of range [0, {MAX_SCORE}]"
            )
        signature = typed_field(server_round, evaluator, fields, "signature", bytes)
        with self._chain_timer():
            try:
                verify_digest(
                    ballot_hash(self.csc.binding, server_round, evaluator, peers, scores),
                    signature,
                    evaluator,
                )
            except SignatureError as exc:
                raise BallotSignatureError(server_round, evaluator, str(exc)) from exc
        return SignedBallot(evaluator, tuple(peers), tuple(scores), signature)

    def _aggregate(
        self, server_round: int, arrays: ArrayRecord, candidates: list[str]
    ) -> ArrayRecord:
        layout = self._layout
        current = arrays_of(arrays)
        chosen = self.relay_candidates(server_round, candidates)
        new = aggregate(layout, current, [self._updates[a].update for a in chosen])
        owner = self.csc.owner()
        self._publish(server_round, Kind.GLOBAL_MODEL, owner, new)
        with self._chain_timer():
            digest = message_digest(self.csc.binding, server_round, Kind.GLOBAL_MODEL, owner, new)
            self._record.record_tx(
                "aggregate",
                self.csc.anchor(server_round, Kind.GLOBAL_MODEL, [owner], [digest]),
            )
        return record_of(new)

    def start(  # noqa: PLR0913, PLR0915 - Flower's signature
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
        on_round: Callable[[RoundRecord], None] | None = None,
    ) -> SecCLResult:
        """Run ``num_rounds`` SecCL rounds; see the module docstring.

        Parameters
        ----------
        grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config, evaluate_fn
            As in Flower's ``Strategy.start``; ``timeout`` applies to each phase.
        on_round : Callable[[RoundRecord], None] | None
            Called after each round (progress output).

        Returns
        -------
        SecCLResult
            Flower's result plus one :class:`RoundRecord` per round.

        Raises
        ------
        NotEnoughNodesError
            If fewer than ``min_train_nodes`` valid updates or ballots arrive.
        """
        log(INFO, "Starting SecCL strategy:")
        self.summary()
        train_config = ConfigRecord() if train_config is None else train_config
        evaluate_config = ConfigRecord() if evaluate_config is None else evaluate_config
        w3 = self._open_chain()
        try:
            return self._run(
                w3,
                grid,
                initial_arrays,
                num_rounds,
                timeout,
                train_config,
                evaluate_config,
                evaluate_fn,
                on_round,
            )
        finally:
            self.close()

    def _run(
        self,
        w3,
        grid,
        initial_arrays,
        num_rounds,
        timeout,
        train_config,
        evaluate_config,
        evaluate_fn,
        on_round,
    ) -> SecCLResult:
        server = self._server_account()
        ensure_funded(w3, server)
        self.participants = self.register(grid, timeout)
        addresses = list(self.participants.values())
        run_id = keccak(text=self.run_label)
        resume = ResumePoint()
        if self.contract_address:
            self.csc = CandidateSelection.attach(
                w3, self.contract_address, server, gas_limit=self.gas_limit
            )
            resume = self._attach_run(server.address)
        else:
            self.csc, _ = CandidateSelection.deploy(
                w3,
                server,
                run_id,
                addresses,
                num_candidates(self.candidate_fraction, len(addresses)),
                gas_limit=self.gas_limit,
            )
        log(
            INFO,
            "SecCL: run %s on chain %s, contract %s, %d participants, M=%d",
            self.run_label,
            self.csc.binding.chain_id,
            self.csc.address,
            len(addresses),
            self.csc.num_candidates(),
        )
        result = SecCLResult(
            chain_id=self.csc.binding.chain_id,
            contract=self.csc.address,
            run_id="0x" + run_id.hex(),
            participants=dict(self.participants),
        )
        arrays = initial_arrays
        owner = server.address
        if resume.fresh:
            self._publish(0, Kind.GLOBAL_MODEL, owner, arrays_of(arrays))
            self.csc.anchor(
                0,
                Kind.GLOBAL_MODEL,
                [owner],
                [message_digest(self.csc.binding, 0, Kind.GLOBAL_MODEL, owner, arrays_of(arrays))],
            )
        else:
            arrays = result.arrays = record_of(resume.global_arrays)
        self._layout = ModelLayout.of(arrays_of(arrays))
        first_round = resume.last_completed + 1 if not resume.fresh else 1
        if evaluate_fn:
            res = evaluate_fn(first_round - 1, arrays)
            if res is not None:
                result.evaluate_metrics_serverapp[first_round - 1] = res
        for server_round in range(first_round, num_rounds + 1):
            log(INFO, "")
            log(INFO, "[SecCL ROUND %s/%s]", server_round, num_rounds)
            self._record = RoundRecord(server_round)
            sent = self.relay_global(server_round, arrays)
            if server_round == first_round and resume.open_updates:
                # the run stopped inside this round: go on from what the chain holds
                self._resume_round(server_round, resume)
                anchor_tx, voted, elected = "", resume.voted, resume.elected
            else:
                anchor_tx = self._train_and_anchor(
                    grid, server_round, sent, train_config, timeout, result
                )
                voted, elected = set(), False
            if elected:
                self._read_election(server_round)
            else:
                with self._phase("cross_evaluate"):
                    ballots = self._cross_evaluate(
                        grid, server_round, sent, anchor_tx, timeout, skip=voted
                    )
                self._require(len(ballots) + len(voted), "valid ballots", server_round)
                self._elect(server_round, ballots)
            arrays = self._finish_round(
                grid, server_round, arrays, timeout, evaluate_config, evaluate_fn, result
            )
            self._close_round(result, on_round)
        return result

    def _train_and_anchor(  # noqa: PLR0913
        self,
        grid: Grid,
        server_round: int,
        sent: ArrayRecord,
        train_config: ConfigRecord,
        timeout: float,
        result: SecCLResult,
    ) -> str:
        """Train, verify and publish the updates, anchor them; return the anchor tx."""
        record = self._record
        with self._phase("train"):
            replies = self._send(
                grid,
                self.configure_train(server_round, sent, train_config, grid),
                timeout,
                "train",
            )
            _, train_metrics = self.aggregate_train(server_round, replies)
        self._require(len(self._updates), "valid updates", server_round)
        if train_metrics is not None:
            result.train_metrics_clientapp[server_round] = train_metrics
            record.train_metrics = dict(train_metrics)
        for item in self._updates.values():
            self._publish(
                server_round,
                Kind.UPDATE,
                item.author,
                item.update.to_arrays(),
                signature=item.signature,
            )
        with self._phase("anchor"), self._chain_timer():
            authors = list(self._updates)
            info = self.csc.anchor(
                server_round,
                Kind.UPDATE,
                authors,
                [self._updates[a].digest for a in authors],
            )
            record.record_tx("anchor", info)
            record.authors = authors
        return info.tx_hash

    def _elect(self, server_round: int, ballots: list[SignedBallot]) -> None:
        """Publish and submit the ballots, close the vote, read the candidates."""
        record = self._record
        with self._phase("elect"), self._chain_timer():
            submitted = self.relay_ballots(server_round, ballots)
            for ballot in submitted:
                self._publish_ballot(server_round, ballot)
            for tx in self.csc.submit_ballots(server_round, submitted):
                record.record_tx("elect", tx)
            record.record_tx("elect", self.csc.elect(server_round))
            self._read_election(server_round)

    def _read_election(self, server_round: int) -> None:
        """Read the round's candidates and Borda totals from the contract."""
        self._record.candidates = self.csc.candidates_of(server_round)
        self._record.totals = self.csc.totals_of(server_round)

    def _finish_round(  # noqa: PLR0913
        self, grid, server_round, arrays, timeout, evaluate_config, evaluate_fn, result
    ) -> ArrayRecord:
        """Aggregate the candidates, anchor the new model, evaluate it; return it."""
        record = self._record
        with self._phase("aggregate"):
            arrays = self._aggregate(server_round, arrays, record.candidates)
            result.arrays = arrays
        with self._phase("evaluate"):
            sent = self.relay_global(server_round, arrays)
            replies = self._send(
                grid,
                self.configure_evaluate(server_round, sent, evaluate_config, grid),
                timeout,
                "evaluate",
            )
            metrics = self.aggregate_evaluate(server_round, replies)
            if metrics is not None:
                result.evaluate_metrics_clientapp[server_round] = metrics
                record.evaluate_metrics = dict(metrics)
            if evaluate_fn:
                res = evaluate_fn(server_round, arrays)
                if res is not None:
                    result.evaluate_metrics_serverapp[server_round] = res
        return arrays

    def _close_round(
        self, result: SecCLResult, on_round: Callable[[RoundRecord], None] | None
    ) -> None:
        record = self._record
        log(
            INFO,
            "SecCL round %d: candidates %s, gas %d, %.2fs",
            record.round,
            [self._short(a) for a in record.candidates],
            sum(record.gas.values()),
            sum(record.seconds.values()),
        )
        result.rounds.append(record)
        if on_round is not None:
            on_round(record)

    def _attach_run(self, owner: str) -> ResumePoint:
        """Check an attached contract is this server's run; return where it stands."""
        if self.csc.owner() != owner:
            raise UntrustedContractError(
                f"contract {self.csc.address} is owned by {self.csc.owner()}, not by this "
                f"server ({owner})"
            )
        members = set(self.csc.participants())
        for node, address in list(self.participants.items()):
            if address not in members:
                log(WARNING, "SecCL: node %s (%s) is not in the run; ignored", node, address)
                del self.participants[node]
        resume = resume_point(self.csc, self.store, owner)
        if not resume.fresh:
            log(
                INFO,
                "SecCL: resuming run at contract %s after round %d%s",
                self.csc.address,
                resume.last_completed,
                f" ({len(resume.open_updates)} updates of round "
                f"{resume.last_completed + 1} already anchored)"
                if resume.open_updates
                else "",
            )
        return resume

    def _resume_round(self, server_round: int, resume: ResumePoint) -> None:
        """Take the round's updates that are already anchored (from the store)."""
        node_of = {address: node for node, address in self.participants.items()}
        self._updates = {
            author: _Update(
                author,
                node_of.get(author),
                SparseUpdate.from_arrays(message.payload, self._layout.size),
                message.signature,
                message.digest(),
            )
            for author, message in resume.open_updates.items()
        }
        self._record.authors = list(self._updates)

    def _send(self, grid: Grid, messages: Iterable[Message], timeout: float, phase: str) -> list:
        """Send and receive; record every node that did not answer as dropped."""
        messages = list(messages)
        replies = list(grid.send_and_receive(messages, timeout=timeout))
        answered = {reply.metadata.src_node_id for reply in replies}
        for message in messages:
            node = message.metadata.dst_node_id
            if node not in answered:
                address = self.participants.get(node, str(node))
                self._record.dropped[f"{phase}:{address}"] = f"no reply within {timeout}s"
        return replies

    def _require(self, count: int, what: str, server_round: int) -> None:
        if count < self.min_train_nodes:
            raise NotEnoughNodesError(
                f"round {server_round}: {count} {what}, fewer than min_train_nodes="
                f"{self.min_train_nodes}; dropped: {self._record.dropped}"
            )

    @staticmethod
    def _short(address: str) -> str:
        return address[:8]

"""The SecCL strategy: Flower's Message-API strategy with on-chain candidate selection.

One server round of :class:`SecCL`:

1. **train** - sampled nodes verify the global model against its anchor, train, and
   return the top ``share_fraction`` changes, signed.
2. **anchor updates** - the server checks every update's form and signature and
   anchors all digests (in gas-sized batches, :mod:`seccl_flwr.chain.gas`).
3. **cross-evaluate** - every author receives the others' updates, checks that
   they are exactly the round's anchored ones and each against the chain and its
   author's signature, scores them (macro F1 on its validation split) and returns a
   signed score vector, or the named error that stopped it (no partial ballot).
4. **elect** - the server relays the signed ballots to the contract, which checks
   the signatures and, given the run's quorum of ballots, runs the run's election
   rule (truncated Borda, or the median of received scores).
5. **aggregate** - new global = old global + merge of the candidates' sparse
   changes; its digest is anchored, so clients can check it in the evaluate phase.
6. **evaluate** - federated evaluation of the new model; signed metrics anchored.

:meth:`SecCL.start` runs these phases in this order for every round, each a method
that takes the round's :class:`RoundState`. A resumed run starts its open round with
the state the chain already holds (anchored updates, ballots cast, a closed vote), and
the phases that state shows done are skipped. The checks of client replies are the
pure functions of :mod:`seccl_flwr.verify`.

The server is not trusted: what it could falsify is checked by the clients or the
contract (see README, "Trust model"). Subclasses that simulate a lying server
override the ``relay_*`` hooks (see :mod:`seccl_flwr.attacks`).
"""

import io
import os
import pprint
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from logging import INFO
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from flwr.serverapp.strategy.strategy_utils import (
    aggregate_metricrecords,
    log_strategy_start_info,
)

from . import wire
from .audit import audit_command
from .chain.connection import EMBEDDED
from .chain.csc import CandidateSelection, TxInfo
from .chain.rpc_server import LoopbackRPCServer
from .client_checks import run_config_parameters
from .errors import (
    ConfigurationError,
    NotEnoughNodesError,
)
from .identity import CHAIN, CHAIN_URL
from .metering import use_meter
from .protocol.eip712 import Kind
from .protocol.params import (
    DEFAULT_CANDIDATE_FRACTION,
    DEFAULT_SHARE_FRACTION,
    ELECTION_RULES,
    MAX_PARTICIPANTS,
    RunParams,
    checked_quorum,
    election_rule_of,
    num_candidates,
)
from .protocol.signed import SignedMessage, next_global_model
from .protocol.sparse import ModelLayout, budget
from .records import arrays_of, record_of
from .resume import ResumePoint
from .run_setup import RunSettings, open_chain, open_run_on
from .store import DirectoryStore, MessageStore, open_store
from .verify import (
    ReplyRules,
    accept_replies,
    verify_ballot,
    verify_evaluation,
    verify_update,
)

PHASES = ("train", "anchor", "cross_evaluate", "elect", "aggregate", "evaluate")
"""The phases of a round, in the order :meth:`SecCL.start` runs them."""


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
        Standing of every author (Borda total or median score).
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
        Why evaluators refused to vote: the error replies of cross-evaluation (e.g. an
        ``UpdateDigestMismatchError`` naming a tampered update's author). Such a
        ballot is also in ``dropped``.
    ballots : int
        Ballots on chain when the vote closed (0 if this process did not close it).
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
    ballots: int = 0
    train_metrics: dict[str, float] = field(default_factory=dict)
    evaluate_metrics: dict[str, float] = field(default_factory=dict)

    def record_tx(self, phase: str, info: TxInfo) -> None:
        """Add a mined transaction to the round's accounts."""
        self.transactions.setdefault(phase, []).append(info.tx_hash)
        self.gas[phase] = self.gas.get(phase, 0) + info.gas_used


@dataclass(repr=False)
class SecCLResult(Result):
    """Flower's ``Result`` plus SecCL's per-round records and the run's identity.

    ``chain`` is the JSON-RPC URL of the run's chain (``"embedded"`` for the
    in-process one) and ``store`` the directory of its published messages (``""``
    if it has none): with ``contract`` they are what ``seccl-flwr audit`` needs.
    """

    chain_id: int = 0
    contract: str = ""
    run_id: str = ""
    participants: dict[int, str] = field(default_factory=dict)
    rounds: list[RoundRecord] = field(default_factory=list)
    chain: str = ""
    store: str = ""

    def __repr__(self) -> str:
        """Flower's summary of the result, then the run's contract, candidates and gas."""
        candidates = {r.round: r.candidates for r in self.rounds}
        gas = {r.round: sum(r.gas.values()) for r in self.rounds}
        return (
            super().__repr__()
            + "\nSecCL run:\n"
            + f"\tContract {self.contract} on chain {self.chain_id} ({self.chain})\n"
            + f"\tRun id {self.run_id}, {len(self.participants)} participants\n"
            + "\nElected candidates:\n"
            + pprint.pformat(candidates, indent=2)
            + "\n\nGas per round (total "
            + f"{sum(gas.values()):,}):\n"
            + pprint.pformat(gas, indent=2)
            + "\n"
        )

    def audit_hint(self) -> str:
        """Return the command that audits this run, or why it cannot be audited afterwards."""
        if not self.store:
            return "this run published no messages (SecCL(store=...)), so it cannot be audited"
        if self.chain == EMBEDDED:
            return (
                "the embedded chain ends with this process, so the run cannot be audited "
                "afterwards: `seccl-flwr simulate --audit` audits a simulation before it "
                "ends; runs on a JSON-RPC chain (e.g. anvil) can be audited any time"
            )
        return audit_command(self.chain, self.contract, self.store)


@dataclass
class RoundState:
    """What one round carries from phase to phase (see :meth:`SecCL.start`).

    Attributes
    ----------
    rules : ReplyRules
        What the round's replies must satisfy (round, run, participants, layout).
    record : RoundRecord
        What the round did, filled in by its phases.
    arrays : ArrayRecord
        The global model: the previous round's until ``aggregate``, then the new one.
    sent : ArrayRecord
        The global model as sent to the clients for training and cross-evaluation.
    updates : dict[str, SignedMessage]
        The round's verified (then anchored) updates, by author.
    ballots : list[SignedMessage]
        The verified ballots to submit.
    voted : set[str]
        Evaluators whose ballot the contract already holds (a resumed round).
    done : frozenset[str]
        Phases the chain shows done (a resumed round): they are skipped.
    """

    rules: ReplyRules
    record: RoundRecord
    arrays: ArrayRecord
    sent: ArrayRecord
    updates: dict[str, SignedMessage] = field(default_factory=dict)
    ballots: list[SignedMessage] = field(default_factory=list)
    voted: set[str] = field(default_factory=set)
    done: frozenset[str] = frozenset()

    @classmethod
    def begin(
        cls, rules: ReplyRules, arrays: ArrayRecord, sent: ArrayRecord, resume: ResumePoint
    ) -> "RoundState":
        """Return a round's state at its start, with what the chain holds of it already."""
        updates = resume.updates_of(rules.round)
        done = set()
        if updates:
            done |= {"train", "anchor"}
            if resume.elected:
                done |= {"cross_evaluate", "elect"}
        record = RoundRecord(rules.round, authors=list(updates))
        voted = set(resume.voted) if updates else set()
        return cls(rules, record, arrays, sent, updates, voted=voted, done=frozenset(done))

    @property
    def round(self) -> int:
        """The server round."""
        return self.rules.round

    @contextmanager
    def chain_time(self) -> Iterator[None]:
        """Count the block's time as the server's chain, hashing and signing time."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record.chain_seconds += time.perf_counter() - start

    def meter(self, category: str) -> AbstractContextManager:
        """Return a context that counts its block, of any category, as chain time.

        The round's :data:`~seccl_flwr.metering.Meter` for the reply checks.
        """
        return self.chain_time()

    def accept(
        self, replies: list[Message], verify: Callable[[Message], SignedMessage], phase: str
    ) -> dict[str, tuple[SignedMessage, Message]]:
        """Verify a phase's replies (the checks count as chain time); record the drops."""
        with use_meter(self.meter):
            return accept_replies(
                replies, verify, phase, self.rules.participants, self.record.dropped
            )

    def require(self, count: int, what: str, minimum: int) -> None:
        """Stop the run unless ``count`` valid ``what`` reached ``minimum``.

        Raises
        ------
        NotEnoughNodesError
            Naming the round, the count and why the others were dropped.
        """
        if count < minimum:
            raise NotEnoughNodesError(
                f"round {self.round}: {count} {what}, fewer than min_train_nodes="
                f"{minimum}; dropped: {self.record.dropped}"
            )

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count the block's time as phase ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record.seconds[name] = time.perf_counter() - start


@dataclass
class RunContext:
    """What every round of a run shares: where to send, what to send, what to report."""

    grid: Grid
    timeout: float
    train_config: ConfigRecord
    evaluate_config: ConfigRecord
    evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None
    result: "SecCLResult"
    layout: ModelLayout

    def send(self, state: "RoundState", messages: Iterable[Message], phase: str) -> list[Message]:
        """Send and receive; record every node that did not answer as dropped."""
        messages = list(messages)
        replies = list(self.grid.send_and_receive(messages, timeout=self.timeout))
        answered = {reply.metadata.src_node_id for reply in replies}
        for message in messages:
            node = message.metadata.dst_node_id
            if node not in answered:
                address = state.rules.participants.get(node, str(node))
                state.record.dropped[f"{phase}:{address}"] = f"no reply within {self.timeout}s"
        return replies


def _check_settings(
    candidate_fraction: float,
    share_fraction: float,
    fraction_train: float,
    fraction_evaluate: float,
    gas_limit: int | None,
    quorum: int | None,
    election_rule: int | str = 0,
    committee_size: int = 0,
) -> None:
    """Raise ``ConfigurationError`` naming the first setting of :class:`SecCL` out of range.

    The quorum and the committee size are checked against the roster again once the
    nodes have registered (the contract refuses ``k > n - 1``).
    """
    num_candidates(candidate_fraction, 1)  # λ in (0, 1]
    budget(1, share_fraction)  # share fraction in (0, 1]
    checked_quorum(quorum, MAX_PARTICIPANTS)
    election_rule_of(election_rule)
    if not isinstance(committee_size, int) or isinstance(committee_size, bool):
        raise ConfigurationError(f"committee_size must be an int, got {committee_size!r}")
    if not 0 <= committee_size < MAX_PARTICIPANTS:
        raise ConfigurationError(
            f"committee_size must lie in [0, {MAX_PARTICIPANTS - 1}] (0: every author "
            f"scores every other), got {committee_size}"
        )
    for name, value in (
        ("fraction_train", fraction_train),
        ("fraction_evaluate", fraction_evaluate),
    ):
        if not 0.0 <= value <= 1.0:
            raise ConfigurationError(f"{name} must lie in [0, 1], got {value}")
    if gas_limit is not None and gas_limit <= 0:
        raise ConfigurationError(f"gas_limit must be positive, got {gas_limit}")


def _aggregate_metrics(contents: list[RecordDict], weighted_by_key: str) -> MetricRecord | None:
    """Flower's weighted metric average; ``None`` without replies or total weight."""
    if not contents or sum(c[wire.METRICS][weighted_by_key] for c in contents) <= 0:
        return None
    return aggregate_metricrecords(contents, weighted_by_key)


def sample_registered(
    grid: Grid, participants: Mapping[int, str], fraction: float, minimum: int
) -> list[int]:
    """Return a random ``fraction`` (at least ``minimum``) of the connected participants.

    A ``fraction`` of 0 turns the phase off: no node.
    """
    if fraction == 0.0:
        return []
    registered = [n for n in grid.get_node_ids() if n in participants]
    size = min(max(int(len(registered) * fraction), minimum), len(registered))
    # sample positions, not ids: Flower's node ids can exceed int64 and numpy
    # would turn a mixed array of them into floats
    chosen = np.random.default_rng().choice(len(registered), size=size, replace=False)
    return sorted(registered[int(i)] for i in chosen)


def _log_summary(strategy: "SecCL") -> None:
    """Log the settings of a :class:`SecCL` strategy, in the style of Flower's."""
    log(INFO, "\t├──> SecCL:")
    log(INFO, "\t│\t├── Candidate fraction λ: %.2f", strategy.candidate_fraction)
    log(
        INFO,
        "\t│\t├── Share fraction: %.3f%s",
        strategy.share_fraction,
        " (per tensor)" if strategy.per_tensor else "",
    )
    log(
        INFO,
        "\t│\t├── Ballot quorum: %s",
        "a majority of the roster" if strategy.quorum is None else strategy.quorum,
    )
    log(INFO, "\t│\t├── Election rule: %s", ELECTION_RULES[strategy.election_rule])
    log(
        INFO,
        "\t│\t├── Evaluator committees: %s",
        f"k = {strategy.committee_size} evaluators per update"
        if strategy.committee_size
        else "off (every author scores every other)",
    )
    log(
        INFO,
        "\t│\t└── Chain: %s%s (gas limit: %s)",
        strategy.chain,
        f" served at {strategy.chain_url}"
        if strategy.chain == EMBEDDED and strategy.chain_url
        else "",
        "estimated" if strategy.gas_limit is None else f"{strategy.gas_limit:,}",
    )
    log(INFO, "\t└──> Sampling:")
    log(
        INFO,
        "\t\t├── Fraction: train (%.2f) | evaluate (%.2f)",
        strategy.fraction_train,
        strategy.fraction_evaluate,
    )
    log(
        INFO,
        "\t\t├── Minimum nodes: train (%d) | evaluate (%d)",
        strategy.min_train_nodes,
        strategy.min_evaluate_nodes,
    )
    log(INFO, "\t\t└── Minimum available nodes: %d", strategy.min_available_nodes)


def _server_evaluate(run: RunContext, server_round: int, arrays: ArrayRecord) -> None:
    """Evaluate ``arrays`` with the server-side ``evaluate_fn``, if there is one."""
    if run.evaluate_fn:
        metrics = run.evaluate_fn(server_round, arrays)
        if server_round == 0:
            log(INFO, "Initial global evaluation results: %s", metrics)
        else:
            log(INFO, "Global evaluation")
            log(INFO, "\t└──> MetricRecord: %s", metrics)
        if metrics is not None:
            run.result.evaluate_metrics_serverapp[server_round] = metrics


def _close_round(
    result: SecCLResult, record: RoundRecord, on_round: Callable[[RoundRecord], None] | None
) -> None:
    """Log the round, add its record to the result, tell ``on_round``."""
    log(
        INFO,
        "SecCL round %d: %d updates anchored, %d ballots on chain, candidates %s, "
        "gas %s (%s), %.2fs",
        record.round,
        len(record.authors),
        record.ballots,
        record.candidates,
        f"{sum(record.gas.values()):,}",
        " | ".join(f"{phase} {gas:,}" for phase, gas in record.gas.items()) or "none",
        sum(record.seconds.values()),
    )
    result.rounds.append(record)
    if on_round is not None:
        on_round(record)


def _messages_to(
    nodes: Iterable[int], records: Mapping[str, ArrayRecord | ConfigRecord], message_type: str
) -> list[Message]:
    """Return one message of ``message_type`` carrying ``records`` per node of ``nodes``."""
    return [
        Message(RecordDict(records), message_type=message_type, dst_node_id=node) for node in nodes
    ]


def _attach_candidates(
    messages: Iterable[Message], updates: Mapping[str, SignedMessage], candidates: Iterable[str]
) -> None:
    """Add the elected candidates' signed updates to a committee run's evaluate messages.

    The next round's train messages carry them again, for the nodes the evaluate
    missed (they check the round at their next train).

    With committees an evaluator verified only its assigned peers' updates, yet
    checks in evaluate that the new global model is the old one plus the merge of
    exactly the elected updates: it needs every candidate's update. Each client
    checks these against their anchors and signatures as in cross-evaluation
    (:func:`seccl_flwr.client.check_evaluate`). ``M`` sparse updates per client,
    against ``m - 1`` in a run without committees.
    """
    chosen = [c for c in candidates if c in updates]
    extra: dict[str, ArrayRecord] = {
        wire.peer_update_key(c): record_of(updates[c].payload) for c in chosen
    }
    for message in messages:
        fields = message.content.config_records[wire.SECCL_KEY]
        fields[wire.AUTHORS] = chosen
        fields[wire.SIGNATURES] = [updates[c].signature for c in chosen]
        for key, record in extra.items():
            message.content[key] = record


def _reply_rules(strategy: "SecCL", server_round: int, layout: ModelLayout) -> ReplyRules:
    """Return what a reply of ``server_round`` must satisfy in the strategy's open run."""
    return ReplyRules(
        strategy.csc.binding,
        server_round,
        dict(strategy.participants),
        layout,
        strategy.params.share_fraction,
        strategy.params.per_tensor,
        strategy.weighted_by_key,
    )


def _new_result(
    csc: CandidateSelection, participants: Mapping[int, str], chain: str, store: MessageStore | None
) -> "SecCLResult":
    """Return the empty result of the run of ``csc`` with its ``participants``."""
    return SecCLResult(
        chain_id=csc.binding.chain_id,
        contract=csc.address,
        run_id="0x" + csc.binding.run_id.hex(),
        participants=dict(participants),
        chain=chain,
        store=str(store.path) if isinstance(store, DirectoryStore) else "",
    )


def _log_final(result: "SecCLResult", seconds: float) -> None:
    """Log the run's results as Flower's strategies do, then how to audit it."""
    log(INFO, "")
    log(INFO, "Strategy execution finished in %.2fs", seconds)
    log(INFO, "")
    log(INFO, "Final results:")
    log(INFO, "")
    for line in io.StringIO(str(result)):
        log(INFO, "\t%s", line.strip("\n"))
    log(INFO, "")
    log(INFO, "Audit: %s", result.audit_hint())
    log(INFO, "")


def _dropped(record: RoundRecord, phase: str) -> int:
    """Return how many nodes' messages of ``phase`` the round dropped."""
    return sum(key.startswith(f"{phase}:") for key in record.dropped)


def _publish(store: MessageStore | None, message: SignedMessage) -> None:
    """Store a message about to be anchored, if the strategy has a store."""
    if store is not None:
        store.put(message)


def _anchor_initial_model(
    csc: CandidateSelection, store: MessageStore | None, arrays: ArrayRecord
) -> None:
    """Publish and anchor global model 0 (the initial arrays)."""
    owner = csc.owner()
    model = SignedMessage(csc.binding, 0, Kind.GLOBAL_MODEL, owner, arrays_of(arrays))
    _publish(store, model)
    csc.anchor(0, Kind.GLOBAL_MODEL, [owner], [model.digest()])


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
    quorum : int | None (default: None)
        The least number of ballots an election needs, fixed on chain when the run
        opens; ``None``: a majority of the registered nodes
        (:func:`~seccl_flwr.protocol.params.default_quorum`). A round whose ballots
        on chain fall short stops the run with ``NotEnoughNodesError``.
    election_rule : int | str (default: 0)
        The election rule fixed on chain, by number or name
        (:data:`~seccl_flwr.protocol.params.ELECTION_RULES`): ``0``/``"borda"``,
        the paper's truncated Borda; ``1``/``"median"``, each author's median
        received score, which colluders below half of the evaluators cannot lift;
        or ``2``/``"rank-median"``, the median of the ranks each ballot gives the
        author, which also holds against stealthy colluders far better (its
        ballots cost more gas). Both median rules take at most 104 participants.
        Clients pin it (``seccl-election-rule``).
    committee_size : int (default: 0)
        Evaluator committees: each update is scored by ``k = committee_size``
        evaluators (at most ``m - 1`` of a round's ``m`` updates), each author
        scores its ``k`` assigned peers, drawn per round from the hash of the block
        that seals the round's updates (:mod:`seccl_flwr.protocol.committee`). ``0``:
        every author scores every other (the paper's protocol). Fixed on chain at
        opening (``k <= n - 1``); clients pin it (``seccl-committee-size``).
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
        (batches are sized to stay under 80% of the 2^24 cap, about 13.4 M gas).
    """

    def __init__(  # noqa: PLR0913 - mirrors Flower's strategies
        self,
        candidate_fraction: float = DEFAULT_CANDIDATE_FRACTION,
        share_fraction: float = DEFAULT_SHARE_FRACTION,
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
        quorum: int | None = None,
        election_rule: int | str = 0,
        committee_size: int = 0,
    ) -> None:
        _check_settings(
            candidate_fraction,
            share_fraction,
            fraction_train,
            fraction_evaluate,
            gas_limit,
            quorum,
            election_rule,
            committee_size,
        )
        self.committee_size = committee_size
        self.quorum = quorum
        self.election_rule = election_rule_of(election_rule)
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
        self.params: RunParams | None = None  # the chain's, once the run is open
        self.participants: dict[int, str] = {}
        self._rpc_server: LoopbackRPCServer | None = None
        self._last_elected: tuple[dict[str, SignedMessage], list[str]] | None = None
        """The last aggregated round's updates and candidates (committee runs send the
        candidates' updates with the next train, for nodes its evaluate missed)."""

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any], **kwargs: Any) -> "SecCL":
        """Return a SecCL strategy with the run parameters and chain of a run config.

        The server reads the very keys its clients pin
        (:func:`~seccl_flwr.client_checks.run_config_parameters`:
        ``candidate-fraction``, ``share-fraction``, ``per-tensor``, ``seccl-quorum``,
        ``seccl-election-rule``, ``seccl-committee-size``),
        so the two cannot disagree; ``seccl-chain`` is a JSON-RPC URL (unset or
        empty: the embedded chain), served for the clients at ``seccl-chain-url``.
        ``kwargs`` are the other arguments (``fraction_train``, ``store``, ...).

        Raises
        ------
        ConfigurationError
            If ``kwargs`` repeat a run parameter, or a setting does not parse.
        """
        settings: dict[str, Any] = run_config_parameters(run_config)
        repeated = sorted(set(settings) & set(kwargs))
        if repeated:
            raise ConfigurationError(
                f"{', '.join(repeated)} come(s) from the run config (what the clients pin); "
                "set them there, not as arguments"
            )
        chain = str(run_config.get(CHAIN, "") or EMBEDDED)
        url = str(run_config.get(CHAIN_URL, "") or "")
        settings.update(chain=chain, chain_url=url if chain == EMBEDDED and url else None)
        return cls(**{**settings, **kwargs})

    def summary(self) -> None:
        """Log the strategy's settings, in the style of Flower's strategies."""
        _log_summary(self)

    # ------------------------------------------------------------------ the run
    def start(  # noqa: PLR0913 - Flower's signature
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
        log_strategy_start_info(num_rounds, initial_arrays, train_config, evaluate_config)
        self.summary()
        log(INFO, "")
        started = time.time()
        try:
            resume, result = self._open_run(grid, timeout)
            arrays = initial_arrays if resume.fresh else record_of(resume.global_arrays)
            run = RunContext(
                grid,
                timeout,
                ConfigRecord() if train_config is None else train_config,
                ConfigRecord() if evaluate_config is None else evaluate_config,
                evaluate_fn,
                result,
                ModelLayout.of(arrays_of(arrays)),
            )
            if resume.fresh:
                _anchor_initial_model(self.csc, self.store, arrays)
            else:
                result.arrays = arrays
            first_round = resume.last_completed + 1 if not resume.fresh else 1
            _server_evaluate(run, first_round - 1, arrays)
            for server_round in range(first_round, num_rounds + 1):
                log(INFO, "")
                log(INFO, "[SecCL ROUND %s/%s]", server_round, num_rounds)
                rules = _reply_rules(self, server_round, run.layout)
                sent = self.relay_global(server_round, arrays)
                state = RoundState.begin(rules, arrays, sent, resume)
                self.play_round(run, state)
                arrays = state.arrays
                _close_round(result, state.record, on_round)
            _log_final(result, time.time() - started)
            return result
        finally:
            self.close()

    def play_round(self, run: RunContext, state: RoundState) -> None:
        """Run one round's phases in order, skipping those ``state`` shows done."""
        phases = (
            self._train,
            self._anchor,
            self._cross_evaluate,
            self._elect,
            self._aggregate,
            self._evaluate,
        )
        for name, phase in zip(PHASES, phases, strict=True):
            if name not in state.done:
                with state.phase(name):
                    phase(run, state)

    # ----------------------------------------------------------------- phases
    def _train(self, run: RunContext, state: RoundState) -> None:
        """Send the global model for training; keep the verified, signed updates."""
        messages = list(self.configure_train(state.round, state.sent, run.train_config, run.grid))
        if self._k and self._last_elected is not None:
            _attach_candidates(messages, *self._last_elected)  # for nodes evaluate missed
        log(
            INFO,
            "configure_train: Sampled %s nodes (out of %s)",
            len(messages),
            len(self.participants),
        )
        replies = run.send(state, messages, "train")
        accepted = state.accept(replies, partial(verify_update, state.rules), "train")
        state.updates = {author: message for author, (message, _) in accepted.items()}
        log(
            INFO,
            "aggregate_train: %s updates verified, %s dropped",
            len(state.updates),
            _dropped(state.record, "train"),
        )
        state.require(len(state.updates), "valid updates", self.min_train_nodes)
        _, metrics = self.aggregate_train(state.round, [reply for _, reply in accepted.values()])
        if metrics is not None:
            log(INFO, "\t└──> Aggregated MetricRecord: %s", metrics)
            run.result.train_metrics_clientapp[state.round] = metrics
            state.record.train_metrics = dict(metrics)

    def _anchor(self, run: RunContext, state: RoundState) -> None:
        """Publish the verified updates and anchor all their digests (gas-sized batches)."""
        for message in state.updates.values():
            _publish(self.store, message)
        with state.chain_time():
            authors = list(state.updates)
            digests = [state.updates[a].digest() for a in authors]
            for tx in self.csc.anchor(state.round, Kind.UPDATE, authors, digests):
                state.record.record_tx("anchor", tx)
            state.record.authors = authors
        self._seal_updates(state)
        log(
            INFO,
            "anchor: %s update digests anchored%s (gas %s)",
            len(authors),
            " and sealed" if self._k else "",
            f"{state.record.gas.get('anchor', 0):,}",
        )

    def _seal_updates(self, state: RoundState) -> None:
        """Seal the round's updates in a committee run (part of the anchor phase).

        The seal fixes the update set and, through its block's hash, the committee
        seed; no update can be anchored afterwards. A resumed round whose updates
        are already sealed is not sealed again. A run without committees (k = 0)
        does not seal: its transactions are those of the paper's protocol.
        """
        if not self._k:
            return
        with state.chain_time():
            if "anchor" in state.done and self.csc.seal_block(state.round) != 0:
                return
            state.record.record_tx("anchor", self.csc.seal_updates(state.round))

    def committee_of(self, state: RoundState) -> dict[str, list[str]] | None:
        """Return the round's committee assignment (evaluator -> peers), ``None`` if k = 0.

        Read through :meth:`~seccl_flwr.chain.csc.CandidateSelection.committee_assignment`
        (the anchored authors, the round seed and the seal block's hash): the same
        function the clients and the audit call on their own nodes.
        """
        if not self._k:
            return None
        with state.chain_time():
            return self.csc.committee_assignment(state.round)

    def _cross_evaluate(self, run: RunContext, state: RoundState) -> None:
        """Send every author the updates it scores; keep the verified ballots.

        Without committees (k = 0) every author gets every other author's update,
        in one message content shared by all. With committees each evaluator gets
        only its assigned peers' updates (:meth:`committee_of`), and its ballot must
        score exactly those. Authors whose ballot is already on chain and authors
        whose node is not connected are not asked.
        """
        if "anchor" in state.done:  # a resumed round: its seal may still be missing
            self._seal_updates(state)
        forwarded = self.relay_updates(state.round, state.updates)
        payloads = {a: record_of(m.payload) for a, m in forwarded.items()}  # once per author
        node_of = {address: node for node, address in self.participants.items()}
        asked = [a for a in state.updates if a not in state.voted and a in node_of]
        message_type = wire.MESSAGE_TYPE[wire.CROSS_EVALUATE]
        assigned = self.committee_of(state)
        if assigned is None:
            records = self._cross_evaluation_records(state, forwarded, payloads, list(forwarded))
            messages = _messages_to([node_of[a] for a in asked], records, message_type)
        else:
            relayed = self.relay_committee(state.round, assigned)
            messages = [
                Message(
                    RecordDict(
                        self._cross_evaluation_records(
                            state, forwarded, payloads, relayed.get(evaluator, [])
                        )
                    ),
                    message_type=message_type,
                    dst_node_id=node_of[evaluator],
                )
                for evaluator in asked
                if evaluator in relayed
            ]
            sizes = sorted({len(peers) for peers in assigned.values()})
            log(
                INFO,
                "cross_evaluate: committees of k = %s (each of %s evaluators scores %s "
                "assigned peers)",
                self._k,
                len(messages),
                "/".join(map(str, sizes)) or 0,
            )
        replies = run.send(state, messages, "ballot")
        state.record.rejections.extend(r.error.reason for r in replies if r.has_error())
        accepted = state.accept(
            replies,
            partial(verify_ballot, state.rules, authors=list(state.updates), assigned=assigned),
            "ballot",
        )
        state.ballots = [ballot for ballot, _ in accepted.values()]
        log(
            INFO,
            "cross_evaluate: %s ballots verified, %s dropped",
            len(state.ballots),
            _dropped(state.record, "ballot"),
        )
        state.require(len(state.ballots) + len(state.voted), "valid ballots", self.min_train_nodes)

    def _cross_evaluation_records(
        self,
        state: RoundState,
        forwarded: Mapping[str, SignedMessage],
        payloads: Mapping[str, ArrayRecord],
        peers: Iterable[str],
    ) -> dict[str, ArrayRecord | ConfigRecord]:
        """Return the records of a cross-evaluation carrying the updates of ``peers``."""
        peers = [p for p in peers if p in forwarded]
        fields = self._server_fields(
            state.round,
            **{
                wire.AUTHORS: peers,
                wire.SIGNATURES: [forwarded[p].signature for p in peers],
            },
        )
        return wire.cross_evaluation_records(state.sent, {p: payloads[p] for p in peers}, fields)

    def _elect(self, run: RunContext, state: RoundState) -> None:
        """Publish and submit the ballots; close the vote if they reach the quorum.

        Raises
        ------
        NotEnoughNodesError
            If the ballots on chain are fewer than the run's quorum (the contract's
            ``elect`` would refuse them with ``QuorumNotReached``).
        """
        with state.chain_time():
            submitted = self.relay_ballots(state.round, state.ballots)
            for ballot in submitted:
                _publish(self.store, ballot)
            for tx in self.csc.submit_ballots(state.round, submitted):
                state.record.record_tx("elect", tx)
            on_chain, quorum = self.csc.ballot_count(state.round), self.params.quorum
            state.record.ballots = on_chain
            if on_chain < quorum:
                raise NotEnoughNodesError(
                    f"round {state.round}: {on_chain} ballots on chain, below the run's "
                    f"quorum={quorum}; dropped: {state.record.dropped}"
                )
            state.record.record_tx("elect", self.csc.elect(state.round))
        log(INFO, "elect: %s ballots on chain (quorum %s), vote closed", on_chain, quorum)

    def _aggregate(self, run: RunContext, state: RoundState) -> None:
        """Read the election; new global = old + merge of the candidates; anchor it."""
        record = state.record
        with state.chain_time():
            record.candidates = self.csc.candidates_of(state.round)
            record.totals = self.csc.totals_of(state.round)
        chosen = self.relay_candidates(state.round, record.candidates, state.updates)
        owner = self.csc.owner()
        model = next_global_model(
            self.csc.binding,
            state.round,
            owner,
            arrays_of(state.arrays),
            [state.updates[a].payload for a in chosen],
        )
        _publish(self.store, model)
        with state.chain_time():
            for tx in self.csc.anchor(state.round, Kind.GLOBAL_MODEL, [owner], [model.digest()]):
                record.record_tx("aggregate", tx)
        state.arrays = run.result.arrays = record_of(model.payload)
        log(INFO, "aggregate: merged the updates of candidates %s", chosen)

    def _evaluate(self, run: RunContext, state: RoundState) -> None:
        """Evaluate the new model; publish and anchor the verified signed metrics."""
        sent = self.relay_global(state.round, state.arrays)
        messages = list(self.configure_evaluate(state.round, sent, run.evaluate_config, run.grid))
        if self._k:
            self._last_elected = (dict(state.updates), list(state.record.candidates))
            _attach_candidates(messages, *self._last_elected)
        log(
            INFO,
            "configure_evaluate: Sampled %s nodes (out of %s)",
            len(messages),
            len(self.participants),
        )
        replies = run.send(state, messages, "evaluate")
        accepted = state.accept(replies, partial(verify_evaluation, state.rules), "evaluate")
        log(
            INFO,
            "aggregate_evaluate: %s evaluations verified, %s dropped",
            len(accepted),
            _dropped(state.record, "evaluate"),
        )
        for message, _ in accepted.values():
            _publish(self.store, message)
        if accepted:
            with state.chain_time():
                digests = [message.digest() for message, _ in accepted.values()]
                for tx in self.csc.anchor(state.round, Kind.EVALUATION, list(accepted), digests):
                    state.record.record_tx("evaluate", tx)
        metrics = self.aggregate_evaluate(state.round, [reply for _, reply in accepted.values()])
        if metrics is not None:
            log(INFO, "\t└──> Aggregated MetricRecord: %s", metrics)
            run.result.evaluate_metrics_clientapp[state.round] = metrics
            state.record.evaluate_metrics = dict(metrics)
        _server_evaluate(run, state.round, state.arrays)

    # ------------------------------------------------------------ Strategy API
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send the global model and the SecCL settings to the sampled nodes."""
        nodes = sample_registered(
            grid, self.participants, self.fraction_train, self.min_train_nodes
        )
        records = wire.model_records(
            server_round, arrays, config, self._server_fields(server_round)
        )
        return _messages_to(nodes, records, wire.TRAIN)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Average the metrics of the verified train replies.

        Returns no arrays: SecCL aggregates only after the on-chain election.
        """
        return None, _aggregate_metrics([r.content for r in replies], self.weighted_by_key)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send the new global model to the nodes sampled for evaluation."""
        nodes = sample_registered(
            grid, self.participants, self.fraction_evaluate, self.min_evaluate_nodes
        )
        records = wire.model_records(
            server_round, arrays, config, self._server_fields(server_round)
        )
        return _messages_to(nodes, records, wire.EVALUATE)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Average the metrics of the verified evaluate replies."""
        return _aggregate_metrics([r.content for r in replies], self.weighted_by_key)

    # ------------------------------------------------------- lying-server hooks
    def relay_updates(
        self, server_round: int, updates: Mapping[str, SignedMessage]
    ) -> dict[str, SignedMessage]:
        """Return the updates forwarded for cross-evaluation (honest: unchanged)."""
        return dict(updates)

    def relay_committee(
        self, server_round: int, assigned: Mapping[str, list[str]]
    ) -> dict[str, list[str]]:
        """Return whose updates each evaluator is sent in a committee run (honest: its peers).

        An evaluator the returned mapping leaves out is not asked at all.
        """
        return dict(assigned)

    def relay_ballots(self, server_round: int, ballots: list[SignedMessage]) -> list[SignedMessage]:
        """Return the ballots submitted to the contract (honest: unchanged)."""
        return ballots

    def relay_candidates(
        self, server_round: int, candidates: list[str], updates: Mapping[str, SignedMessage]
    ) -> list[str]:
        """Return whose ``updates`` are aggregated (honest: exactly the candidates')."""
        return candidates

    def relay_global(self, server_round: int, arrays: ArrayRecord) -> ArrayRecord:
        """Return the global model sent to clients (honest: the anchored one)."""
        return arrays

    # ---------------------------------------------------------------- helpers
    def close(self) -> None:
        """Stop serving the embedded chain (if this strategy serves it)."""
        if self._rpc_server is not None:
            self._rpc_server.stop()
            self._rpc_server = None

    def _open_run(self, grid: Grid, timeout: float) -> tuple[ResumePoint, SecCLResult]:
        """Open the chain, register the nodes, deploy (or attach to) the contract."""
        w3, self._rpc_server = open_chain(self.chain, self.chain_url)  # close() stops it
        settings = RunSettings(
            self.run_label,
            self.candidate_fraction,
            self.share_fraction,
            self.per_tensor,
            self.quorum,
            self.contract_address,
            self.gas_limit,
            self.election_rule,
            self.committee_size,
        )
        self.csc, self.participants, resume = open_run_on(
            w3, grid, self.server_key, settings, self.min_available_nodes, timeout, self.store
        )
        self.params = self.csc.params()
        return resume, _new_result(self.csc, self.participants, self.chain, self.store)

    @property
    def _k(self) -> int:
        """The open run's committee size on chain (0: full cross-evaluation)."""
        return self.params.committee_size

    def _server_fields(self, server_round: int, **extra) -> ConfigRecord:
        return wire.server_fields(server_round, self.csc.address, **extra)

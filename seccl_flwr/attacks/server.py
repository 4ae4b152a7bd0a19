"""Misbehaviour to test SecCL against: a lying server.

:class:`LyingServer` is a :class:`~seccl_flwr.strategy.SecCL` that cheats in one of
the ways the trust model names, from a chosen round on. Each way is caught by the
honest clients or refused by the contract, with a named error (the tests are
``tests/test_lying_server.py`` and, for the lies of omission, ``tests/test_withholding.py``):

Tampering:

===========================  ==========================================================
``alter-update``             every other evaluator: ``UpdateDigestMismatchError``
``swap-updates``             every other evaluator: ``UpdateDigestMismatchError``
``forge-ballot``             contract: ``InvalidSignature``
``alter-ranking``            contract: ``InvalidSignature``
``drop-ballot``              the evaluator, in the round's evaluate: ``BallotMissingError``
``aggregate-non-candidate``  every participant, in evaluate: ``AggregationMismatchError``
``wrong-global``             every client: ``GlobalModelMismatchError``
===========================  ==========================================================

Withholding and choosing the election's inputs (issue 12):

==========================  ===========================================================
``no-ballots``              skips cross-evaluation and calls ``elect``: contract
                            ``QuorumNotReached``
``sybil-roster``            registers addresses whose keys it holds: every client, at
                            first contact, ``RosterMismatchError``
``wrong-parameters``        fixes other parameters on chain (λ = 1, by default) than the
                            clients' configuration: ``ParameterMismatchError``
``withhold-updates``        each evaluator receives one author's update only: every
                            evaluator ``WithheldUpdateError``, no ballot
``forge-partial-ballot``    submits partial ballots it made itself: contract
                            ``IncompleteBallot``
``withhold-and-forge``      only a quorum of evaluators receives the complete set, then
                            the merge is forged: ``WithheldUpdateError`` in
                            cross-evaluation, ``AggregationMismatchError`` /
                            ``AggregationUncheckableError`` in evaluate
``censor-update``           drops one author's update before anchoring, every round: the
                            author, at its next contact, ``UpdateNotAnchoredError``
``drop-ballots-to-quorum``  submits only a quorum of the ballots: each dropped evaluator,
                            in the round's evaluate, ``BallotMissingError`` (after the
                            election, which stands: detected, not prevented)
``aggregate-weighted``      weights the first candidate's update 3x: every participant,
                            in the round's evaluate, ``AggregationMismatchError``
``replay-old-model``        anchors the previous global model as the new one: the same
``previous-candidates``     aggregates the previous round's candidates: the same
==========================  ===========================================================

Evaluator committees (issue 16; a run with ``committee_size`` k >= 1). Every
evaluator recomputes its assignment from its own chain endpoint (the seal block's
hash) and casts no ballot when the forwarded peers differ:

======================  =============================================================
``choose-committee``    the server picks the committees itself (each evaluator's first
                        assigned peer replaced by an unassigned author): every
                        evaluator ``CommitteeMismatchError`` (missing and extra peer)
``partial-committee``   each evaluator is sent only some of its assigned peers (the
                        last one withheld): every evaluator ``CommitteeMismatchError``
``unsealed-committee``  the server never seals the round's updates and forwards a
                        committee it drew itself: every evaluator
                        ``CommitteeMismatchError`` ("not sealed"); the contract would
                        refuse any ballot (``UpdatesNotSealed``)
======================  =============================================================

The lies of omission are told where a real server would tell them: the roster and
parameters in the run's opening, the withheld updates in the messages the server
sends (the phases themselves are :class:`~seccl_flwr.strategy.SecCL`'s).
"""

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

from .. import wire
from ..chain.connection import EMBEDDED, connect, embedded_web3
from ..errors import ConfigurationError
from ..protocol.committee import assignments
from ..protocol.eip712 import Kind, sign_join
from ..protocol.signed import SignedMessage
from ..records import arrays_of, record_of
from ..run_setup import server_account
from ..strategy import RoundState, RunContext, SecCL

SERVER_LIES = (
    "alter-update",
    "swap-updates",
    "forge-ballot",
    "alter-ranking",
    "drop-ballot",
    "aggregate-non-candidate",
    "wrong-global",
    "no-ballots",
    "sybil-roster",
    "wrong-parameters",
    "withhold-updates",
    "forge-partial-ballot",
    "withhold-and-forge",
    "censor-update",
    "drop-ballots-to-quorum",
    "aggregate-weighted",
    "replay-old-model",
    "previous-candidates",
    "choose-committee",
    "partial-committee",
    "unsealed-committee",
)

COMMITTEE_LIES = ("choose-committee", "partial-committee", "unsealed-committee")
"""The lies about evaluator committees (they need a run with ``committee_size >= 1``)."""

OPENING_SETTINGS = ("candidate_fraction", "share_fraction", "per_tensor", "quorum")
"""The settings of :class:`~seccl_flwr.strategy.SecCL` that ``wrong-parameters`` may fix
on chain with other values than the clients' configuration."""

SYBIL_NODE_IDS = 10_000
"""Node ids of the ``sybil-roster`` lie's sybils start after this (no real node has them)."""


class LyingServer(SecCL):
    """A SecCL server that cheats in one named way from ``lie_round`` on.

    Parameters
    ----------
    lie : str
        One of :data:`SERVER_LIES`.
    lie_round : int
        First round in which the server lies (the roster and parameter lies are told
        when the run opens, before round 1).
    on_chain : Mapping[str, Any] | None
        ``wrong-parameters``: the settings (of :data:`OPENING_SETTINGS`) the server
        fixes on chain instead of its own; default ``{"candidate_fraction": 1.0}``
        (every update elected: no election at all).
    sybils : int
        ``sybil-roster``: how many addresses of its own the server registers.
    **kwargs
        Passed to :class:`~seccl_flwr.strategy.SecCL`; they are what the clients'
        configuration pins.

    Raises
    ------
    ConfigurationError
        If ``lie`` is unknown or ``on_chain`` names another setting.
    """

    def __init__(
        self,
        lie: str,
        lie_round: int = 1,
        on_chain: Mapping[str, Any] | None = None,
        sybils: int = 3,
        **kwargs,
    ) -> None:
        if lie not in SERVER_LIES:
            raise ConfigurationError(f"unknown lie {lie!r}; choose from {SERVER_LIES}")
        if lie in COMMITTEE_LIES and not kwargs.get("committee_size"):
            raise ConfigurationError(f"the lie {lie!r} needs a run with committee_size >= 1")
        on_chain = dict(on_chain if on_chain is not None else {"candidate_fraction": 1.0})
        unknown = set(on_chain) - set(OPENING_SETTINGS)
        if unknown:
            raise ConfigurationError(
                f"on_chain names {sorted(unknown)}; choose from {OPENING_SETTINGS}"
            )
        super().__init__(**kwargs)
        self.lie = lie
        self.lie_round = lie_round
        self.on_chain = on_chain
        self.sybils = [
            Account.from_key(keccak(text=f"seccl-sybil:{self.run_label}:{i}"))
            for i in range(sybils)
        ]
        self._previous: tuple[list[str], dict[str, SignedMessage]] | None = None

    def _lying(self, server_round: int, lie: str) -> bool:
        return self.lie == lie and server_round >= self.lie_round

    # ------------------------------------------------------------ run opening
    def _open_run(self, grid, timeout):
        """Open the run with sybils in the roster, or other parameters than the clients'."""
        if self.lie == "sybil-roster":
            sybils = {SYBIL_NODE_IDS + i: a for i, a in enumerate(self.sybils, start=1)}
            grid = _SybilGrid(grid, sybils, self._chain_id)
        if self.lie != "wrong-parameters":
            return super()._open_run(grid, timeout)
        own = {name: getattr(self, name) for name in self.on_chain}
        for name, value in self.on_chain.items():
            setattr(self, name, value)
        try:
            return super()._open_run(grid, timeout)
        finally:
            for name, value in own.items():
                setattr(self, name, value)

    def _chain_id(self) -> int:
        """Return the chain id of the server's chain (what a sybil signs its Join for)."""
        if self._rpc_server is not None:
            return self._rpc_server.w3.eth.chain_id
        return (embedded_web3() if self.chain == EMBEDDED else connect(self.chain)).eth.chain_id

    # ---------------------------------------------------------------- phases
    def _anchor(self, run: RunContext, state: RoundState) -> None:
        """Drop the first author's update before anchoring (``censor-update``)."""
        if self._lying(state.round, "censor-update") and state.updates:
            del state.updates[next(iter(state.updates))]
        super()._anchor(run, state)

    def _seal_updates(self, state: RoundState) -> None:
        """Never seal the round's updates (``unsealed-committee``)."""
        if self._lying(state.round, "unsealed-committee"):
            return
        super()._seal_updates(state)

    def committee_of(self, state: RoundState) -> dict[str, list[str]] | None:
        """Draw the committees from a seed of the server's choosing (``unsealed-committee``)."""
        if self._lying(state.round, "unsealed-committee"):
            seed = keccak(text=f"seccl-server-chosen:{state.round}")
            return assignments(list(state.updates), seed, self.committee_size)
        return super().committee_of(state)

    def relay_committee(
        self, server_round: int, assigned: Mapping[str, list[str]]
    ) -> dict[str, list[str]]:
        """Send evaluators committees of the server's choosing, or only some assigned peers."""
        relayed = {evaluator: list(peers) for evaluator, peers in assigned.items()}
        if self._lying(server_round, "choose-committee"):
            for evaluator, peers in relayed.items():
                others = [a for a in assigned if a != evaluator and a not in peers]
                if peers and others:
                    peers[0] = others[0]
        if self._lying(server_round, "partial-committee"):
            for peers in relayed.values():
                del peers[-1:]
        return relayed

    def _cross_evaluate(self, run: RunContext, state: RoundState) -> None:
        """Withhold updates from evaluators, skip cross-evaluation, or forge partial ballots."""
        if self._lying(state.round, "no-ballots"):
            state.ballots = []
            return
        if self._lying(state.round, "forge-partial-ballot"):
            state.ballots = self._forged_partial_ballots(state)
            return
        authors = list(state.updates)
        if self._lying(state.round, "withhold-updates"):
            partial = set(authors)  # every evaluator gets the first author's update only
        elif self._lying(state.round, "withhold-and-forge"):
            partial = set(authors[self.params.quorum :])  # just a quorum gets them all
        else:
            partial = set()
        if partial:
            withheld = set(authors[1:])
            run = replace(
                run, grid=_WithholdingGrid(run.grid, self.participants, partial, withheld)
            )
        super()._cross_evaluate(run, state)

    def _elect(self, run: RunContext, state: RoundState) -> None:
        """Call ``elect`` without any ballot (``no-ballots``): no check of the quorum first."""
        if self._lying(state.round, "no-ballots"):
            state.record.record_tx("elect", self.csc.elect(state.round))
            return
        super()._elect(run, state)

    def _aggregate(self, run: RunContext, state: RoundState) -> None:
        """Aggregate other updates than the elected candidates' (the aggregation lies)."""
        honest = state.updates
        state.updates = self._aggregated_updates(state)
        try:
            super()._aggregate(run, state)
        finally:
            state.updates = honest
        self._previous = (list(state.record.candidates), dict(honest))

    def _aggregated_updates(self, state: RoundState) -> dict[str, SignedMessage]:
        """Return the updates ``_aggregate`` reads the candidates' from."""
        round_ = state.round
        if self._lying(round_, "previous-candidates") and self._previous is not None:
            return dict(self._previous[1])
        if self._lying(round_, "aggregate-weighted") or self._lying(round_, "withhold-and-forge"):
            updates = dict(state.updates)
            first = self.csc.candidates_of(round_)[0]
            weighted = {**updates[first].payload}
            weighted["values"] = weighted["values"] * np.float32(3.0)
            updates[first] = replace(updates[first], payload=weighted)
            return updates
        return state.updates

    # ---------------------------------------------------------- relay hooks
    def relay_updates(
        self, server_round: int, updates: Mapping[str, SignedMessage]
    ) -> dict[str, SignedMessage]:
        """Alter one update, or swap two authors' updates."""
        forwarded = dict(updates)
        authors = list(forwarded)
        if self._lying(server_round, "alter-update"):
            item = forwarded[authors[0]]
            values = item.payload["values"].copy()
            values[0] += np.float32(1.0)
            forwarded[authors[0]] = replace(item, payload={**item.payload, "values": values})
        if self._lying(server_round, "swap-updates"):
            a, b = authors[0], authors[1]
            forwarded[a], forwarded[b] = (
                replace(forwarded[a], payload=updates[b].payload, signature=updates[b].signature),
                replace(forwarded[b], payload=updates[a].payload, signature=updates[a].signature),
            )
        return forwarded

    def relay_ballots(self, server_round: int, ballots: list[SignedMessage]) -> list[SignedMessage]:
        """Forge, alter or drop a ballot."""
        ballots = list(ballots)
        if not ballots:
            return ballots
        first = ballots[0]
        if self._lying(server_round, "forge-ballot"):
            forger = Account.from_key(b"\x01" * 32)
            zeroed = replace(first, scores=tuple(0 for _ in first.scores))
            ballots[0] = zeroed.signed_by(forger)  # the evaluator's name, another's key
        if self._lying(server_round, "alter-ranking"):
            ballots[0] = replace(first, scores=tuple(reversed(first.scores)))
        if self._lying(server_round, "drop-ballot"):
            ballots = ballots[1:]
        if self._lying(server_round, "drop-ballots-to-quorum"):
            ballots = ballots[: self.params.quorum]
        return ballots

    def relay_candidates(
        self, server_round: int, candidates: list[str], updates: Mapping[str, SignedMessage]
    ) -> list[str]:
        """Aggregate a non-candidate, no update, or the previous round's candidates."""
        if self._lying(server_round, "aggregate-non-candidate"):
            others = [a for a in updates if a not in candidates]
            if others:
                return candidates[:-1] + [others[0]]
        if self._lying(server_round, "replay-old-model"):
            return []  # old model + merge of nothing: the old model again
        if self._lying(server_round, "previous-candidates") and self._previous is not None:
            return list(self._previous[0])
        return candidates

    def relay_global(self, server_round: int, arrays: ArrayRecord) -> ArrayRecord:
        """Send a global model other than the anchored one."""
        if self._lying(server_round, "wrong-global"):
            changed = arrays_of(arrays)
            name = next(n for n, a in changed.items() if a.dtype.kind == "f")
            changed[name] = changed[name] * np.float32(1.01)
            return record_of(changed)
        return arrays

    # -------------------------------------------------------------- helpers
    def _forged_partial_ballots(self, state: RoundState) -> list[SignedMessage]:
        """Return, per author, a ballot scoring only the first author, signed by the server.

        The server cannot sign as an evaluator: the best it can do is its own key.
        """
        authors = list(state.updates)
        favourite, forger = authors[0], server_account(self.server_key, self.run_label)
        return [
            SignedMessage(
                self.csc.binding,
                state.round,
                Kind.BALLOT,
                evaluator,
                peers=(favourite,),
                scores=(1000,),
            ).signed_by(forger)
            for evaluator in authors[1:]
        ]


class _WithholdingGrid:
    """The server's grid, with updates cut out of the cross-evaluations it sends.

    Parameters
    ----------
    grid
        The grid the messages go on to.
    participants : Mapping[int, str]
        Node id -> address.
    partial : set[str]
        Evaluators whose message lacks the ``withheld`` updates.
    withheld : set[str]
        Authors whose updates those evaluators do not get.
    """

    def __init__(
        self, grid, participants: Mapping[int, str], partial: set[str], withheld: set[str]
    ) -> None:
        self._grid = grid
        self._participants = participants
        self._partial = partial
        self._withheld = withheld

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Send the messages, those to the partial evaluators with updates cut out."""
        return self._grid.send_and_receive([self._cut(m) for m in messages], timeout=timeout)

    def _cut(self, message: Message) -> Message:
        evaluator = self._participants.get(message.metadata.dst_node_id)
        if wire.phase_of(message) != wire.CROSS_EVALUATE or evaluator not in self._partial:
            return message
        fields = message.content.config_records[wire.SECCL_KEY]
        kept = [
            (a, s)
            for a, s in zip(fields[wire.AUTHORS], fields[wire.SIGNATURES], strict=True)
            if a not in self._withheld
        ]
        cut = ConfigRecord(
            {
                **dict(fields),
                wire.AUTHORS: [a for a, _ in kept],
                wire.SIGNATURES: [s for _, s in kept],
            }
        )
        dropped = {wire.peer_update_key(a) for a in self._withheld}
        records = {k: v for k, v in message.content.items() if k not in dropped}
        records[wire.SECCL_KEY] = cut
        return Message(
            RecordDict(records),
            message_type=message.metadata.message_type,
            dst_node_id=message.metadata.dst_node_id,
        )


class _SybilGrid:
    """The server's grid plus sybil nodes it answers for itself (their keys are its own).

    A sybil answers the registration query with its address and a valid Join
    signature, as an honest node does; messages to sybils never reach the real grid.
    """

    def __init__(
        self, grid, sybils: Mapping[int, LocalAccount], chain_id: Callable[[], int]
    ) -> None:
        self._grid = grid
        self._sybils = dict(sybils)
        self._chain_id = chain_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def get_node_ids(self) -> list[int]:
        """Return the real nodes and the sybils."""
        return [*self._grid.get_node_ids(), *self._sybils]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Send the real nodes' messages; answer the sybils' registration itself."""
        messages = list(messages)
        real = [m for m in messages if m.metadata.dst_node_id not in self._sybils]
        replies = list(self._grid.send_and_receive(real, timeout=timeout))
        for message in messages:
            sybil = self._sybils.get(message.metadata.dst_node_id)
            if sybil is not None and wire.phase_of(message) == wire.REGISTER:
                replies.append(self._join(message, sybil))
        return replies

    def _join(self, message: Message, sybil: LocalAccount) -> Message:
        fields = message.content.config_records[wire.SECCL_KEY]
        run_id = wire.run_id_field(0, sybil.address, fields)
        signature = sign_join(sybil.key, run_id, self._chain_id())
        delivered = copy.deepcopy(message)
        delivered.metadata.__dict__["_message_id"] = f"sybil-{message.metadata.dst_node_id}"
        reply = ConfigRecord({wire.ADDRESS: sybil.address, wire.JOIN_SIGNATURE: signature})
        return Message(RecordDict({wire.SECCL_KEY: reply}), reply_to=delivered)

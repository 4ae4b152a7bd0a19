"""Misbehaviour to test SecCL against: a lying server.

:class:`LyingServer` is a :class:`~seccl_flwr.strategy.SecCL` that cheats in one of
the ways the trust model names, from a chosen round on. Each way is caught by the
honest clients or by the contract, with a named error:

===========================  =================================================
``alter-update``             clients: ``UpdateDigestMismatchError`` (no ballot)
``swap-updates``             clients: ``UpdateDigestMismatchError`` (no ballot)
``forge-ballot``             contract: ``InvalidSignature``
``alter-ranking``            contract: ``InvalidSignature``
``drop-ballot``              the evaluator, in the round's evaluate:
                             ``BallotMissingError``
``aggregate-non-candidate``  clients, in the round's evaluate:
                             ``AggregationMismatchError``
``aggregate-weighted``       (one candidate counted 3 times) the same
``replay-old-model``         (no candidate aggregated) the same
``previous-candidates``      (last round's candidates aggregated, or a
                             non-candidate if they are the same) the same
``wrong-global``             clients: ``GlobalModelMismatchError``
``withhold-updates``         clients: ``WithheldUpdateError`` (no ballot)
``censor-update``            the censored author, at its next contact:
                             ``UpdateNotAnchoredError``
``wrong-parameters``         clients: ``ParameterMismatchError`` (λ = 1 on chain)
``no-ballots``               (elect without ballots) contract: ``QuorumNotReached``
===========================  =================================================

A client that finds a forged global model refuses the rest of the run.
"""

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
from eth_account import Account
from flwr.app import ArrayRecord

from ..errors import ConfigurationError
from ..protocol.signed import SignedMessage
from ..records import arrays_of, record_of
from ..strategy import SecCL

SERVER_LIES = (
    "alter-update",
    "swap-updates",
    "forge-ballot",
    "alter-ranking",
    "drop-ballot",
    "aggregate-non-candidate",
    "aggregate-weighted",
    "replay-old-model",
    "previous-candidates",
    "wrong-global",
    "withhold-updates",
    "censor-update",
    "wrong-parameters",
    "no-ballots",
)


class LyingServer(SecCL):
    """A SecCL server that cheats in one named way from ``lie_round`` on.

    Parameters
    ----------
    lie : str
        One of :data:`SERVER_LIES`.
    lie_round : int
        First round in which the server lies.
    **kwargs
        Passed to :class:`~seccl_flwr.strategy.SecCL`.
    """

    def __init__(self, lie: str, lie_round: int = 1, **kwargs) -> None:
        if lie not in SERVER_LIES:
            raise ConfigurationError(f"unknown lie {lie!r}; choose from {SERVER_LIES}")
        super().__init__(**kwargs)
        self.lie = lie
        self.lie_round = lie_round
        self._candidates: dict[int, list[str]] = {}  # round -> elected (previous-candidates)

    def _lying(self, server_round: int, lie: str) -> bool:
        return self.lie == lie and server_round >= self.lie_round

    def _open_run(self, grid, timeout):
        """Open the run with λ = 1 (every author elected) instead of the configured λ."""
        if self.lie != "wrong-parameters":
            return super()._open_run(grid, timeout)
        configured, self.candidate_fraction = self.candidate_fraction, 1.0
        try:
            return super()._open_run(grid, timeout)
        finally:
            self.candidate_fraction = configured

    def _anchor(self, run, state) -> None:
        """Drop the last honest update before anchoring (censorship)."""
        if self._lying(state.round, "censor-update") and len(state.updates) > 1:
            censored = list(state.updates)[-1]
            state.updates = {a: u for a, u in state.updates.items() if a != censored}
        super()._anchor(run, state)

    def _elect(self, run, state) -> None:
        """Call the election without submitting a single ballot."""
        if self._lying(state.round, "no-ballots"):
            state.record.record_tx("elect", self.csc.elect(state.round))
        super()._elect(run, state)

    def relay_updates(
        self, server_round: int, updates: Mapping[str, SignedMessage]
    ) -> dict[str, SignedMessage]:
        """Alter one update, swap two authors' updates, or forward only one update."""
        forwarded = dict(updates)
        authors = list(forwarded)
        if self._lying(server_round, "withhold-updates"):
            return {authors[0]: forwarded[authors[0]]}
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
        first = ballots[0]
        if self._lying(server_round, "forge-ballot"):
            forger = Account.from_key(b"\x01" * 32)
            zeroed = replace(first, scores=tuple(0 for _ in first.scores))
            ballots[0] = zeroed.signed_by(forger)  # the evaluator's name, another's key
        if self._lying(server_round, "alter-ranking"):
            ballots[0] = replace(first, scores=tuple(reversed(first.scores)))
        if self._lying(server_round, "drop-ballot"):
            ballots = ballots[1:]
        return ballots

    def relay_candidates(
        self, server_round: int, candidates: list[str], updates: Mapping[str, SignedMessage]
    ) -> list[str]:
        """Aggregate a non-candidate, one candidate 3 times, none, or last round's."""
        self._candidates[server_round] = list(candidates)
        if self._lying(server_round, "aggregate-non-candidate"):
            others = [a for a in updates if a not in candidates]
            if others:
                return candidates[:-1] + [others[0]]
        if self._lying(server_round, "aggregate-weighted"):
            return [candidates[0]] * 3 + candidates[1:]
        if self._lying(server_round, "replay-old-model"):
            return []  # the new model is the old one
        if self._lying(server_round, "previous-candidates"):
            previous = self._candidates.get(server_round - 1, [])
            chosen = [a for a in previous if a in updates]
            if chosen and chosen != candidates:
                return chosen
            return [a for a in updates if a not in candidates][:1] or candidates
        return candidates

    def relay_global(self, server_round: int, arrays: ArrayRecord) -> ArrayRecord:
        """Send a global model other than the anchored one."""
        if self._lying(server_round, "wrong-global"):
            changed = arrays_of(arrays)
            name = next(n for n, a in changed.items() if a.dtype.kind == "f")
            changed[name] = changed[name] * np.float32(1.01)
            return record_of(changed)
        return arrays

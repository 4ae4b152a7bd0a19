"""Where an interrupted SecCL run stands, read from the chain and the message store.

The contract records the last round whose new global model is anchored
(``lastCompletedRound``) and, for the round after it, what is already done: the
anchored updates, the ballots cast, whether the vote is closed. The message store
holds the messages behind those digests. :func:`resume_point` puts the two together,
so that a server restarted with the same contract and store goes on exactly where
the run stopped, without anchoring anything twice.
"""

from dataclasses import dataclass, field

import numpy as np

from .chain.csc import CandidateSelection
from .errors import SecCLError
from .protocol.eip712 import Kind
from .protocol.signed import SignedMessage
from .store import MessageNotFoundError, MessageStore

ZERO_DIGEST = bytes(32)


class ResumeError(SecCLError, RuntimeError):
    """The run cannot be resumed (a message behind an anchor is not in the store)."""


@dataclass
class ResumePoint:
    """What is done of a run on chain.

    Attributes
    ----------
    last_completed : int
        Last round whose global model is anchored; ``-1`` if nothing is (a fresh run).
    global_arrays : dict[str, np.ndarray] | None
        That round's global model, from the store.
    open_updates : dict[str, SignedMessage]
        Updates already anchored in round ``last_completed + 1``, by author.
    voted : set[str]
        Evaluators whose ballot the contract holds for that round.
    elected : bool
        Whether that round's vote is closed.
    """

    last_completed: int = -1
    global_arrays: dict[str, np.ndarray] | None = None
    open_updates: dict[str, SignedMessage] = field(default_factory=dict)
    voted: set[str] = field(default_factory=set)
    elected: bool = False

    @property
    def fresh(self) -> bool:
        """Whether nothing of the run is on chain yet."""
        return self.last_completed < 0

    def updates_of(self, round_: int) -> dict[str, SignedMessage]:
        """Return the updates the chain already holds for ``round_`` (the open round)."""
        return dict(self.open_updates) if round_ == self.last_completed + 1 else {}


def _fetch(store: MessageStore, csc: CandidateSelection, digest: bytes, what: str):
    try:
        message = store.get(digest)
    except MessageNotFoundError as exc:
        raise ResumeError(f"{what} (0x{digest.hex()}) is anchored but not in the store") from exc
    if message.binding != csc.binding or message.digest() != digest:
        raise ResumeError(f"{what}: the stored message does not match its anchor 0x{digest.hex()}")
    return message


def resume_point(csc: CandidateSelection, store: MessageStore | None, owner: str) -> ResumePoint:
    """Return where the run of ``csc`` stands.

    Raises
    ------
    ResumeError
        If rounds are anchored but there is no store, or a message behind an anchor
        the run needs is missing from it or differs from its anchor.
    """
    if csc.anchor_of(0, Kind.GLOBAL_MODEL, owner) == ZERO_DIGEST:
        return ResumePoint()
    if store is None:
        raise ResumeError(
            f"contract {csc.address} already holds rounds of a run; resuming it needs the "
            "message store that published them (SecCL(store=...))"
        )
    last = csc.last_completed_round()
    model = _fetch(
        store, csc, csc.anchor_of(last, Kind.GLOBAL_MODEL, owner), f"global model of round {last}"
    )
    open_round = last + 1
    updates = {
        author: _fetch(
            store,
            csc,
            csc.anchor_of(open_round, Kind.UPDATE, author),
            f"update of {author} in round {open_round}",
        )
        for author in csc.update_authors(open_round)
    }
    return ResumePoint(
        last_completed=last,
        global_arrays={k: np.asarray(v) for k, v in model.payload.items()},
        open_updates=updates,
        voted=set(csc.evaluators_of(open_round)),
        elected=csc.is_elected(open_round),
    )

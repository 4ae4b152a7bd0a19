"""Offline audit of a SecCL run from the chain and the published messages alone.

:func:`audit_run` trusts nothing the server says. From the contract (attached
read-only, its code checked by
:meth:`~seccl_flwr.chain.csc.CandidateSelection.attach`) it reads every anchored
digest (``Anchored`` and ``BallotCast`` events) and the elections; from a message
store (:mod:`seccl_flwr.store`) it fetches the messages. It then re-derives:

* **messages** - every anchor has a stored message, and every stored message of the
  run is anchored; each stored message's digest, recomputed from its content, is the
  name it is stored under and the digest the chain anchored for its round, kind and
  author; update, ballot and evaluation signatures recover to their author;
* **elections** - the Python reference (:mod:`seccl_flwr.protocol.borda`) run on the
  stored ballots elects the contract's candidates with the contract's totals (in a
  committee run with the re-derived assignment: Borda standings normalised per
  received ballot);
* **global models** - global model ``r`` equals global model ``r - 1`` plus the merge
  (:func:`~seccl_flwr.protocol.sparse.aggregate`) of exactly the elected
  candidates' stored updates, in the contract's order;
* **the run** - it is open (roster sealed), and its roster and parameters are the
  ones the auditor pins (:class:`AuditPins`; what is not pinned is reported as read);
* **committees** - in a run with evaluator committees (``committeeSize`` k >= 1), the
  assignment is re-derived from the chain: the hash of the block that sealed the
  round's updates, read from the auditor's own node, and the XOR of the anchored
  update digests give the committee seed
  (:func:`~seccl_flwr.protocol.committee.committee_seed`), which must be the
  contract's ``committeeSeedOf``; every ballot must score exactly its evaluator's
  assigned peers;
* **withholding** - every election had the quorum of ballots (counted from the
  chain's ``BallotCast`` events, not taken from the contract's word), every ballot
  scores exactly the round's other anchored authors (its assigned peers in a
  committee run), no round was left open, and
  who sent no update or cast no ballot (notices: the audit cannot tell a node
  that dropped out from a server that withheld it).

Every mismatch is a :class:`Finding` that names the round, the node and the
message; :class:`RoundVerdict` summarises each round. Every log query starts at
the contract's opening block.
"""

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from eth_utils import to_checksum_address

from .chain.csc import CandidateSelection
from .chain.errors import CommitteeUnavailableError
from .errors import SignatureError, SparseUpdateError
from .protocol.borda import ElectionError, round_seed
from .protocol.committee import assignments, committee_seed
from .protocol.eip712 import Kind
from .protocol.election import elect
from .protocol.params import (
    ELECTION_RULES,
    PPM,
    RunParams,
    num_candidates,
    param_mismatches,
    roster_digest,
    share_fraction_ppm,
)
from .protocol.signed import SignedMessage, next_global_model
from .protocol.sparse import ModelLayout, SparseUpdate
from .store import MessageNotFoundError, MessageStore, StoredMessageFormatError, digest_hex

MISSING_MESSAGE = "missing-message"
"""A digest is anchored on chain but the store has no message under it."""
UNANCHORED_MESSAGE = "unanchored-message"
"""A stored message of the run has no anchor for its round, kind and author."""
ANCHOR_MISMATCH = "anchor-mismatch"
"""The chain anchored another digest for the stored message's round, kind and author."""
DIGEST_MISMATCH = "digest-mismatch"
"""A stored message's content does not hash to the digest it is stored under."""
BAD_SIGNATURE = "bad-signature"
"""A signature does not recover to the message's author (or evaluator)."""
MALFORMED_MESSAGE = "malformed-message"
"""A stored message cannot be decoded, or an update does not fit the model."""
FOREIGN_MESSAGE = "foreign-message"
"""A stored message belongs to another chain, contract or run."""
MISSING_ANCHOR = "missing-anchor"
"""Something every run anchors (the initial global model) is not on chain."""
ELECTION_MISMATCH = "election-mismatch"
"""The Python reference election on the stored ballots differs from the contract's."""
AGGREGATION_MISMATCH = "aggregation-mismatch"
"""A global model is not the previous one plus the merge of the elected updates."""
RUN_NOT_OPEN = "run-not-open"
"""The contract's run is not open: its roster is not sealed."""
ROSTER_MISMATCH = "roster-mismatch"
"""The contract's roster is not the one the auditor pins (or not its own digest)."""
PARAMETER_MISMATCH = "parameter-mismatch"
"""A run parameter on chain differs from the auditor's pin (or is a rule the audit lacks)."""
BELOW_QUORUM = "below-quorum"
"""A round was elected with fewer ballots (``BallotCast`` events) than the quorum."""
INCOMPLETE_BALLOT = "incomplete-ballot"
"""A ballot does not score exactly the round's anchored update authors but its evaluator."""
STALLED_ROUND = "stalled-round"
"""A round's updates are anchored but it was never elected, or never got its global model."""
COMMITTEE_MISMATCH = "committee-mismatch"
"""Committee run: a ballot's peers are not its evaluator's assignment, the round's ballots
were cast without a seal, or the contract's committee seed is not the one re-derived from
the seal block's hash and the anchored update digests."""

MISSING_UPDATE = "missing-update"
"""Notice: a roster member has no anchored update in a round."""
MISSING_BALLOT = "missing-ballot"
"""Notice: an author whose update was anchored cast no ballot in an elected round."""

RUN_KINDS = (RUN_NOT_OPEN, ROSTER_MISMATCH, PARAMETER_MISMATCH)
"""Kinds of findings about the whole run, not one round (reported first)."""

FINDING_KINDS = (
    *RUN_KINDS,
    DIGEST_MISMATCH,
    BAD_SIGNATURE,
    BELOW_QUORUM,
    COMMITTEE_MISMATCH,
    INCOMPLETE_BALLOT,
    ELECTION_MISMATCH,
    AGGREGATION_MISMATCH,
    MISSING_MESSAGE,
    ANCHOR_MISMATCH,
    MALFORMED_MESSAGE,
    UNANCHORED_MESSAGE,
    FOREIGN_MESSAGE,
    MISSING_ANCHOR,
    STALLED_ROUND,
)
"""Every kind of finding, most telling first: findings of a round are reported in this
order (a tampered or forged message before the gaps it leaves)."""

NOTICE_KINDS = (MISSING_UPDATE, MISSING_BALLOT)
"""Kinds of notices: reported, but not failures. The protocol tolerates them (a round
needs only the quorum of ballots and the updates it got), and neither the chain
nor the store can tell who is at fault: a node that dropped out (crash, network,
refusal to vote on a run it distrusts) leaves the same trace as a server that never
contacted it or withheld what it sent. A pattern (one node never counted) is the
auditor's to judge; the node itself knows which it was."""

OK, FAIL, UNCHECKED, NOTHING = "ok", "FAIL", "?", "-"
"""Verdicts of one column of a round: checked and right, wrong, not checkable
(inputs missing or wrong, see the findings), nothing to check."""
_PRECEDENCE = {NOTHING: 0, OK: 1, UNCHECKED: 2, FAIL: 3}

COLUMNS = ("updates", "ballots", "quorum", "election", "global_model", "evaluations")
_COLUMN_OF_KIND = {
    Kind.UPDATE: "updates",
    Kind.BALLOT: "ballots",
    Kind.GLOBAL_MODEL: "global_model",
    Kind.EVALUATION: "evaluations",
}


@dataclass(frozen=True)
class Finding:
    """One mismatch the audit found.

    Attributes
    ----------
    round : int | None
        Round of the message (``None`` if a stored file cannot even be decoded).
    node : str
        Address of the message's author (the evaluator of a ballot, the owner for a
        global model), or ``"contract"`` for an election.
    message : str
        The message: its kind and digest (e.g. ``"update 0x12…"``), or ``"election"``.
    kind : str
        What went wrong; one of :data:`FINDING_KINDS`.
    detail : str
        Human-readable explanation.
    """

    round: int | None
    node: str
    message: str
    kind: str
    detail: str

    def __str__(self) -> str:
        if self.kind in RUN_KINDS:
            where = "run"
        else:
            where = "round ?" if self.round is None else f"round {self.round}"
        return f"{self.kind}: {where}, node {self.node}, {self.message}: {self.detail}"


@dataclass(frozen=True)
class AuditPins:
    """What the auditor pins of the run; ``None``: not pinned (reported as read).

    Attributes
    ----------
    roster_digest : bytes | None
        The contract's ``rosterDigest`` (the participants in registration order).
    roster : tuple[str, ...] | None
        The participants, in any order (membership is compared).
    candidate_fraction : float | None
        λ: the run must elect ``M = num_candidates(λ, n)``.
    share_fraction : float | None
        The share fraction (compared in ppm, as the chain stores it).
    per_tensor : bool | None
        Whether the share fraction applies per tensor.
    quorum : int | None
        The least ballot quorum the auditor accepts (as a client's ``seccl-quorum``):
        a run quorum below it is a mismatch, and a round elected with fewer ballots
        is below the quorum.
    election_rule : int | None
        The election rule the run must fix (:data:`~seccl_flwr.protocol.params.ELECTION_RULES`).
    committee_size : int | None
        The evaluator committee size k the run must fix (0: full cross-evaluation).
    """

    roster_digest: bytes | None = None
    roster: tuple[str, ...] | None = None
    candidate_fraction: float | None = None
    share_fraction: float | None = None
    per_tensor: bool | None = None
    quorum: int | None = None
    election_rule: int | None = None
    committee_size: int | None = None


def roster_mismatches(
    pins: AuditPins, participants: Sequence[str], on_chain_digest: bytes
) -> list[str]:
    """Return how the contract's roster differs from the pins (empty if it does not).

    The contract's ``rosterDigest`` must also be the digest of its own participants
    (checked only if the run is open: before, it is zero).
    """
    problems = []
    if pins.roster_digest is not None and pins.roster_digest != on_chain_digest:
        problems.append(
            f"rosterDigest 0x{on_chain_digest.hex()} differs from the pinned "
            f"0x{pins.roster_digest.hex()}"
        )
    if pins.roster is not None:
        listed = {to_checksum_address(p) for p in participants}
        pinned = {to_checksum_address(p) for p in pins.roster}
        strangers, absent = sorted(listed - pinned), sorted(pinned - listed)
        if strangers:
            problems.append(f"the roster lists {strangers}, whom the pinned roster does not")
        if absent:
            problems.append(f"the roster lacks the pinned {absent}")
    return problems


@dataclass
class RoundVerdict:
    """Verdict per column of one round: ``ok``, ``FAIL``, ``?`` or ``-``.

    ``updated`` (anchored updates of the roster) and ``voted`` (ballots of the
    anchored authors) are counts, e.g. ``"4/5"``, not verdicts.
    """

    round: int
    updated: str = NOTHING
    voted: str = NOTHING
    updates: str = NOTHING
    ballots: str = NOTHING
    quorum: str = NOTHING
    election: str = NOTHING
    global_model: str = NOTHING
    evaluations: str = NOTHING

    def mark(self, column: str, verdict: str) -> None:
        """Raise the column's verdict to ``verdict`` (FAIL > ? > ok > -)."""
        if _PRECEDENCE[verdict] > _PRECEDENCE[getattr(self, column)]:
            setattr(self, column, verdict)

    @property
    def ok(self) -> bool:
        """Whether no column failed or was left unchecked."""
        return all(getattr(self, c) in (OK, NOTHING) for c in COLUMNS)


@dataclass
class AuditReport:
    """The outcome of :func:`audit_run`.

    Attributes
    ----------
    chain_id, contract, run_id, owner : int, str, str, str
        The audited run.
    params : RunParams
        The run's parameters, as read from the contract.
    participants : list[str]
        The roster, in registration order.
    roster_digest : bytes
        The contract's ``rosterDigest`` (zero if the run is not open).
    is_open : bool
        Whether the run is open.
    pins : AuditPins
        What the auditor pinned.
    rounds : list[RoundVerdict]
        One verdict per round seen on chain, from round 0.
    findings : list[Finding]
        Every mismatch: the run's first, then by round.
    notices : list[Finding]
        Missing updates and ballots (:data:`NOTICE_KINDS`), by round; not failures.
    messages_checked : int
        Stored messages read.
    foreign_skipped : int
        Stored messages of other runs that were skipped (``ignore_foreign``).
    """

    chain_id: int
    contract: str
    run_id: str
    owner: str
    params: RunParams
    participants: list[str]
    roster_digest: bytes
    is_open: bool
    pins: AuditPins = field(default_factory=AuditPins)
    rounds: list[RoundVerdict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notices: list[Finding] = field(default_factory=list)
    messages_checked: int = 0
    foreign_skipped: int = 0

    @property
    def ok(self) -> bool:
        """Whether the audit found nothing wrong."""
        return not self.findings

    def finding_kinds(self) -> set[str]:
        """Return the kinds of the findings."""
        return {f.kind for f in self.findings}


Key = tuple[int, Kind, str]
"""``(round, kind, author)``: what the contract anchors a digest under."""


def chain_anchors(csc: CandidateSelection) -> dict[Key, bytes]:
    """Return every digest the contract anchored, from its events.

    Ballot digests come from ``BallotCast`` (the contract writes them itself when it
    accepts a ballot); all other kinds from ``Anchored``.
    """
    anchors: dict[Key, bytes] = {}
    for log in csc.events("Anchored"):
        args = log["args"]
        key = (int(args["round"]), Kind(int(args["kind"])), to_checksum_address(args["author"]))
        anchors[key] = bytes(args["digest"])
    for log in csc.events("BallotCast"):
        args = log["args"]
        key = (int(args["round"]), Kind.BALLOT, to_checksum_address(args["evaluator"]))
        anchors[key] = bytes(args["digest"])
    return anchors


def _label(kind: Kind, digest: bytes) -> str:
    return f"{kind.name.lower()} {digest_hex(digest)}"


def _signature_problem(message: SignedMessage) -> str | None:
    """Return why the message's signature is wrong, or ``None`` if it is right."""
    try:
        message.verify()
    except SignatureError as exc:
        return str(exc)
    return None


class _Audit:
    """The state of one audit: what the chain anchors, what is verified, the report.

    The checks are this module's ``_check_*`` functions, grouped by what they
    check (messages, the run, withholding, elections, global models), each taking
    the audit's state; :func:`_run_checks` runs them in order and
    :func:`audit_run` is the entry point.
    """

    def __init__(
        self,
        csc: CandidateSelection,
        store: MessageStore,
        ignore_foreign: bool,
        pins: AuditPins,
    ):
        self.csc = csc
        self.store = store
        self.ignore_foreign = ignore_foreign
        self.binding = csc.binding
        self.owner = csc.owner()
        self.params = csc.params()
        self.anchors = chain_anchors(csc)
        self.verified: dict[Key, SignedMessage] = {}
        self._elected: dict[int, bool] = {}
        self._committees: dict[int, dict[str, list[str]] | None] = {}
        self._seeds: dict[int, bytes] = {}
        self._authors: dict[tuple[int, Kind], list[str]] = {}
        for round_, kind, author in self.anchors:
            self._authors.setdefault((round_, kind), []).append(author)
        last = max([csc.last_completed_round(), *(r for r, _, _ in self.anchors)])
        self.report = AuditReport(
            chain_id=self.binding.chain_id,
            contract=self.binding.contract,
            run_id="0x" + self.binding.run_id.hex(),
            owner=self.owner,
            params=self.params,
            participants=csc.participants(),
            roster_digest=csc.roster_digest(),
            is_open=csc.is_open(),
            pins=pins,
            rounds=[RoundVerdict(r) for r in range(last + 1)],
        )

    def elected(self, round_: int) -> bool:
        """Return whether the round's election ran (read once per round)."""
        if round_ not in self._elected:
            self._elected[round_] = self.csc.is_elected(round_)
        return self._elected[round_]

    def authors(self, round_: int, kind: Kind) -> list[str]:
        """Return who has an anchor of ``kind`` in the round (from the chain's events)."""
        return self._authors.get((round_, kind), [])

    # ----------------------------------------------------------------- helpers
    def find(
        self,
        round_: int | None,
        node: str,
        message: str,
        kind: str,
        detail: str,
        column: str | None = None,
    ) -> None:
        """Report a finding; mark the round's ``column`` (if any) as failed."""
        self.report.findings.append(Finding(round_, node, message, kind, detail))
        self.mark(round_, column, FAIL)

    def notice(self, round_: int, node: str, message: str, kind: str, detail: str) -> None:
        """Report a notice (something missing that is no finding)."""
        self.report.notices.append(Finding(round_, node, message, kind, detail))

    def mark(self, round_: int | None, column: str | None, verdict: str) -> None:
        """Set the verdict of a round's column (nothing for no round or no column)."""
        if column is not None and round_ is not None and 0 <= round_ < len(self.report.rounds):
            self.report.rounds[round_].mark(column, verdict)

    def fetch(self, digest: bytes, key: Key | None) -> SignedMessage | None:
        """Return the stored message of ``digest``, or ``None`` after reporting why not."""
        round_, kind, author = key if key is not None else (None, None, "?")
        column = _COLUMN_OF_KIND[kind] if kind is not None else None
        label = _label(kind, digest) if kind is not None else f"message {digest_hex(digest)}"
        try:
            message = self.store.get(digest)
        except MessageNotFoundError:
            self.find(round_, author, label, MISSING_MESSAGE, "not in the store", column)
            return None
        except StoredMessageFormatError as exc:
            self.find(round_, author, label, MALFORMED_MESSAGE, str(exc), column)
            return None
        self.report.messages_checked += 1
        return message

    def quorum(self) -> int:
        """Return the least ballots an election needs: the run's, or the stricter pin."""
        return max(self.params.quorum, self.report.pins.quorum or 0)

    @property
    def committee_size(self) -> int:
        """The run's committee size on chain (0: full cross-evaluation)."""
        return self.params.committee_size

    def committee(self, round_: int) -> dict[str, list[str]] | None:
        """Return the round's committee assignment re-derived from the chain, or ``None``.

        The seed is :func:`~seccl_flwr.protocol.committee.committee_seed` of the seal
        block's hash, read from the auditor's own node, and the XOR of the round's
        anchored update digests (from the ``Anchored`` events); the authors are
        ``updateAuthors`` (anchoring order). ``None`` if the round is not sealed.
        """
        if round_ not in self._committees:
            self._committees[round_] = None
            seal = self.csc.seal_block(round_)
            if seal:
                block_hash = self.csc.block_hash(seal)
                if block_hash is None:
                    raise CommitteeUnavailableError(
                        f"the auditor's node does not return block {seal}, which sealed "
                        f"round {round_}"
                    )
                authors = self.csc.update_authors(round_)
                digests = [self.anchors.get((round_, Kind.UPDATE, a), bytes(32)) for a in authors]
                seed = committee_seed(block_hash, round_seed(digests))
                self._seeds[round_] = seed
                self._committees[round_] = assignments(authors, seed, self.committee_size)
        return self._committees[round_]


# ----------------------------------------------------------------- messages
def _check_anchored(audit: _Audit) -> None:
    """Fetch and check the message behind every anchor."""
    for key in sorted(audit.anchors, key=lambda k: (k[0], k[1], k[2])):
        round_, kind, author = key
        digest = audit.anchors[key]
        column, label = _COLUMN_OF_KIND[kind], _label(kind, digest)
        message = audit.fetch(digest, key)
        if message is None:
            continue
        computed = message.digest()
        if computed != digest:
            audit.find(
                round_,
                author,
                label,
                DIGEST_MISMATCH,
                f"stored content ({message.kind.name.lower()} of {message.author}, round "
                f"{message.round}) hashes to {digest_hex(computed)}",
                column,
            )
            continue
        problem = _signature_problem(message)
        if problem is not None:
            audit.find(round_, author, label, BAD_SIGNATURE, problem, column)
        else:
            audit.mark(round_, column, OK)
        if kind == Kind.BALLOT:
            _check_ballots_complete(audit, round_, message, label)
        audit.verified[key] = message


def _check_unanchored(audit: _Audit) -> None:
    """Check every stored message no anchor refers to."""
    anchored = set(audit.anchors.values())
    for digest in audit.store.digests():
        if digest in anchored:
            continue
        message = audit.fetch(digest, None)
        if message is None:
            continue
        label = _label(message.kind, digest)
        key = (message.round, message.kind, message.author)
        column = _COLUMN_OF_KIND[message.kind]
        if message.binding != audit.binding:
            if audit.ignore_foreign:
                audit.report.foreign_skipped += 1
                continue
            audit.find(
                message.round,
                message.author,
                label,
                FOREIGN_MESSAGE,
                f"belongs to contract {message.binding.contract} on chain "
                f"{message.binding.chain_id}, run 0x{message.binding.run_id.hex()}, "
                f"not to the audited contract {audit.binding.contract} on chain "
                f"{audit.binding.chain_id}",
            )
            continue
        computed = message.digest()
        if computed != digest:
            audit.find(
                message.round,
                message.author,
                label,
                DIGEST_MISMATCH,
                f"stored content hashes to {digest_hex(computed)}",
                column,
            )
            continue
        problem = _signature_problem(message)
        if problem is not None:
            audit.find(message.round, message.author, label, BAD_SIGNATURE, problem, column)
        elif message.kind == Kind.BALLOT:  # a ballot its evaluator signed, never cast
            _check_ballots_complete(audit, message.round, message, label)
        on_chain = audit.anchors.get(key)
        if on_chain is None:
            audit.find(
                message.round,
                message.author,
                label,
                UNANCHORED_MESSAGE,
                "stored, but the chain anchors nothing for its round, kind and author",
                column,
            )
        else:
            audit.find(
                message.round,
                message.author,
                label,
                ANCHOR_MISMATCH,
                f"the chain anchors {digest_hex(on_chain)} for its round, kind and author",
                column,
            )


# ---------------------------------------------------------------------- run
def _check_run(audit: _Audit) -> None:
    """Check that the run is open and its roster and parameters are the pinned ones."""
    report = audit.report
    if not report.is_open:
        audit.find(
            None,
            "contract",
            "run",
            RUN_NOT_OPEN,
            f"the roster of {len(report.participants)} participants is not sealed "
            "(open() was never called): the owner can still add participants",
        )
    problems = roster_mismatches(report.pins, report.participants, report.roster_digest)
    if report.is_open and roster_digest(report.participants) != report.roster_digest:
        problems.append(
            f"rosterDigest 0x{report.roster_digest.hex()} is not the digest of the "
            f"contract's own participants (0x{roster_digest(report.participants).hex()})"
        )
    for problem in problems:
        audit.find(None, "contract", "roster", ROSTER_MISMATCH, problem)
    pins = report.pins
    for problem in param_mismatches(
        audit.params,
        len(report.participants),
        candidate_fraction=pins.candidate_fraction,
        share_fraction=pins.share_fraction,
        per_tensor=pins.per_tensor,
        least_quorum=pins.quorum,
        election_rule=pins.election_rule,
        committee_size=pins.committee_size,
    ):
        audit.find(None, "contract", "params", PARAMETER_MISMATCH, problem)


# --------------------------------------------------------------- withholding
def _check_ballots_complete(audit: _Audit, round_: int, ballot: SignedMessage, label: str) -> None:
    """Check that a ballot scores exactly the round's anchored authors but its evaluator.

    In a committee run: exactly its evaluator's assigned peers (re-derived by
    :meth:`_Audit.committee`), else a :data:`COMMITTEE_MISMATCH`.
    """
    peers = [to_checksum_address(p) for p in ballot.peers]
    if audit.committee_size:
        assigned = audit.committee(round_)
        if assigned is None:
            return  # not derivable: _check_committee reports why
        expected = set(assigned.get(to_checksum_address(ballot.author), ()))
        finding, whom, other = (
            COMMITTEE_MISMATCH,
            f"the {len(expected)} the round's committee seed assigns its evaluator",
            "not assigned",
        )
    else:
        expected = set(audit.authors(round_, Kind.UPDATE)) - {ballot.author}
        finding, whom, other = (
            INCOMPLETE_BALLOT,
            f"the round's {len(expected)} other anchored authors",
            "unexpected",
        )
    missing, extra = sorted(expected - set(peers)), sorted(set(peers) - expected)
    if missing or extra or len(peers) != len(set(peers)):
        audit.find(
            round_,
            ballot.author,
            label,
            finding,
            f"scores {len(peers)} peers, not {whom}: missing {missing}, {other} {extra}"
            + (", a peer twice" if len(peers) != len(set(peers)) else ""),
            "ballots",
        )


def _check_committee(audit: _Audit, round_: int) -> None:
    """Check a committee run's round: ballots only after the seal, the contract's seed.

    The contract draws the committee seed at the round's first ballot; it must be
    the one re-derived from the seal block's hash (the auditor's own node) and the
    anchored update digests.
    """
    if not audit.committee_size or not audit.authors(round_, Kind.UPDATE):
        return
    cast = audit.authors(round_, Kind.BALLOT)
    if audit.committee(round_) is None:
        if cast:
            audit.find(
                round_,
                "contract",
                "committee",
                COMMITTEE_MISMATCH,
                f"{len(cast)} ballot(s) cast, but the round's updates were never sealed: "
                "no committee was drawn",
                "ballots",
            )
        return
    on_chain = audit.csc.committee_seed(round_)
    if on_chain == bytes(32):
        return  # no ballot yet: the contract draws the seed at the first one
    expected = audit._seeds[round_]
    if on_chain != expected:
        audit.find(
            round_,
            "contract",
            "committee",
            COMMITTEE_MISMATCH,
            f"the contract's committee seed 0x{on_chain.hex()} is not the one re-derived "
            f"from seal block {audit.csc.seal_block(round_)}'s hash and the anchored update "
            f"digests (0x{expected.hex()})",
            "ballots",
        )


def _check_quorum(audit: _Audit, round_: int) -> None:
    """Check the round's ballots (``BallotCast`` events) reach the quorum if elected."""
    if not audit.elected(round_):
        return
    cast, quorum = len(audit.authors(round_, Kind.BALLOT)), audit.quorum()
    if cast >= quorum:
        audit.mark(round_, "quorum", OK)
        return
    whose = (
        f"the run's quorum of {quorum}"
        if quorum == audit.params.quorum
        else f"the pinned quorum of {quorum} (the run's is {audit.params.quorum})"
    )
    audit.find(
        round_,
        "contract",
        "election",
        BELOW_QUORUM,
        f"elected with {cast} ballot(s), below {whose}",
        "quorum",
    )


def _check_participation(audit: _Audit, round_: int) -> None:
    """Count who sent an update and who voted; notice the missing ones."""
    verdict = audit.report.rounds[round_]
    roster = audit.report.participants
    authors, voters = audit.authors(round_, Kind.UPDATE), audit.authors(round_, Kind.BALLOT)
    verdict.updated = f"{len(authors)}/{len(roster)}"
    for member in roster:
        if member not in authors:
            audit.notice(
                round_,
                member,
                "update (none)",
                MISSING_UPDATE,
                "no update anchored: the node dropped out, or the server never asked it, "
                "withheld or censored its update (the chain cannot tell which)",
            )
    if not authors:
        return
    verdict.voted = f"{len(voters)}/{len(authors)}"
    if not audit.elected(round_):
        return
    for author in authors:
        if author not in voters:
            audit.notice(
                round_,
                author,
                "ballot (none)",
                MISSING_BALLOT,
                "its update is anchored but it cast no ballot: the node dropped out or "
                "refused to vote, or the server withheld its cross-evaluation or its "
                "ballot (the chain cannot tell which)",
            )


def _check_completed(audit: _Audit, round_: int) -> None:
    """Check that a round whose updates are anchored was elected and aggregated."""
    authors = audit.authors(round_, Kind.UPDATE)
    if not authors:
        return
    if not audit.elected(round_):
        cast = len(audit.authors(round_, Kind.BALLOT))
        audit.find(
            round_,
            "contract",
            "election",
            STALLED_ROUND,
            f"{len(authors)} update(s) anchored, never elected ({cast} ballot(s) cast, "
            f"quorum {audit.quorum()}): the run stopped (or is still running) in this round",
            "election",
        )
    elif (round_, Kind.GLOBAL_MODEL, audit.owner) not in audit.anchors:
        audit.find(
            round_,
            audit.owner,
            "global_model (none)",
            STALLED_ROUND,
            f"elected {audit.csc.candidates_of(round_)}, but no global model was anchored: "
            "the run stopped (or is still running) in this round",
            "global_model",
        )


# ---------------------------------------------------------------- elections
def _check_election(audit: _Audit, round_: int) -> None:
    """Recompute the round's election from the stored ballots.

    The quorum is checked by :func:`_check_quorum`; the tie order must follow the
    contract's round seed, which must be the XOR of the anchored update digests.
    """
    if not audit.elected(round_):
        return
    evaluators = audit.authors(round_, Kind.BALLOT)
    on_chain = audit.csc.evaluators_of(round_)
    if sorted(on_chain) != sorted(evaluators):
        audit.find(
            round_,
            "contract",
            "election",
            ELECTION_MISMATCH,
            f"evaluatorsOf lists {on_chain}, BallotCast events {evaluators}",
            "election",
        )
        return
    if any((round_, Kind.BALLOT, e) not in audit.verified for e in evaluators):
        audit.mark(round_, "election", UNCHECKED)
        return
    authors = audit.csc.update_authors(round_)
    updates = {a: audit.anchors.get((round_, Kind.UPDATE, a), bytes(32)) for a in authors}
    seed, contract_seed = round_seed(updates.values()), audit.csc.round_seed(round_)
    if seed != contract_seed:
        audit.find(
            round_,
            "contract",
            "election",
            ELECTION_MISMATCH,
            f"the contract's round seed 0x{contract_seed.hex()} is not the XOR of the "
            f"round's anchored update digests (0x{seed.hex()}), so its ties are not "
            "broken by an order the server cannot choose",
            "election",
        )
        return
    ballots = {}
    for evaluator in evaluators:
        ballot = audit.verified[(round_, Kind.BALLOT, evaluator)]
        ballots[evaluator] = dict(zip(ballot.peers, ballot.scores, strict=True))
    assigned = None
    if audit.committee_size:
        assigned = audit.committee(round_)
        if assigned is None:  # ballots without a seal: _check_committee's finding
            audit.mark(round_, "election", UNCHECKED)
            return
    try:  # the quorum is _check_quorum's finding; here, the candidates and totals
        expected, expected_totals = elect(
            updates,
            ballots,
            audit.params.num_candidates,
            0,
            audit.params.election_rule,
            assigned=assigned,
        )
    except ElectionError as exc:
        audit.find(
            round_,
            "contract",
            "election",
            ELECTION_MISMATCH,
            f"the stored ballots are not a valid election: {exc}",
            "election",
        )
        return
    candidates, contract_totals = audit.csc.candidates_of(round_), audit.csc.totals_of(round_)
    if expected != candidates or expected_totals != contract_totals:
        audit.find(
            round_,
            "contract",
            "election",
            ELECTION_MISMATCH,
            f"the reference elects {expected} with totals {expected_totals}; the "
            f"contract {candidates} with totals {contract_totals}",
            "election",
        )
    else:
        audit.mark(round_, "election", OK)


# ------------------------------------------------------------- global models
def _check_global(audit: _Audit, round_: int) -> None:
    """Check that global model ``round_`` is the previous one plus the elected merge."""
    key = (round_, Kind.GLOBAL_MODEL, audit.owner)
    if key not in audit.anchors:
        return
    previous = audit.verified.get((round_ - 1, Kind.GLOBAL_MODEL, audit.owner))
    current = audit.verified.get(key)
    candidates = audit.csc.candidates_of(round_)
    updates = [audit.verified.get((round_, Kind.UPDATE, c)) for c in candidates]
    if previous is None or current is None or any(u is None for u in updates):
        audit.mark(round_, "global_model", UNCHECKED)
        return
    label = _label(Kind.GLOBAL_MODEL, audit.anchors[key])
    try:
        expected = next_global_model(
            audit.binding, round_, audit.owner, previous.payload, [u.payload for u in updates]
        )
    except SparseUpdateError as exc:
        audit.find(round_, audit.owner, label, MALFORMED_MESSAGE, str(exc), "updates")
        audit.mark(round_, "global_model", UNCHECKED)
        return
    digest = expected.digest()
    if digest != audit.anchors[key]:
        audit.find(
            round_,
            audit.owner,
            label,
            AGGREGATION_MISMATCH,
            f"not global model {round_ - 1} plus the merge of the elected candidates "
            f"{candidates} (that would be {digest_hex(digest)})",
            "global_model",
        )


def _check_updates_fit(audit: _Audit, round_: int) -> None:
    """Check that every verified update of the round fits the previous global model."""
    previous = audit.verified.get((round_ - 1, Kind.GLOBAL_MODEL, audit.owner))
    if previous is None:
        return
    size = ModelLayout.of(previous.payload).size
    for key, message in list(audit.verified.items()):
        r, kind, author = key
        if r != round_ or kind != Kind.UPDATE:
            continue
        try:
            SparseUpdate.from_arrays(message.payload, size)
        except SparseUpdateError as exc:
            del audit.verified[key]  # not usable to recompute the global model
            label = _label(kind, audit.anchors[key])
            audit.find(r, author, label, MALFORMED_MESSAGE, str(exc), "updates")


# ---------------------------------------------------------------- all checks
def _run_checks(audit: _Audit) -> AuditReport:
    """Run every check in order; return the report, its findings run-wide first."""
    if (0, Kind.GLOBAL_MODEL, audit.owner) not in audit.anchors:
        audit.find(
            0,
            audit.owner,
            "global_model (none)",
            MISSING_ANCHOR,
            "the run anchors no initial global model",
            "global_model",
        )
    _check_run(audit)
    _check_anchored(audit)
    _check_unanchored(audit)
    for verdict in audit.report.rounds[1:]:
        _check_participation(audit, verdict.round)
        _check_updates_fit(audit, verdict.round)
        _check_committee(audit, verdict.round)
        _check_quorum(audit, verdict.round)
        _check_election(audit, verdict.round)
        _check_global(audit, verdict.round)
        _check_completed(audit, verdict.round)
    audit.report.findings.sort(
        key=lambda f: (
            f.kind not in RUN_KINDS,
            f.round is None,
            f.round or 0,
            FINDING_KINDS.index(f.kind),
        )
    )
    return audit.report


def audit_command(chain: str, contract: str, store: str) -> str:
    """Return the ``seccl-flwr audit`` command line that checks a run (shell-quoted)."""
    return (
        f"seccl-flwr audit --chain {shlex.quote(chain)} --contract {contract} "
        f"--store {shlex.quote(store)}"
    )


def audit_run(
    csc: CandidateSelection,
    store: MessageStore,
    *,
    ignore_foreign: bool = False,
    pins: AuditPins | None = None,
) -> AuditReport:
    """Re-derive a whole run from the chain and the message store.

    Parameters
    ----------
    csc : CandidateSelection
        The run's contract, attached read-only (use
        :meth:`~seccl_flwr.chain.csc.CandidateSelection.attach`, which checks that
        the code at the address is the SecCL contract).
    store : MessageStore
        The published messages of the run.
    ignore_foreign : bool (default: False)
        Skip stored messages of other chains, contracts or runs (a store shared by
        several runs) instead of reporting them as :data:`FOREIGN_MESSAGE`.
    pins : AuditPins | None (default: None)
        The roster and parameters the auditor expects; ``None`` pins nothing (the
        run's are read and reported, not checked).

    Returns
    -------
    AuditReport
        Per-round verdicts, every finding and notice; ``report.ok`` if there is no
        finding (notices do not count).
    """
    return _run_checks(_Audit(csc, store, ignore_foreign, pins or AuditPins()))


def _pinned(read: str, pinned: object, differs: bool) -> str:
    """Return ``read`` with what the auditor pinned and whether it matches."""
    if pinned is None:
        return f"{read} (not pinned)"
    return f"{read} (pinned {pinned}: {'MISMATCH' if differs else 'matches'})"


def describe_run(report: AuditReport) -> list[str]:
    """Return the lines naming the roster and parameters the audit read, with the pins."""
    pins, params, n = report.pins, report.params, len(report.participants)
    roster_pins = [
        ("digest", None if pins.roster_digest is None else "0x" + pins.roster_digest.hex()),
        ("", None if pins.roster is None else f"{len(pins.roster)} members"),
    ]
    roster_problems = roster_mismatches(pins, report.participants, report.roster_digest)
    roster_pin = [f"{what} {value}".strip() for what, value in roster_pins if value is not None]
    m = None if pins.candidate_fraction is None else num_candidates(pins.candidate_fraction, n)
    ppm = None if pins.share_fraction is None else share_fraction_ppm(pins.share_fraction)
    rule = ELECTION_RULES.get(params.election_rule, "unknown")
    return [
        f"run {'open' if report.is_open else 'NOT OPEN'}; roster: {n} participants, "
        + _pinned(
            f"rosterDigest 0x{report.roster_digest.hex()}",
            ", ".join(roster_pin) or None,
            bool(roster_problems),
        ),
        "params: "
        + "; ".join(
            [
                _pinned(
                    f"M = {params.num_candidates}",
                    None if m is None else f"λ {pins.candidate_fraction} -> M = {m}",
                    m is not None and m != params.num_candidates,
                ),
                _pinned(
                    f"quorum = {params.quorum}",
                    None if pins.quorum is None else f"at least {pins.quorum}",
                    pins.quorum is not None and params.quorum < pins.quorum,
                ),
                _pinned(
                    f"share fraction = {params.share_fraction_ppm / PPM:g} "
                    f"({params.share_fraction_ppm} ppm)",
                    pins.share_fraction,
                    ppm is not None and ppm != params.share_fraction_ppm,
                ),
                _pinned(
                    f"per-tensor = {str(params.per_tensor).lower()}",
                    None if pins.per_tensor is None else str(pins.per_tensor).lower(),
                    pins.per_tensor is not None and pins.per_tensor != params.per_tensor,
                ),
                _pinned(
                    f"election rule = {params.election_rule} ({rule})",
                    None
                    if pins.election_rule is None
                    else f"{pins.election_rule} ({ELECTION_RULES[pins.election_rule]})",
                    pins.election_rule is not None and pins.election_rule != params.election_rule,
                ),
                _pinned(
                    f"committee size = {params.committee_size}",
                    pins.committee_size,
                    pins.committee_size is not None
                    and pins.committee_size != params.committee_size,
                ),
            ]
        ),
    ]


_TABLE = (
    ("round", "round"),
    ("updated", "updated"),
    ("voted", "voted"),
    *((c if c != "global_model" else "global", c) for c in COLUMNS),
)
"""The verdict table's columns: (header, :class:`RoundVerdict` attribute)."""


def format_report(report: AuditReport) -> str:
    """Return the run's roster and parameters, the verdict table, findings and notices."""
    header = [h for h, _ in _TABLE]
    lines = [[str(getattr(v, attribute)) for _, attribute in _TABLE] for v in report.rounds]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    out = [
        f"audit of contract {report.contract} on chain {report.chain_id} "
        f"(run {report.run_id}, owner {report.owner}): {report.messages_checked} stored "
        "messages read"
        + (f", {report.foreign_skipped} of other runs skipped" if report.foreign_skipped else ""),
        *describe_run(report),
        fmt.format(*header),
        *(fmt.format(*line) for line in lines),
    ]
    if report.notices:
        out.append(
            f"{len(report.notices)} notice(s) (not failures: a dropout and a server that "
            "withheld a node look alike on chain):"
        )
        out.extend(f"  {notice}" for notice in report.notices)
    if report.ok:
        out.append("audit passed: the run, every message, election and global model check out")
    else:
        out.append(f"{len(report.findings)} finding(s):")
        out.extend(f"  {finding}" for finding in report.findings)
        out.append(f"audit FAILED: {report.findings[0]}")
    return "\n".join(out)

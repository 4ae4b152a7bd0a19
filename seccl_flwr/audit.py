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
  stored ballots elects the contract's candidates with the contract's totals;
* **global models** - global model ``r`` equals global model ``r - 1`` plus the merge
  (:func:`~seccl_flwr.protocol.sparse.aggregate`) of exactly the elected
  candidates' stored updates, in the contract's order.

Every mismatch is a :class:`Finding` that names the round, the node and the
message; :class:`RoundVerdict` summarises each round.
"""

from dataclasses import dataclass, field

from eth_utils import to_checksum_address

from .chain.csc import CandidateSelection
from .errors import SignatureError, SparseUpdateError
from .protocol.borda import ElectionError, elect
from .protocol.eip712 import Kind
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

FINDING_KINDS = (
    DIGEST_MISMATCH,
    BAD_SIGNATURE,
    ELECTION_MISMATCH,
    AGGREGATION_MISMATCH,
    MISSING_MESSAGE,
    ANCHOR_MISMATCH,
    MALFORMED_MESSAGE,
    UNANCHORED_MESSAGE,
    FOREIGN_MESSAGE,
    MISSING_ANCHOR,
)
"""Every kind of finding, most telling first: findings of a round are reported in this
order (a tampered or forged message before the gaps it leaves)."""

OK, FAIL, UNCHECKED, NOTHING = "ok", "FAIL", "?", "-"
"""Verdicts of one column of a round: checked and right, wrong, not checkable
(inputs missing or wrong, see the findings), nothing to check."""
_PRECEDENCE = {NOTHING: 0, OK: 1, UNCHECKED: 2, FAIL: 3}

COLUMNS = ("updates", "ballots", "election", "global_model", "evaluations")
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
        where = "round ?" if self.round is None else f"round {self.round}"
        return f"{self.kind}: {where}, node {self.node}, {self.message}: {self.detail}"


@dataclass
class RoundVerdict:
    """Verdict per column of one round: ``ok``, ``FAIL``, ``?`` or ``-``."""

    round: int
    updates: str = NOTHING
    ballots: str = NOTHING
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
    rounds : list[RoundVerdict]
        One verdict per round seen on chain, from round 0.
    findings : list[Finding]
        Every mismatch, by round.
    messages_checked : int
        Stored messages read.
    foreign_skipped : int
        Stored messages of other runs that were skipped (``ignore_foreign``).
    """

    chain_id: int
    contract: str
    run_id: str
    owner: str
    rounds: list[RoundVerdict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
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
    """State of one audit; :func:`audit_run` is its only entry point."""

    def __init__(self, csc: CandidateSelection, store: MessageStore, ignore_foreign: bool):
        self.csc = csc
        self.store = store
        self.ignore_foreign = ignore_foreign
        self.binding = csc.binding
        self.owner = csc.owner()
        self.anchors = chain_anchors(csc)
        self.verified: dict[Key, SignedMessage] = {}
        last = max([csc.last_completed_round(), *(r for r, _, _ in self.anchors)])
        self.report = AuditReport(
            chain_id=self.binding.chain_id,
            contract=self.binding.contract,
            run_id="0x" + self.binding.run_id.hex(),
            owner=self.owner,
            rounds=[RoundVerdict(r) for r in range(last + 1)],
        )

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
        self.report.findings.append(Finding(round_, node, message, kind, detail))
        self.mark(round_, column, FAIL)

    def mark(self, round_: int | None, column: str | None, verdict: str) -> None:
        if column is not None and round_ is not None and 0 <= round_ < len(self.report.rounds):
            self.report.rounds[round_].mark(column, verdict)

    def fetch(self, digest: bytes, key: Key | None) -> SignedMessage | None:
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

    # ----------------------------------------------------------------- messages
    def check_anchored(self) -> None:
        """Fetch and check the message behind every anchor."""
        for key in sorted(self.anchors, key=lambda k: (k[0], k[1], k[2])):
            round_, kind, author = key
            digest = self.anchors[key]
            column, label = _COLUMN_OF_KIND[kind], _label(kind, digest)
            message = self.fetch(digest, key)
            if message is None:
                continue
            computed = message.digest()
            if computed != digest:
                self.find(
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
                self.find(round_, author, label, BAD_SIGNATURE, problem, column)
            else:
                self.mark(round_, column, OK)
            self.verified[key] = message

    def check_unanchored(self) -> None:
        """Check every stored message no anchor refers to."""
        anchored = set(self.anchors.values())
        for digest in self.store.digests():
            if digest in anchored:
                continue
            message = self.fetch(digest, None)
            if message is None:
                continue
            label = _label(message.kind, digest)
            key = (message.round, message.kind, message.author)
            column = _COLUMN_OF_KIND[message.kind]
            if message.binding != self.binding:
                if self.ignore_foreign:
                    self.report.foreign_skipped += 1
                    continue
                self.find(
                    message.round,
                    message.author,
                    label,
                    FOREIGN_MESSAGE,
                    f"belongs to contract {message.binding.contract} on chain "
                    f"{message.binding.chain_id}, run 0x{message.binding.run_id.hex()}, "
                    f"not to the audited contract {self.binding.contract} on chain "
                    f"{self.binding.chain_id}",
                )
                continue
            computed = message.digest()
            if computed != digest:
                self.find(
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
                self.find(message.round, message.author, label, BAD_SIGNATURE, problem, column)
            on_chain = self.anchors.get(key)
            if on_chain is None:
                self.find(
                    message.round,
                    message.author,
                    label,
                    UNANCHORED_MESSAGE,
                    "stored, but the chain anchors nothing for its round, kind and author",
                    column,
                )
            else:
                self.find(
                    message.round,
                    message.author,
                    label,
                    ANCHOR_MISMATCH,
                    f"the chain anchors {digest_hex(on_chain)} for its round, kind and author",
                    column,
                )

    # ---------------------------------------------------------------- elections
    def check_election(self, round_: int) -> None:
        """Recompute the round's election from the stored ballots."""
        if not self.csc.is_elected(round_):
            return
        evaluators = [a for (r, k, a) in self.anchors if r == round_ and k == Kind.BALLOT]
        on_chain = self.csc.evaluators_of(round_)
        if sorted(on_chain) != sorted(evaluators):
            self.find(
                round_,
                "contract",
                "election",
                ELECTION_MISMATCH,
                f"evaluatorsOf lists {on_chain}, BallotCast events {evaluators}",
                "election",
            )
            return
        if any((round_, Kind.BALLOT, e) not in self.verified for e in evaluators):
            self.mark(round_, "election", UNCHECKED)
            return
        authors = self.csc.update_authors(round_)
        updates = {a: self.anchors.get((round_, Kind.UPDATE, a), bytes(32)) for a in authors}
        ballots = {}
        for evaluator in evaluators:
            ballot = self.verified[(round_, Kind.BALLOT, evaluator)]
            ballots[evaluator] = dict(zip(ballot.peers, ballot.scores, strict=True))
        params = self.csc.params()
        try:
            expected, expected_totals = elect(
                updates, ballots, params.num_candidates, params.quorum
            )
        except ElectionError as exc:
            self.find(
                round_,
                "contract",
                "election",
                ELECTION_MISMATCH,
                f"the stored ballots are not a valid election: {exc}",
                "election",
            )
            return
        candidates, contract_totals = self.csc.candidates_of(round_), self.csc.totals_of(round_)
        if expected != candidates or expected_totals != contract_totals:
            self.find(
                round_,
                "contract",
                "election",
                ELECTION_MISMATCH,
                f"the reference elects {expected} with totals {expected_totals}; the "
                f"contract {candidates} with totals {contract_totals}",
                "election",
            )
        else:
            self.mark(round_, "election", OK)

    # ------------------------------------------------------------- global models
    def check_global(self, round_: int) -> None:
        """Check that global model ``round_`` is the previous one plus the elected merge."""
        key = (round_, Kind.GLOBAL_MODEL, self.owner)
        if key not in self.anchors:
            return
        previous = self.verified.get((round_ - 1, Kind.GLOBAL_MODEL, self.owner))
        current = self.verified.get(key)
        candidates = self.csc.candidates_of(round_)
        updates = [self.verified.get((round_, Kind.UPDATE, c)) for c in candidates]
        if previous is None or current is None or any(u is None for u in updates):
            self.mark(round_, "global_model", UNCHECKED)
            return
        label = _label(Kind.GLOBAL_MODEL, self.anchors[key])
        try:
            expected = next_global_model(
                self.binding, round_, self.owner, previous.payload, [u.payload for u in updates]
            )
        except SparseUpdateError as exc:
            self.find(round_, self.owner, label, MALFORMED_MESSAGE, str(exc), "updates")
            self.mark(round_, "global_model", UNCHECKED)
            return
        digest = expected.digest()
        if digest != self.anchors[key]:
            self.find(
                round_,
                self.owner,
                label,
                AGGREGATION_MISMATCH,
                f"not global model {round_ - 1} plus the merge of the elected candidates "
                f"{candidates} (that would be {digest_hex(digest)})",
                "global_model",
            )

    def check_updates_fit(self, round_: int) -> None:
        """Check that every verified update of the round fits the previous global model."""
        previous = self.verified.get((round_ - 1, Kind.GLOBAL_MODEL, self.owner))
        if previous is None:
            return
        size = ModelLayout.of(previous.payload).size
        for key, message in list(self.verified.items()):
            r, kind, author = key
            if r != round_ or kind != Kind.UPDATE:
                continue
            try:
                SparseUpdate.from_arrays(message.payload, size)
            except SparseUpdateError as exc:
                del self.verified[key]  # not usable to recompute the global model
                label = _label(kind, self.anchors[key])
                self.find(r, author, label, MALFORMED_MESSAGE, str(exc), "updates")

    # --------------------------------------------------------------------- run
    def run(self) -> AuditReport:
        if (0, Kind.GLOBAL_MODEL, self.owner) not in self.anchors:
            self.find(
                0,
                self.owner,
                "global_model (none)",
                MISSING_ANCHOR,
                "the run anchors no initial global model",
                "global_model",
            )
        self.check_anchored()
        self.check_unanchored()
        for verdict in self.report.rounds[1:]:
            self.check_updates_fit(verdict.round)
            self.check_election(verdict.round)
            self.check_global(verdict.round)
        self.report.findings.sort(
            key=lambda f: (f.round is None, f.round or 0, FINDING_KINDS.index(f.kind))
        )
        return self.report


def audit_run(
    csc: CandidateSelection, store: MessageStore, *, ignore_foreign: bool = False
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

    Returns
    -------
    AuditReport
        Per-round verdicts and every finding; ``report.ok`` if there is none.
    """
    return _Audit(csc, store, ignore_foreign).run()


def format_report(report: AuditReport) -> str:
    """Return the per-round verdict table followed by the findings."""
    header = ["round", "updates", "ballots", "election", "global", "evaluations"]
    lines = [
        [str(v.round), v.updates, v.ballots, v.election, v.global_model, v.evaluations]
        for v in report.rounds
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    out = [
        f"audit of contract {report.contract} on chain {report.chain_id} "
        f"(run {report.run_id}, owner {report.owner}): {report.messages_checked} stored "
        "messages read"
        + (f", {report.foreign_skipped} of other runs skipped" if report.foreign_skipped else ""),
        fmt.format(*header),
        *(fmt.format(*line) for line in lines),
    ]
    if report.ok:
        out.append("audit passed: every message, election and global model checks out")
    else:
        out.append(f"{len(report.findings)} finding(s):")
        out.extend(f"  {finding}" for finding in report.findings)
        out.append(f"audit FAILED: {report.findings[0]}")
    return "\n".join(out)

"""Checks of what a node receives, as pure functions.

The server checks every client reply before it uses it: :func:`verify_update`,
:func:`verify_ballot` and :func:`verify_evaluation` take the round's
:class:`ReplyRules` and one reply and return the verified :class:`SignedMessage`, or
raise a :class:`~seccl_flwr.errors.VerificationError` that names the round, the node
and what is wrong; :func:`accept_replies` keeps the verified replies of a phase and
records why each other one was dropped. Only protocol errors drop a reply: anything
else is a bug and surfaces.

Both sides decode an update with :func:`read_update` and check a signature with
:func:`check_signature`, so the same fault raises the same error on the server and
on a client (e.g. a bad update signature is an ``UpdateSignatureError`` on both).
"""

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from logging import WARNING

from eth_utils import is_address, to_checksum_address
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log

from . import wire
from .errors import (
    BallotSignatureError,
    EncodingError,
    EvaluationSignatureError,
    JoinSignatureError,
    MalformedMessageError,
    SignatureError,
    SparseUpdateError,
    UpdateSignatureError,
    VerificationError,
)
from .metering import CRYPTO, metered
from .protocol.eip712 import MAX_SCORE, Kind, RunBinding, verify_join
from .protocol.encoding import metrics_to_arrays
from .protocol.signed import SignedMessage
from .protocol.sparse import ModelLayout, SparseUpdate, entry_limit
from .records import arrays_of

SIGNATURE_ERRORS: dict[Kind, type[VerificationError]] = {
    Kind.UPDATE: UpdateSignatureError,
    Kind.BALLOT: BallotSignatureError,
    Kind.EVALUATION: EvaluationSignatureError,
}
"""The protocol error a bad signature raises, per message kind."""


@dataclass(frozen=True)
class ReplyRules:
    """What the replies of one round must satisfy.

    Attributes
    ----------
    binding : RunBinding
        The run every signature is bound to.
    round : int
        The server round.
    participants : Mapping[int, str]
        Node id -> registered address.
    layout : ModelLayout
        The global model's layout (updates must fit it).
    share_fraction : float
        Share of the parameters an update may change.
    per_tensor : bool
        Whether the share applies per tensor.
    weighted_by_key : str
        The metric that weights averages (must be present and non-negative).
    """

    binding: RunBinding
    round: int
    participants: Mapping[int, str]
    layout: ModelLayout
    share_fraction: float
    per_tensor: bool = False
    weighted_by_key: str = "num-examples"


def check_signature(message: SignedMessage) -> None:
    """Check that ``message`` is signed by its author.

    Raises
    ------
    UpdateSignatureError, BallotSignatureError, EvaluationSignatureError
        By the message's kind, if the signature is malformed or made by someone else.
    MalformedMessageError
        If the message cannot be hashed (e.g. a metric name longer than the
        encoding allows).
    """
    with metered(CRYPTO):
        try:
            message.verify()
        except SignatureError as exc:
            raise SIGNATURE_ERRORS[message.kind](message.round, message.author, str(exc)) from exc
        except EncodingError as exc:
            raise MalformedMessageError(message.round, message.author, str(exc)) from exc


def read_update(
    round_: int, author: str, record: ArrayRecord, layout: ModelLayout, limit: int
) -> SparseUpdate:
    """Decode an update sent as ``record``: at most ``limit`` entries fitting ``layout``.

    Raises
    ------
    MalformedMessageError
        If the record is not a well-formed sparse update of the model.
    """
    try:
        return SparseUpdate.from_arrays(arrays_of(record), layout.size, limit)
    except (EncodingError, SparseUpdateError) as exc:
        raise MalformedMessageError(round_, author, str(exc)) from exc


def checked_metrics(
    round_: int, sender: str, content: RecordDict, weighted_by_key: str
) -> MetricRecord:
    """Return a reply's only MetricRecord once every value is a finite number.

    Raises
    ------
    MalformedMessageError
        If the reply holds another MetricRecord layout, a list, NaN or infinite value,
        or a missing or negative weight ``weighted_by_key``.
    """
    records = content.metric_records
    if list(records) != [wire.METRICS]:
        raise MalformedMessageError(
            round_, sender, f"expected one MetricRecord {wire.METRICS!r}, got {list(records)}"
        )
    metrics = records[wire.METRICS]
    for key, value in metrics.items():
        if isinstance(value, list) or not math.isfinite(value):
            raise MalformedMessageError(
                round_, sender, f"metric {key!r} must be a finite number, got {value!r:.80}"
            )
    if metrics.get(weighted_by_key, -1) < 0:
        raise MalformedMessageError(
            round_, sender, f"metric {weighted_by_key!r} missing or negative"
        )
    return metrics


def seccl_fields(
    round_: int, sender: str, reply: Message, claim: str | None = None
) -> ConfigRecord:
    """Return a reply's SecCL fields.

    Raises
    ------
    VerificationError
        If the reply is an error (the node failed).
    MalformedMessageError
        If it has no SecCL fields, or the field ``claim`` (e.g. ``"author"``) names
        another sender than ``sender``.
    """
    if reply.has_error():
        raise VerificationError(round_, sender, f"node error: {reply.error.reason}")
    fields = reply.content.config_records.get(wire.SECCL_KEY)
    if fields is None:
        raise MalformedMessageError(round_, sender, f"no {wire.SECCL_KEY!r} ConfigRecord")
    if claim is not None and wire.typed_field(round_, sender, fields, claim, str) != sender:
        raise MalformedMessageError(round_, sender, f"claims to be {fields[claim]}")
    return fields


def _sender(rules: ReplyRules, reply: Message) -> str:
    """Return the registered address of the node that sent ``reply``.

    Raises
    ------
    MalformedMessageError
        If the node is not a registered participant.
    """
    node = reply.metadata.src_node_id
    if node not in rules.participants:
        raise MalformedMessageError(rules.round, str(node), "unknown node")
    return rules.participants[node]


def verify_registration(run_id: bytes, chain_id: int, reply: Message) -> tuple[str, bytes]:
    """Return a registration reply's address and Join signature once the signature proves it.

    Errors name the node id that sent the reply (the only sender known before
    registration), never the address it claims: a node that claims another's
    address is the one reported.

    Raises
    ------
    VerificationError
        The node failed, or (``MalformedMessageError``) the reply has no address or
        signature of the right type; ``JoinSignatureError`` if the signature is not
        the claimed address's ``Join(run_id, address)`` on chain ``chain_id``.
    """
    node = str(reply.metadata.src_node_id)
    fields = seccl_fields(0, node, reply)
    address = wire.typed_field(0, node, fields, wire.ADDRESS, str)
    if not is_address(address):
        raise MalformedMessageError(0, node, f"{address!r:.80} is no address")
    signature = wire.typed_field(0, node, fields, wire.JOIN_SIGNATURE, bytes)
    try:
        verify_join(run_id, chain_id, address, signature)
    except SignatureError as exc:
        raise JoinSignatureError(
            0, node, f"claims address {address}, but its join signature does not prove it: {exc}"
        ) from exc
    return to_checksum_address(address), signature


def verify_update(rules: ReplyRules, reply: Message) -> SignedMessage:
    """Return a train reply's update once its sender, form, metrics and signature check out.

    Raises
    ------
    VerificationError
        The node failed, or (``MalformedMessageError``) the reply comes from an
        unknown node, claims another author, has malformed metrics or update;
        ``UpdateSignatureError`` if the update is not signed by its author.
    """
    author = _sender(rules, reply)
    fields = seccl_fields(rules.round, author, reply, claim=wire.AUTHOR)
    checked_metrics(rules.round, author, reply.content, rules.weighted_by_key)
    if wire.UPDATE not in reply.content.array_records:
        raise MalformedMessageError(rules.round, author, f"no {wire.UPDATE!r} ArrayRecord")
    limit = entry_limit(rules.layout, rules.share_fraction, rules.per_tensor)
    record = reply.content.array_records[wire.UPDATE]
    update = read_update(rules.round, author, record, rules.layout, limit)
    signature = wire.typed_field(rules.round, author, fields, wire.SIGNATURE, bytes)
    message = SignedMessage(
        rules.binding, rules.round, Kind.UPDATE, author, update.to_arrays(), signature
    )
    check_signature(message)
    return message


def verify_ballot(
    rules: ReplyRules,
    reply: Message,
    authors: Iterable[str],
    assigned: Mapping[str, Sequence[str]] | None = None,
) -> SignedMessage:
    """Return a cross-evaluation reply's ballot once it is complete, in range and signed.

    ``authors`` are the round's anchored update authors: a ballot scores exactly
    those other than its evaluator (the contract refuses any other ballot, and with
    it the whole batch). In a run with evaluator committees, ``assigned`` is the
    round's assignment (:func:`seccl_flwr.protocol.committee.assignments`, read
    through :meth:`~seccl_flwr.chain.csc.CandidateSelection.committee_assignment`):
    a ballot then scores exactly its evaluator's assigned peers, in any order. An
    honest evaluator never sends an incomplete ballot: it answers with the error
    that stopped it instead.

    Raises
    ------
    VerificationError
        The node failed, or (``MalformedMessageError``) the reply comes from an
        unknown node, claims another evaluator, has mistyped fields, peers and
        scores that do not match, scores itself or a non-author, leaves out an
        author, or has a score out of range; ``BallotSignatureError`` if the
        ballot is not signed by its evaluator.
    """
    evaluator = _sender(rules, reply)
    round_ = rules.round
    fields = seccl_fields(round_, evaluator, reply, claim=wire.EVALUATOR)
    peers = wire.typed_list_field(round_, evaluator, fields, wire.PEERS, str)
    scores = wire.typed_list_field(round_, evaluator, fields, wire.SCORES, int)
    if len(peers) != len(scores) or len(set(peers)) != len(peers):
        raise MalformedMessageError(round_, evaluator, "peers and scores do not match")
    if evaluator in peers or not set(peers) <= set(authors):
        raise MalformedMessageError(round_, evaluator, "scores itself or a non-author")
    if assigned is None:
        missing = set(authors) - {evaluator} - set(peers)
        if missing:
            raise MalformedMessageError(
                round_,
                evaluator,
                f"incomplete ballot: {len(missing)} of the round's authors unscored "
                f"({sorted(missing)})",
            )
    else:
        expected = set(assigned.get(evaluator, ()))
        missing, extra = sorted(expected - set(peers)), sorted(set(peers) - expected)
        if missing or extra:
            raise MalformedMessageError(
                round_,
                evaluator,
                f"the ballot does not score the evaluator's {len(expected)} assigned peers: "
                f"missing {missing}, not assigned {extra}",
            )
    if any(not 0 <= s <= MAX_SCORE for s in scores):
        raise MalformedMessageError(round_, evaluator, f"score out of range [0, {MAX_SCORE}]")
    signature = wire.typed_field(round_, evaluator, fields, wire.SIGNATURE, bytes)
    ballot = SignedMessage(
        rules.binding,
        round_,
        Kind.BALLOT,
        evaluator,
        signature=signature,
        peers=tuple(peers),
        scores=tuple(scores),
    )
    check_signature(ballot)
    return ballot


def verify_evaluation(rules: ReplyRules, reply: Message) -> SignedMessage:
    """Return an evaluate reply's signed metrics once they are finite and signed.

    Raises
    ------
    VerificationError
        The node failed, or (``MalformedMessageError``) the reply comes from an
        unknown node or has malformed metrics; ``EvaluationSignatureError`` if the
        metrics are not signed by the node.
    """
    author = _sender(rules, reply)
    fields = seccl_fields(rules.round, author, reply)
    metrics = dict(checked_metrics(rules.round, author, reply.content, rules.weighted_by_key))
    signature = wire.typed_field(rules.round, author, fields, wire.SIGNATURE, bytes)
    message = SignedMessage(
        rules.binding, rules.round, Kind.EVALUATION, author, metrics_to_arrays(metrics), signature
    )
    check_signature(message)
    return message


def accept_replies(
    replies: Iterable[Message],
    verify: Callable[[Message], SignedMessage],
    phase: str,
    participants: Mapping[int, str],
    dropped: dict[str, str],
) -> dict[str, tuple[SignedMessage, Message]]:
    """Verify each reply of a phase; return the verified ones by author, first one each.

    A reply that fails with a :class:`~seccl_flwr.errors.VerificationError` (or is a
    second one of its author) is dropped: ``dropped["<phase>:<node>"]`` says why.
    """
    accepted: dict[str, tuple[SignedMessage, Message]] = {}
    for reply in replies:
        node = reply.metadata.src_node_id
        try:
            message = verify(reply)
            if message.author in accepted:
                raise MalformedMessageError(
                    message.round, message.author, f"second {message.kind.name.lower()}"
                )
        except VerificationError as exc:
            dropped[f"{phase}:{participants.get(node, node)}"] = str(exc)
            log(WARNING, "SecCL: %s reply of node %s dropped: %s", phase, node, exc)
            continue
        accepted[message.author] = (message, reply)
    return accepted

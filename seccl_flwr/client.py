"""Client side of SecCL: Flower ClientApp handlers and PyTorch helpers.

The handlers verify everything they receive against the node's own chain endpoint
before using it, and sign everything they send:

* ``train``: check the global model against its anchor (and, when this node
  cross-evaluated the previous round, that it equals old model + merge of exactly
  the elected updates, and that its ballot is on chain), train, keep the top
  ``share-fraction`` changes, sign.
* ``query.seccl_evaluate``: check every peer update's signature and anchor, score
  each verified one on the local validation split (macro F1), sign the score vector.
* ``evaluate``: check the global model's anchor, evaluate, sign the metrics.
* ``query.seccl_register``: tell the server this node's address, proven by its
  signature of ``Join(run id, address)`` on its own chain endpoint's chain id.

Message types, record keys and fields are those of :mod:`seccl_flwr.wire`. Use
:func:`seccl_client_app` for a ready ClientApp, or call the ``handle_*`` functions
from your own handlers.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from logging import WARNING
from typing import TYPE_CHECKING, Any

import numpy as np
from eth_utils import is_address
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.common.logger import log

from . import wire
from .chain.connection import connect
from .chain.csc import CandidateSelection
from .chain.errors import ChainError
from .errors import (
    AggregationMismatchError,
    BallotMissingError,
    EncodingError,
    GlobalModelMismatchError,
    MalformedMessageError,
    UntrustedContractError,
    UpdateDigestMismatchError,
    VerificationError,
)
from .identity import CHAIN_URL, CONTRACT, load_account, setting
from .metering import CHAIN_READ, CRYPTO, EVALUATE, SCORE, TRAIN, metered
from .protocol.eip712 import MAX_SCORE, Kind, sign_join
from .protocol.encoding import metrics_to_arrays
from .protocol.signed import SignedMessage, next_global_model
from .protocol.sparse import ModelLayout, SparseUpdate, apply_update, entry_limit, sparsify
from .records import arrays_of, record_of
from .verify import check_signature, read_update

if TYPE_CHECKING:
    from .attacks.client import ClientAttack

TrainFn = Callable[[dict[str, np.ndarray], ConfigRecord], tuple[dict[str, np.ndarray], dict]]
"""``(global arrays, config) -> (trained arrays, metrics incl. 'num-examples')``."""
ScoreFn = Callable[[dict[str, np.ndarray]], float]
"""``arrays -> macro F1`` on the local validation split."""
EvaluateFn = Callable[[dict[str, np.ndarray]], dict]
"""``arrays -> metrics`` (e.g. loss, accuracy, macro-f1, num-examples)."""

_MEMO = "seccl.memo"
_PREV_GLOBAL = "seccl.prev-global"
_UPDATE_PREFIX = "seccl.update."
_OWN_UPDATE = "seccl.own-update"
_GLOBAL_ANCHORS = "seccl.global-anchors"
_CONTRACTS: dict[tuple[str, str, str], CandidateSelection] = {}


def _chain_url(context: Context) -> str:
    """Return the node's own chain endpoint (node config, else run config).

    Raises
    ------
    UntrustedContractError
        If none is configured.
    """
    url = setting(context, CHAIN_URL)
    if url is None:
        raise UntrustedContractError(
            f"node {context.node_id} has no chain endpoint: set '{CHAIN_URL}'"
        )
    return url


def trusted_contract(context: Context, config: ConfigRecord) -> CandidateSelection:
    """Return the run's contract on the node's own chain endpoint, checked once.

    The endpoint comes from the node or run config, never from the server. The
    address is the pinned ``seccl-contract`` if configured; otherwise the one the
    server names, accepted only if its code is the SecCL artifact and the run lists
    this node's address.

    Raises
    ------
    UntrustedContractError
        If the contract fails these checks or the pinned and named addresses differ.
    """
    url = _chain_url(context)
    named = str(config.get(wire.CONTRACT, ""))
    pinned = setting(context, CONTRACT)
    address = pinned or named
    if pinned and named and pinned.lower() != named.lower():
        raise UntrustedContractError(
            f"server names contract {named}, but this node is pinned to {pinned}"
        )
    if not is_address(address):
        raise UntrustedContractError(f"{address!r} is not a contract address")
    account = load_account(context)
    key = (url, address.lower(), account.address)
    if key not in _CONTRACTS:
        try:
            with metered(CHAIN_READ):
                csc = CandidateSelection.attach(connect(url), address)
                members = csc.participants()
        except ChainError as exc:
            raise UntrustedContractError(f"contract {address} rejected: {exc}") from exc
        if account.address not in members:
            raise UntrustedContractError(
                f"contract {address} does not list this node's address {account.address}"
            )
        _CONTRACTS[key] = csc
    return _CONTRACTS[key]


@dataclass
class VerifiedRound:
    """What a handler has checked before it uses a server message.

    The run's contract on the node's own endpoint, the node's account, the round, the
    global model (arrays, layout and anchored digest) and the server's SecCL fields.
    """

    csc: CandidateSelection
    account: Any
    round: int
    arrays: dict[str, np.ndarray]
    layout: ModelLayout
    global_digest: bytes
    config: ConfigRecord = field(default_factory=ConfigRecord)


def _anchored_global(
    context: Context, csc: CandidateSelection, model_round: int, owner: str
) -> bytes:
    """Return the digest anchored for a round's global model, read from chain once.

    The contract never overwrites an anchor, so once read it is kept in the node's
    state (per contract, for the last two rounds): the train, cross-evaluate and
    evaluate handlers of consecutive messages share one read.
    """
    cache = context.state.config_records.get(_GLOBAL_ANCHORS, ConfigRecord())
    key = f"{csc.address}:{model_round}"
    if key in cache:
        return bytes(cache[key])
    with metered(CHAIN_READ):
        anchored = csc.anchor_of(model_round, Kind.GLOBAL_MODEL, owner)
    if anchored != bytes(32):
        kept = {
            k: v
            for k, v in cache.items()
            if k.startswith(f"{csc.address}:") and int(k.rsplit(":", 1)[1]) >= model_round - 1
        }
        context.state[_GLOBAL_ANCHORS] = ConfigRecord({**kept, key: anchored})
    return anchored


def _verified_global(msg: Message, context: Context, model_round: int) -> VerifiedRound:
    """Check the global model in ``msg`` against its anchor for ``model_round``."""
    config = msg.content.config_records.get(wire.SECCL_KEY, ConfigRecord())
    csc = trusted_contract(context, config)
    account = load_account(context)
    record = msg.content.array_records.get(wire.ARRAYS)
    try:
        if record is None:
            raise EncodingError(f"the message carries no {wire.ARRAYS!r} record")
        arrays = arrays_of(record)
    except EncodingError as exc:
        raise MalformedMessageError(
            model_round, account.address, f"global model from the server: {exc}"
        ) from exc
    with metered(CHAIN_READ):
        owner = csc.owner()
    with metered(CRYPTO):
        digest = SignedMessage(csc.binding, model_round, Kind.GLOBAL_MODEL, owner, arrays).digest()
    anchored = _anchored_global(context, csc, model_round, owner)
    if digest != anchored:
        raise GlobalModelMismatchError(
            model_round,
            account.address,
            f"global model digest 0x{digest.hex()} differs from the anchored 0x{anchored.hex()}",
        )
    return VerifiedRound(
        csc, account, int(config[wire.ROUND]), arrays, ModelLayout.of(arrays), digest, config
    )


def _check_previous_round(ctx: VerifiedRound, context: Context) -> None:
    """Check last round's ballot and aggregation, if this node took part in it."""
    memo = context.state.config_records.get(_MEMO)
    if memo is None or int(memo["round"]) != ctx.round - 1:
        return
    prev = int(memo["round"])
    me = ctx.account.address
    # one round trip for both reads; the round is elected (its global model is anchored)
    with metered(CHAIN_READ):
        on_chain, candidates = ctx.csc.ballot_and_candidates(prev, me)
    if on_chain != bytes(memo["ballot-digest"]):
        raise BallotMissingError(
            prev,
            me,
            f"my ballot 0x{bytes(memo['ballot-digest']).hex()} is not on chain "
            f"(found 0x{on_chain.hex()})",
        )
    updates = []
    for author in candidates:
        key = _OWN_UPDATE if author == me else _UPDATE_PREFIX + author
        record = context.state.array_records.get(key)
        if record is None:
            return  # not every candidate's update was seen: cannot recompute
        updates.append(arrays_of(record))
    previous = arrays_of(context.state.array_records[_PREV_GLOBAL])
    with metered(CHAIN_READ):
        owner = ctx.csc.owner()
    expected = next_global_model(ctx.csc.binding, prev, owner, previous, updates)
    # ctx.global_digest is the received model's digest for round ``prev``, already
    # checked equal to its anchor
    with metered(CRYPTO):
        matches = expected.digest() == ctx.global_digest
    if not matches:
        raise AggregationMismatchError(
            prev,
            owner,
            f"global model of round {prev} is not the previous model plus the merge of "
            f"the elected candidates {candidates}",
        )


def handle_register(msg: Message, context: Context) -> Message:
    """Answer the server's registration query with this node's address and Join signature.

    The node signs ``Join(run id, address)`` for the run id the server names, on the
    chain id of its OWN chain endpoint (``seccl-chain-url``), never one the server
    names: the signature can only open a run on the chain this node checks.

    Raises
    ------
    MalformedMessageError
        If the message names no valid run id.
    UntrustedContractError
        If the node has no chain endpoint.
    """
    account = load_account(context)
    fields = msg.content.config_records.get(wire.SECCL_KEY, ConfigRecord())
    run_id = wire.run_id_field(0, account.address, fields)
    with metered(CHAIN_READ):
        chain_id = connect(_chain_url(context)).eth.chain_id
    with metered(CRYPTO):
        signature = sign_join(account.key, run_id, chain_id)
    reply = ConfigRecord({wire.ADDRESS: account.address, wire.JOIN_SIGNATURE: signature})
    return Message(RecordDict({wire.SECCL_KEY: reply}), reply_to=msg)


def handle_train(
    msg: Message,
    context: Context,
    train_fn: TrainFn,
    attack: "ClientAttack | None" = None,
) -> Message:
    """Verify the global model, train, sparsify and sign the update.

    Parameters
    ----------
    msg : Message
        The server's train message (``arrays`` + ``config`` + ``seccl`` records).
    context : Context
        The node's context (key, chain endpoint, state).
    train_fn : TrainFn
        Trains from the given arrays; returns trained arrays and metrics.
    attack : ClientAttack | None
        Experiments only: replace the honest change by a poisoned one.
    """
    ctx = _verified_global(msg, context, model_round=_round_of(msg) - 1)
    _check_previous_round(ctx, context)
    config = msg.content.config_records.get(wire.CONFIG, ConfigRecord())
    with metered(TRAIN):
        trained, metrics = train_fn(ctx.arrays, config)
    ctx.layout.check(trained)
    delta = ctx.layout.flatten(trained) - ctx.layout.flatten(ctx.arrays)
    if attack is not None:
        delta = attack.update(delta, ctx.round)
    share, per_tensor = _share_of(ctx.config)
    update = sparsify(delta, share, ctx.layout, per_tensor=per_tensor)
    with metered(CRYPTO):
        signed = SignedMessage.sign(
            ctx.account, ctx.csc.binding, ctx.round, Kind.UPDATE, update.to_arrays()
        )
    context.state[_OWN_UPDATE] = record_of(signed.payload)
    reply = RecordDict(
        {
            wire.UPDATE: record_of(signed.payload),
            wire.METRICS: MetricRecord({k: float(v) for k, v in metrics.items()}),
            wire.SECCL_KEY: ConfigRecord(
                {wire.AUTHOR: ctx.account.address, wire.SIGNATURE: signed.signature}
            ),
        }
    )
    return Message(reply, reply_to=msg)


def _round_of(msg: Message) -> int:
    """Return the server round a message names."""
    return int(msg.content[wire.SECCL_KEY][wire.ROUND])


def _share_of(config: ConfigRecord) -> tuple[float, bool]:
    """Return the share fraction and per-tensor flag the server sent."""
    return float(config[wire.SHARE_FRACTION]), bool(config.get(wire.PER_TENSOR, False))


def verify_peer_update(
    ctx: VerifiedRound,
    author: str,
    record: ArrayRecord,
    signature: bytes,
    anchored: bytes | None = None,
) -> SparseUpdate:
    """Return a peer's update once its form, signature and anchor are checked.

    ``anchored`` is the digest the chain holds for the author's update, if the
    caller has already read it (see :meth:`CandidateSelection.anchors_of`); else it
    is read here.

    Raises
    ------
    MalformedMessageError, UpdateSignatureError, UpdateDigestMismatchError
        Named after what failed, with round, author and detail.
    """
    share, per_tensor = _share_of(ctx.config)
    limit = entry_limit(ctx.layout, share, per_tensor)
    update = read_update(ctx.round, author, record, ctx.layout, limit)
    try:
        message = SignedMessage(
            ctx.csc.binding, ctx.round, Kind.UPDATE, author, update.to_arrays(), signature
        )
    except EncodingError as exc:
        raise MalformedMessageError(ctx.round, author, str(exc)) from exc
    # hash the payload once: one digest for the anchor and the signature check
    with metered(CRYPTO):
        digest = message.digest()
    if anchored is None:
        with metered(CHAIN_READ):
            anchored = ctx.csc.anchor_of(ctx.round, Kind.UPDATE, author)
    if digest != anchored:
        raise UpdateDigestMismatchError(
            ctx.round,
            author,
            f"update digest 0x{digest.hex()} differs from the anchored 0x{anchored.hex()}",
        )
    check_signature(message)
    return update


def handle_cross_evaluate(
    msg: Message,
    context: Context,
    score_fn: ScoreFn,
    attack: "ClientAttack | None" = None,
) -> Message:
    """Verify each peer update, score the verified ones, sign the score vector.

    ``attack`` (experiments only) may replace the honest scores by a fake ranking.
    """
    ctx = _verified_global(msg, context, model_round=_round_of(msg) - 1)
    me = ctx.account.address
    authors = wire.typed_list_field(ctx.round, me, ctx.config, wire.AUTHORS, str)
    signatures = wire.typed_list_field(ctx.round, me, ctx.config, wire.SIGNATURES, bytes)
    if len(authors) != len(signatures):
        raise MalformedMessageError(ctx.round, me, "authors and signatures do not match one to one")
    base = ctx.layout.flatten(ctx.arrays)
    peers, scores, rejected, verified = [], [], [], {}
    with metered(CHAIN_READ):
        anchors = ctx.csc.anchors_of(ctx.round, Kind.UPDATE)  # one read for all peers
    records = msg.content.array_records  # Flower builds this view anew on each access
    for author, signature in zip(authors, signatures, strict=True):
        if author == ctx.account.address:
            continue
        record = records.get(wire.peer_update_key(author))
        try:
            if record is None:
                raise MalformedMessageError(ctx.round, author, "update missing from message")
            update = verify_peer_update(
                ctx, author, record, signature, anchors.get(author, bytes(32))
            )
        except VerificationError as exc:
            log(WARNING, "SecCL: not scoring %s", exc)
            rejected.append(str(exc))
            continue
        candidate = ctx.layout.unflatten(apply_update(base, update), ctx.arrays)
        with metered(SCORE):
            f1 = float(score_fn(candidate))
        peers.append(author)
        scores.append(int(round(min(max(f1, 0.0), 1.0) * MAX_SCORE)))
        verified[author] = update
    if attack is not None:
        scores = attack.ballot(ctx.account.address, peers, scores, ctx.round)
    with metered(CRYPTO):
        ballot = SignedMessage.sign(
            ctx.account, ctx.csc.binding, ctx.round, Kind.BALLOT, peers=peers, scores=scores
        )
    _remember(context, ctx, verified, ballot.digest())
    reply = ConfigRecord(
        {
            wire.EVALUATOR: ctx.account.address,
            wire.PEERS: peers,
            wire.SCORES: scores,
            wire.SIGNATURE: ballot.signature,
            wire.REJECTED: rejected,
        }
    )
    return Message(RecordDict({wire.SECCL_KEY: reply}), reply_to=msg)


def _remember(
    context: Context,
    ctx: VerifiedRound,
    verified: Mapping[str, SparseUpdate],
    ballot: bytes,
) -> None:
    """Keep what next round's aggregation and ballot checks need."""
    for key in [k for k in context.state.array_records if k.startswith(_UPDATE_PREFIX)]:
        del context.state[key]
    context.state[_PREV_GLOBAL] = record_of(ctx.arrays)
    for author, update in verified.items():
        context.state[_UPDATE_PREFIX + author] = record_of(update.to_arrays())
    context.state[_MEMO] = ConfigRecord({"round": ctx.round, "ballot-digest": ballot})


def handle_evaluate(msg: Message, context: Context, evaluate_fn: EvaluateFn) -> Message:
    """Verify the new global model's anchor, evaluate it and sign the metrics."""
    ctx = _verified_global(msg, context, model_round=_round_of(msg))
    with metered(EVALUATE):
        metrics = {k: float(v) for k, v in evaluate_fn(ctx.arrays).items()}
    with metered(CRYPTO):
        signed = SignedMessage.sign(
            ctx.account, ctx.csc.binding, ctx.round, Kind.EVALUATION, metrics_to_arrays(metrics)
        )
    reply = RecordDict(
        {
            wire.METRICS: MetricRecord(metrics),
            wire.SECCL_KEY: ConfigRecord(
                {wire.AUTHOR: ctx.account.address, wire.SIGNATURE: signed.signature}
            ),
        }
    )
    return Message(reply, reply_to=msg)


def run_config_mod(defaults: Mapping[str, Any]) -> Callable:
    """Return a Flower mod that fills ``context.run_config`` with ``defaults``.

    ``flwr.simulation.run_simulation`` takes no run config; this mod gives the
    ClientApps of such a simulation the settings the launcher chose. Keys already in
    the run config win; the node's context itself is left unchanged.
    """

    def mod(msg: Message, context: Context, call_next: Callable) -> Message:
        # Flower forbids changing context.run_config: hand on a copy that shares the
        # node's state, so what handlers keep in context.state persists.
        merged = Context(
            run_id=context.run_id,
            node_id=context.node_id,
            node_config=context.node_config,
            state=context.state,
            run_config={**defaults, **context.run_config},
        )
        return call_next(msg, merged)

    return mod


def seccl_client_app(
    train_fn: Callable[[Context], TrainFn],
    score_fn: Callable[[Context], ScoreFn],
    evaluate_fn: Callable[[Context], EvaluateFn],
    run_config: Mapping[str, Any] | None = None,
    attack: "Callable[[Context], ClientAttack | None] | None" = None,
) -> ClientApp:
    """Return a ClientApp that speaks SecCL.

    Parameters
    ----------
    train_fn, score_fn, evaluate_fn : Callable[[Context], ...]
        Factories that, given the node's context (to load its data partition),
        return the node's train, validation-scoring and evaluation functions.
        :mod:`seccl_flwr.torch_task` builds them from an ordinary PyTorch model.
    run_config : Mapping[str, Any] | None
        Defaults for ``context.run_config`` (see :func:`run_config_mod`).
    attack : Callable[[Context], ClientAttack | None] | None
        Experiments only: the attack this node mounts, or ``None`` for an honest
        node (see :mod:`seccl_flwr.attacks`). Label flipping happens in the training
        loop, so ``train_fn`` must apply :meth:`ClientAttack.labels` itself.
    """
    attack_of = attack or (lambda context: None)
    app = ClientApp(mods=[run_config_mod(run_config)] if run_config else None)

    @app.query(wire.REGISTER_QUERY)
    def register(msg: Message, context: Context) -> Message:
        return handle_register(msg, context)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return handle_train(msg, context, train_fn(context), attack_of(context))

    @app.query(wire.CROSS_EVALUATE_QUERY)
    def cross_evaluate(msg: Message, context: Context) -> Message:
        return handle_cross_evaluate(msg, context, score_fn(context), attack_of(context))

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return handle_evaluate(msg, context, evaluate_fn(context))

    return app

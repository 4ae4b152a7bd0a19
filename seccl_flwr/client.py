"""Client side of SecCL: the checks and replies :func:`seccl_flwr.mod.seccl_mod` is made of.

Everything a node receives is verified against its own chain endpoint before the
app's handlers see it, and everything it sends is signed:

* first contact with a run: the contract's code, that the run is open, and its
  roster and parameters against the node's own configuration
  (:func:`trusted_contract`);
* train: check the global model against its anchor (:func:`check_train`); the app's
  handler trains; keep the top share-fraction changes (the run's, as fixed on chain)
  and sign (:func:`signed_update`, :func:`train_reply`);
* cross-evaluation: check that the node's own update is anchored, that the message
  carries exactly the round's anchored updates (with evaluator committees: exactly
  the peers the committee seed assigns this node, re-derived from its own chain
  endpoint), and every update's anchor and signature; score each, sign the score
  vector (:func:`handle_cross_evaluate`). Any failure raises: no ballot on a
  partial set;
* evaluate: check the global model's anchor; then, if the node took part in the
  round, that its ballot is on chain and that the model is the previous one plus
  the merge of exactly the elected updates (the next train does this if evaluate
  never comes) (:func:`check_evaluate`); the app's handler evaluates; sign the
  metrics (:func:`evaluation_reply`);
* registration: tell the server this node's address, proven by its signature of
  ``Join(run id, address)`` on its own chain endpoint's chain id
  (:func:`handle_register`).

The checks themselves are the pure functions of :mod:`seccl_flwr.client_checks`.
Message types, record keys and fields are those of :mod:`seccl_flwr.wire`.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
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

from . import wire
from .chain.connection import connect
from .chain.csc import CandidateSelection
from .chain.errors import ChainError
from .client_checks import (
    check_aggregation,
    check_ballot_on_chain,
    check_committee,
    check_forwarded_authors,
    check_params,
    check_roster,
    check_update_anchored,
    run_pins,
)
from .errors import (
    AggregationMismatchError,
    AggregationUncheckableError,
    EncodingError,
    GlobalModelMismatchError,
    MalformedMessageError,
    UntrustedContractError,
    UpdateDigestMismatchError,
    VerificationError,
)
from .identity import CHAIN_URL, CONTRACT, ERROR_FEEDBACK, flag_setting, load_account, setting
from .metering import CHAIN_READ, CRYPTO, SCORE, metered
from .protocol.eip712 import MAX_SCORE, Kind, sign_join
from .protocol.encoding import metrics_to_arrays
from .protocol.params import RunParams
from .protocol.signed import SignedMessage
from .protocol.sparse import (
    ModelLayout,
    SparseUpdate,
    apply_update,
    entry_limit,
    sparsify_with_feedback,
)
from .records import arrays_of, record_of
from .verify import check_signature, read_update

if TYPE_CHECKING:
    from .attacks.client import ClientAttack

ScoreFn = Callable[[dict[str, np.ndarray]], float]
"""``arrays -> score in [0, 1]`` (higher is better) on the local validation split."""

_MEMO = "seccl.memo"
_FORGED = "seccl.forged"
_PREV_GLOBAL = "seccl.prev-global"
_UPDATE_PREFIX = "seccl.update."
_OWN_UPDATE = "seccl.own-update"
_GLOBAL_ANCHORS = "seccl.global-anchors"
_RESIDUAL = "seccl.residual"
"""Error feedback: the residual before and after the node's last update (arrays)..."""
_RESIDUAL_OF = "seccl.residual-of"
"""...and the contract and round of that update."""
_UPDATE_DIGEST = "update-digest"
"""Memo field: the digest of this node's update of its round, until checked on chain."""
_BALLOT_DIGEST = "ballot-digest"
"""Memo field: the digest of the ballot this node signed in its round."""
DEFAULT_ERROR_FEEDBACK = True
"""Whether a node uses error feedback unless ``seccl-error-feedback`` says otherwise."""
_CONTRACTS: dict[tuple[int, str, str, str], tuple[CandidateSelection, RunParams]] = {}


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
    server names, accepted only if its code is the SecCL artifact. Then the run must
    be open, and its roster and parameters those of the node's own configuration
    (:func:`~seccl_flwr.client_checks.run_pins`): see
    :func:`~seccl_flwr.client_checks.check_roster` and
    :func:`~seccl_flwr.client_checks.check_params`.

    Raises
    ------
    UntrustedContractError
        If the contract fails these checks or the pinned and named addresses differ;
        ``RosterMismatchError`` / ``ParameterMismatchError`` when the roster or a
        parameter is not the pinned one.
    """
    return _trusted_run(context, config)[0]


def _trusted_run(context: Context, config: ConfigRecord) -> tuple[CandidateSelection, RunParams]:
    """Return the trusted contract and its checked parameters (see :func:`trusted_contract`)."""
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
    # Per Flower run: a restarted dev chain puts a new run's contract at the old
    # address (same deployer, same nonce), and its check must not be reused.
    key = (context.run_id, url, address.lower(), account.address)
    if key not in _CONTRACTS:
        pins = run_pins(context)
        try:
            with metered(CHAIN_READ):
                csc = CandidateSelection.attach(connect(url), address)
                is_open = csc.is_open()
                members = csc.participants()
                digest = csc.roster_digest()
                params = csc.params()
        except ChainError as exc:
            raise UntrustedContractError(f"contract {address} rejected: {exc}") from exc
        if not is_open:
            raise UntrustedContractError(f"contract {address}: the run is not open")
        check_roster(pins, csc.address, members, digest, account.address)
        check_params(pins, csc.address, params, len(members))
        _CONTRACTS[key] = (csc, params)
    return _CONTRACTS[key]


@dataclass
class VerifiedRound:
    """What a handler has checked before it uses a server message.

    The run's contract on the node's own endpoint and its checked parameters, the
    node's account, the round, the global model (arrays, layout and anchored digest)
    and the server's SecCL fields.
    """

    csc: CandidateSelection
    params: RunParams
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
    """Check the global model in ``msg`` against its anchor for ``model_round``.

    Then settle what the node still has to check of earlier rounds
    (:func:`_settle_rounds`): a forged global model the node found earlier makes it
    refuse every later message of the run.
    """
    config = msg.content.config_records.get(wire.SECCL_KEY, ConfigRecord())
    csc, params = _trusted_run(context, config)
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
    ctx = VerifiedRound(
        csc,
        params,
        account,
        int(config[wire.ROUND]),
        arrays,
        ModelLayout.of(arrays),
        digest,
        config,
    )
    _refuse_forged_run(ctx, context)
    return ctx


def _refuse_forged_run(ctx: VerifiedRound, context: Context) -> None:
    """Refuse a run whose global model this node found forged in an earlier round.

    Every later global model derives from the forged one.
    """
    forged = context.state.config_records.get(_FORGED)
    if forged is not None and forged["contract"] == ctx.csc.address:
        raise AggregationMismatchError(
            int(forged["round"]),
            str(forged["owner"]),
            f"refusing round {ctx.round}: {forged['detail']} (every later global model "
            f"derives from it)",
        )


def _memo(context: Context, ctx: VerifiedRound) -> ConfigRecord | None:
    """Return what this node kept of its last round in this run, if anything."""
    memo = context.state.config_records.get(_MEMO)
    if memo is None or memo["contract"] != ctx.csc.address:
        return None
    return memo


def _forget_round(context: Context) -> None:
    """Drop what the node kept of its last round (memo, models and updates)."""
    for key in [k for k in context.state.array_records if k.startswith(_UPDATE_PREFIX)]:
        del context.state[key]
    for key in (_MEMO, _PREV_GLOBAL, _OWN_UPDATE):
        if key in context.state:
            del context.state[key]


def _settle_rounds(ctx: VerifiedRound, context: Context, before: int) -> None:
    """Check the last round this node took part in, if it is earlier than ``before``.

    A node that trained or cross-evaluated in round ``r`` checks, once, in the
    evaluate phase of ``r`` (``before = r + 1``), or at its next train or
    cross-evaluation if evaluate never comes:

    1. that its own update of ``r`` is the one anchored
       (:class:`~seccl_flwr.errors.UpdateNotAnchoredError`; a censored author took
       no part in the election, so this is all it reports of the round);
    2. that its ballot of ``r`` is on chain
       (:class:`~seccl_flwr.errors.BallotMissingError`), if it cross-evaluated;
    3. that global model ``r`` is global model ``r - 1`` plus the merge of the
       elected candidates' updates (:class:`~seccl_flwr.errors.AggregationMismatchError`),
       which it must be able to recompute
       (:class:`~seccl_flwr.errors.AggregationUncheckableError` otherwise). A forged
       model makes the node refuse the rest of the run.

    The ballot check raises first (a forged model is remembered all the same).

    A node that took no part in round ``r`` has nothing to check of it.
    """
    memo = _memo(context, ctx)
    if memo is None or int(memo["round"]) >= before:
        return
    kept_round = int(memo["round"])
    me = ctx.account.address
    previous = context.state.array_records.get(_PREV_GLOBAL)
    updates = {
        key.removeprefix(_UPDATE_PREFIX): arrays_of(record)
        for key, record in context.state.array_records.items()
        if key.startswith(_UPDATE_PREFIX)
    }
    if _OWN_UPDATE in context.state.array_records:
        updates[me] = arrays_of(context.state.array_records[_OWN_UPDATE])
    _forget_round(context)  # checked once, whatever the outcome
    if _UPDATE_DIGEST in memo:
        with metered(CHAIN_READ):
            anchored = ctx.csc.anchor_of(kept_round, Kind.UPDATE, me)
        check_update_anchored(kept_round, me, bytes(memo[_UPDATE_DIGEST]), anchored)
    with metered(CHAIN_READ):
        owner = ctx.csc.owner()
        if _BALLOT_DIGEST in memo:
            on_chain, candidates = ctx.csc.ballot_and_candidates(kept_round, me)
        else:
            candidates = ctx.csc.candidates_of(kept_round)
    anchored = _anchored_global(context, ctx.csc, kept_round, owner)
    failed: VerificationError | None = None
    try:
        with metered(CRYPTO):
            check_aggregation(
                ctx.csc.binding,
                kept_round,
                me,
                owner,
                arrays_of(previous) if previous is not None else None,
                candidates,
                updates,
                anchored,
            )
    except AggregationMismatchError as exc:
        context.state[_FORGED] = ConfigRecord(
            {"contract": ctx.csc.address, "round": kept_round, "owner": owner, "detail": exc.detail}
        )
        failed = exc
    except AggregationUncheckableError as exc:
        failed = exc
    if _BALLOT_DIGEST in memo:  # the node's own vote first; a forged model is kept above
        check_ballot_on_chain(kept_round, me, bytes(memo[_BALLOT_DIGEST]), on_chain)
    if failed is not None:
        raise failed


def _keep_round(
    context: Context,
    ctx: VerifiedRound,
    updates: Mapping[str, Mapping[str, np.ndarray]],
    **fields: bytes,
) -> None:
    """Keep what this round's later checks need: the model it started from, updates, digests.

    ``fields`` are the digests to check on chain later (own update, own ballot).
    """
    memo = _memo(context, ctx)
    if memo is None or int(memo["round"]) != ctx.round:
        _forget_round(context)
        memo = ConfigRecord({"contract": ctx.csc.address, "round": ctx.round})
    context.state[_MEMO] = ConfigRecord({**dict(memo), **fields})
    context.state[_PREV_GLOBAL] = record_of(ctx.arrays)
    for author, arrays in updates.items():
        key = _OWN_UPDATE if author == ctx.account.address else _UPDATE_PREFIX + author
        context.state[key] = record_of(arrays)


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


def check_train(msg: Message, context: Context) -> VerifiedRound:
    """Check a train message's global model against its anchor, before any training.

    The node also settles its checks of the last round it took part in if that
    round's evaluate never came (see :func:`_settle_rounds`).

    Raises
    ------
    GlobalModelMismatchError, MalformedMessageError, UntrustedContractError, ...
        Named after what failed (see :func:`_verified_global`).
    """
    ctx = _verified_global(msg, context, model_round=_round_of(msg) - 1)
    if ctx.round > 1:
        _take_candidate_updates(msg, context, replace(ctx, round=ctx.round - 1))
    _settle_rounds(ctx, context, before=ctx.round)
    return ctx


def signed_update(
    context: Context, ctx: VerifiedRound, trained: Mapping[str, np.ndarray]
) -> SignedMessage:
    """Turn the trained arrays into this node's signed sparse update of the round.

    The change from the verified global model keeps its top share-fraction entries
    (the run's share fraction and per-tensor flag, as fixed on chain), is signed,
    and is kept with the round's memo for the checks of its evaluate phase.

    Raises
    ------
    EncodingError
        If ``trained`` does not have the global model's names, shapes and dtypes.
    """
    ctx.layout.check(trained)
    delta = ctx.layout.flatten(trained) - ctx.layout.flatten(ctx.arrays)
    update = sparse_update(context, ctx, delta)
    with metered(CRYPTO):
        signed = SignedMessage.sign(
            ctx.account, ctx.csc.binding, ctx.round, Kind.UPDATE, update.to_arrays()
        )
        digest = signed.digest()
    _forget_round(context)  # a train of the same round again (a resumed run) starts over
    _keep_round(context, ctx, {ctx.account.address: signed.payload}, **{_UPDATE_DIGEST: digest})
    return signed


def train_reply(
    msg: Message, ctx: VerifiedRound, signed: SignedMessage, metrics: MetricRecord
) -> Message:
    """Return the train reply: the signed sparse update and the app's train metrics."""
    reply = RecordDict(
        {
            wire.UPDATE: record_of(signed.payload),
            wire.METRICS: metrics,
            wire.SECCL_KEY: ConfigRecord(
                {wire.AUTHOR: ctx.account.address, wire.SIGNATURE: signed.signature}
            ),
        }
    )
    return Message(reply, reply_to=msg)


def sparse_update(context: Context, ctx: VerifiedRound, change: np.ndarray) -> SparseUpdate:
    """Return the node's sparse update of a round's change (local minus global model).

    Keeps the run's share fraction, per tensor or not, as fixed on chain. With error
    feedback (``seccl-error-feedback``, on by default) the node adds what its last
    update left out (the residual, kept in ``context.state``) to the change first,
    and keeps what this update leaves out for the next round
    (:func:`~seccl_flwr.protocol.sparse.sparsify_with_feedback`). A node that trains
    the same round again (a resumed run) starts from the residual it had before.
    Error feedback changes only what the node sends: the update it signs and that is
    anchored is exactly the one sent, checked by everyone as any other.
    """
    feedback = flag_setting(context, ERROR_FEEDBACK, DEFAULT_ERROR_FEEDBACK)
    residual = None
    kept = context.state.config_records.get(_RESIDUAL_OF)
    if feedback and kept is not None and kept["contract"] == ctx.csc.address:
        arrays = arrays_of(context.state.array_records[_RESIDUAL])
        if int(kept["round"]) < ctx.round:
            residual = arrays["after"]
        elif int(kept["round"]) == ctx.round:
            residual = arrays["before"]
    update, left_out = sparsify_with_feedback(
        change, residual, ctx.params.share_fraction, ctx.layout, ctx.params.per_tensor
    )
    if feedback:
        before = residual if residual is not None else np.zeros_like(left_out)
        context.state[_RESIDUAL] = record_of({"before": before, "after": left_out})
        context.state[_RESIDUAL_OF] = ConfigRecord(
            {"contract": ctx.csc.address, "round": ctx.round}
        )
    return update


def _round_of(msg: Message) -> int:
    """Return the server round a message names."""
    return int(msg.content[wire.SECCL_KEY][wire.ROUND])


def verify_peer_update(
    ctx: VerifiedRound,
    author: str,
    record: ArrayRecord,
    signature: bytes,
    anchored: bytes | None = None,
) -> SparseUpdate:
    """Return a peer's update once its form, signature and anchor are checked.

    The entry limit follows the run's share fraction and per-tensor flag as fixed on
    chain (``ctx.params``). ``anchored`` is the digest the chain holds for the
    author's update, if the caller has already read it (see
    :meth:`CandidateSelection.anchors_of`); else it is read here.

    Raises
    ------
    MalformedMessageError, UpdateSignatureError, UpdateDigestMismatchError
        Named after what failed, with round, author and detail.
    """
    limit = entry_limit(ctx.layout, ctx.params.share_fraction, ctx.params.per_tensor)
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


def _check_own_anchor(context: Context, ctx: VerifiedRound, anchors: Mapping[str, bytes]) -> None:
    """Check, once, that this node's update of the round is the one anchored."""
    memo = _memo(context, ctx)
    if memo is None or int(memo["round"]) != ctx.round or _UPDATE_DIGEST not in memo:
        return
    digest = bytes(memo[_UPDATE_DIGEST])
    context.state[_MEMO] = ConfigRecord({k: v for k, v in memo.items() if k != _UPDATE_DIGEST})
    me = ctx.account.address
    check_update_anchored(ctx.round, me, digest, anchors.get(me, bytes(32)))


def handle_cross_evaluate(
    msg: Message,
    context: Context,
    score_fn: ScoreFn,
    attack: "ClientAttack | None" = None,
) -> Message:
    """Verify the round's complete set of peer updates, score them, sign the score vector.

    The evaluator first checks that its own update is the one anchored, then that
    the message carries exactly the updates the chain anchored for the round
    (:func:`~seccl_flwr.client_checks.check_forwarded_authors`) or, in a run with
    evaluator committees, exactly the peers assigned to it
    (:func:`~seccl_flwr.client_checks.check_committee`: the assignment is recomputed
    from this node's own chain endpoint, the seal block's hash included), then each
    update.
    Any failure raises its named error: the evaluator never votes on a partial set.
    ``score_fn`` scores each candidate model (global + the peer's update) in [0, 1],
    clipped, higher is better. ``attack`` (experiments only) may replace the honest
    scores by a fake ranking.

    Raises
    ------
    UpdateNotAnchoredError, WithheldUpdateError, CommitteeMismatchError,
    MalformedMessageError, UpdateSignatureError, UpdateDigestMismatchError
        Named after what failed, with round, author and detail.
    """
    ctx = _verified_global(msg, context, model_round=_round_of(msg) - 1)
    _settle_rounds(ctx, context, before=ctx.round)
    me = ctx.account.address
    authors = wire.typed_list_field(ctx.round, me, ctx.config, wire.AUTHORS, str)
    signatures = wire.typed_list_field(ctx.round, me, ctx.config, wire.SIGNATURES, bytes)
    if len(authors) != len(signatures):
        raise MalformedMessageError(ctx.round, me, "authors and signatures do not match one to one")
    if len(set(authors)) != len(authors):
        raise MalformedMessageError(ctx.round, me, "an author is forwarded twice")
    with metered(CHAIN_READ):
        anchors = ctx.csc.anchors_of(ctx.round, Kind.UPDATE)  # one read for all peers
    _check_own_anchor(context, ctx, anchors)
    if ctx.params.committee_size:
        assigned, seal_block = _own_assignment(ctx)
        check_committee(ctx.round, me, assigned, authors, seal_block)
    else:
        check_forwarded_authors(ctx.round, me, anchors, authors)
    base = ctx.layout.flatten(ctx.arrays)
    peers, scores, verified = [], [], {}
    records = msg.content.array_records  # Flower builds this view anew on each access
    for author, signature in zip(authors, signatures, strict=True):
        if author == me:
            continue
        record = records.get(wire.peer_update_key(author))
        if record is None:
            raise MalformedMessageError(ctx.round, author, "update missing from message")
        update = verify_peer_update(ctx, author, record, signature, anchors.get(author, bytes(32)))
        candidate = ctx.layout.unflatten(apply_update(base, update), ctx.arrays)
        with metered(SCORE):
            score = float(score_fn(candidate))
        peers.append(author)
        scores.append(int(round(min(max(score, 0.0), 1.0) * MAX_SCORE)))
        verified[author] = update.to_arrays()
    if attack is not None:
        scores = attack.ballot(me, peers, scores, ctx.round)
    with metered(CRYPTO):
        ballot = SignedMessage.sign(
            ctx.account, ctx.csc.binding, ctx.round, Kind.BALLOT, peers=peers, scores=scores
        )
        digest = ballot.digest()
    _keep_round(context, ctx, verified, **{_BALLOT_DIGEST: digest})
    reply = ConfigRecord(
        {
            wire.EVALUATOR: me,
            wire.PEERS: peers,
            wire.SCORES: scores,
            wire.SIGNATURE: ballot.signature,
        }
    )
    return Message(RecordDict({wire.SECCL_KEY: reply}), reply_to=msg)


def check_evaluate(msg: Message, context: Context) -> VerifiedRound:
    """Verify the new global model of an evaluate message and check the round.

    A node that trained or cross-evaluated in this round checks it here, in the round
    it happened (the last round included): its update anchored, its ballot on chain,
    and the new global model recomputed from the previous one and the elected
    updates (see :func:`_settle_rounds`). A node that took no part in the round has
    nothing to check of it.
    """
    ctx = _verified_global(msg, context, model_round=_round_of(msg))
    _take_candidate_updates(msg, context, ctx)
    _settle_rounds(ctx, context, before=ctx.round + 1)
    return ctx


def _own_assignment(ctx: VerifiedRound) -> tuple[list[str] | None, int]:
    """Return this node's assigned peers of the round and the seal block, from its own node.

    The assignment is :meth:`~seccl_flwr.chain.csc.CandidateSelection.committee_assignment`
    on the node's OWN chain endpoint: it reads the anchored authors, the round seed
    and the hash of the block that sealed them there, never from the server.
    ``None`` peers if this node is no anchored author; seal block 0 if not sealed.
    """
    with metered(CHAIN_READ):
        seal_block = ctx.csc.seal_block(ctx.round)
        if seal_block == 0:
            return None, 0
        assigned = ctx.csc.committee_assignment(ctx.round)
    return assigned.get(ctx.account.address), seal_block


def _take_candidate_updates(msg: Message, context: Context, ctx: VerifiedRound) -> None:
    """Keep the elected candidates' updates of round ``ctx.round`` that ``msg`` carries.

    With evaluator committees a node verified only its assigned peers' updates in
    cross-evaluation; to recompute the new global model it needs every elected
    candidate's. The server sends them with the round's evaluate message, and again
    with the next round's train message (for a node the evaluate never reached, which
    settles the round there); each one this node
    lacks is checked against its anchor and its author's signature (as in
    cross-evaluation) before it is kept. A candidate the message lacks stays
    lacking: :func:`_settle_rounds` then says the model is uncheckable. Nothing to do
    for a node that took no part in the round, or a message without updates. An
    author never asked to cross-evaluate takes none either: as in a run without
    committees it then lacks the candidates' updates and reports
    :class:`~seccl_flwr.errors.AggregationUncheckableError`, so that withholding its
    vote is never silent.

    Raises
    ------
    MalformedMessageError, UpdateSignatureError, UpdateDigestMismatchError
        If a forwarded candidate's update is not the one anchored and signed.
    """
    memo = _memo(context, ctx)
    if memo is None or int(memo["round"]) != ctx.round or wire.AUTHORS not in ctx.config:
        return
    if _BALLOT_DIGEST not in memo:
        return  # never asked to vote: it says so below (AggregationUncheckableError)
    me = ctx.account.address
    authors = wire.typed_list_field(ctx.round, me, ctx.config, wire.AUTHORS, str)
    signatures = wire.typed_list_field(ctx.round, me, ctx.config, wire.SIGNATURES, bytes)
    if len(authors) != len(signatures):
        raise MalformedMessageError(ctx.round, me, "authors and signatures do not match one to one")
    kept = context.state.array_records
    lacking = [
        (a, sig)
        for a, sig in zip(authors, signatures, strict=True)
        if a != me and _UPDATE_PREFIX + a not in kept
    ]
    if not lacking:
        return
    with metered(CHAIN_READ):
        anchors = ctx.csc.anchors_of(ctx.round, Kind.UPDATE)
    records = msg.content.array_records
    for author, signature in lacking:
        record = records.get(wire.peer_update_key(author))
        if record is None:
            continue
        update = verify_peer_update(ctx, author, record, signature, anchors.get(author, bytes(32)))
        context.state[_UPDATE_PREFIX + author] = record_of(update.to_arrays())


def evaluation_reply(msg: Message, ctx: VerifiedRound, metrics: Mapping[str, float]) -> Message:
    """Return the evaluate reply: the metrics, signed by this node for the round."""
    values = {k: float(v) for k, v in metrics.items()}
    with metered(CRYPTO):
        signed = SignedMessage.sign(
            ctx.account, ctx.csc.binding, ctx.round, Kind.EVALUATION, metrics_to_arrays(values)
        )
    reply = RecordDict(
        {
            wire.METRICS: MetricRecord(values),
            wire.SECCL_KEY: ConfigRecord(
                {wire.AUTHOR: ctx.account.address, wire.SIGNATURE: signed.signature}
            ),
        }
    )
    return Message(reply, reply_to=msg)

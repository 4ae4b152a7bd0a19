"""``seccl_mod``: SecCL around a Flower app's own ``train`` and ``evaluate`` handlers.

A Flower mod, like Flower's ``fixedclipping_mod`` or ``secaggplus_mod``::

    app = ClientApp(mods=[seccl_mod])

    @app.train()
    def train(msg, context): ...      # unchanged: trains, replies "arrays" + metrics

    @app.evaluate()
    def evaluate(msg, context): ...   # unchanged: evaluates, replies metrics

Per SecCL phase (:func:`seccl_flwr.wire.phase_of`):

* ``train``: check the global model against its anchor *before* the handler runs,
  call the handler, turn the arrays it returns into the signed sparse update
  (:func:`seccl_flwr.client.signed_update`) and reply in SecCL's wire format, with
  the handler's metrics;
* registration: answered by the mod (address and Join signature);
* cross-evaluation: check the round's anchored updates (in a run with evaluator
  committees: that they are exactly this node's assigned peers, re-derived from its
  own chain endpoint), then score each peer's
  candidate model (global + its update) through the app's own evaluate handler, by
  the metric the node or run config names under ``seccl-score-metric`` (default
  ``eval_acc``, quickstart-pytorch's accuracy; a number in [0, 1], higher is
  better); sign the score vector. An app may opt in to a batched scorer instead
  (``make_seccl_mod(batch_scorer=...)``, e.g.
  :func:`seccl_flwr.torch_task.torch_batch_score_fn`): it gets several candidate
  models per call, without a Flower message and record encoding per peer, and can
  batch its inference over them; where it returns ``None`` for a node, the evaluate
  handler scores as above;
* the global evaluation (an unmarked ``evaluate``): check the model and the round,
  call the handler, sign its metrics.

SecCL's own phases travel as ``evaluate`` messages (Flower refuses a message type
without a registered handler before any mod runs), so the app needs exactly the
two handlers every Flower app has. The mod only touches numpy arrays and Flower
records: where the model lives (CPU, CUDA) is the handlers' business. Keys and chain
settings come from the node and run config (:mod:`seccl_flwr.identity`). A
protocol error raises its named exception (type name first in its message), which
Flower hands the server as the node's error reply.
"""

import copy
from collections.abc import Callable

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable, Mod

from . import client, wire
from .errors import HandlerReplyError, MalformedMessageError, ScoreMetricError
from .identity import setting
from .metering import EVALUATE, TRAIN, metered
from .records import arrays_of, record_of

SCORE_METRIC = "seccl-score-metric"
"""Node or run config key: the evaluate metric cross-evaluation scores peers by."""
DEFAULT_SCORE_METRIC = "eval_acc"
"""The score metric without ``seccl-score-metric``: quickstart-pytorch's accuracy."""


def score_metric_of(context: Context, default: str = DEFAULT_SCORE_METRIC) -> str:
    """Return the metric a node scores peers by (``seccl-score-metric`` or ``default``).

    The node config's ``seccl-score-metric`` wins over the run config's; without
    either, ``default`` (the app's, given to :func:`make_seccl_mod`). A batched
    scorer (``make_seccl_mod(batch_scorer=...)``) must score by this same metric: an
    app's factory calls this with the default it gives the mod.
    """
    return setting(context, SCORE_METRIC) or default


def make_seccl_mod(
    score_metric: str = DEFAULT_SCORE_METRIC,
    attack: Callable[[Context], object] | None = None,
    batch_scorer: Callable[[Context], client.BatchScoreFn | None] | None = None,
    batch_size: int = 16,
) -> Mod:
    """Return a SecCL mod; :data:`seccl_mod` is the one apps use.

    Parameters
    ----------
    score_metric : str (default: ``"eval_acc"``)
        The evaluate metric peers are scored by when the node and run config name
        none (``seccl-score-metric`` wins).
    attack : Callable[[Context], ClientAttack | None] | None
        Experiments only: the node's :class:`~seccl_flwr.attacks.ClientAttack`,
        whose colluding ballot replaces the honest scores. (Poisoned updates and
        flipped labels happen in the app's train handler, as for any strategy.)
    batch_scorer : Callable[[Context], BatchScoreFn | None] | None
        Opt-in: the node's batched scorer, ``[arrays, ...] -> [score in [0, 1], ...]``
        (e.g. :func:`seccl_flwr.torch_task.torch_batch_score_fn`), which must score
        each candidate model as the evaluate handler's metric does. ``None`` (or a
        factory returning ``None`` for a node): each peer is scored by one call of
        the app's evaluate handler.
    batch_size : int (default: 16)
        Most candidate models per call of ``batch_scorer`` (held in memory at once).
    """

    def seccl_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        """SecCL around the app's train and evaluate handlers (see :mod:`seccl_flwr.mod`)."""
        phase = wire.phase_of(msg)
        if phase not in wire.PHASES:
            if msg.metadata.message_type in (wire.TRAIN, wire.EVALUATE):
                raise MalformedMessageError(
                    0, f"node {context.node_id}", f"unknown SecCL phase {phase!r}"
                )
            return call_next(msg, context)  # e.g. the app's own queries
        if phase == wire.REGISTER:
            return client.handle_register(msg, context)
        if wire.SECCL_KEY not in msg.content.config_records:
            raise MalformedMessageError(
                0,
                f"node {context.node_id}",
                f"the {phase} message carries no {wire.SECCL_KEY!r} record "
                "(is the server running the SecCL strategy?)",
            )
        if phase == wire.TRAIN:
            return _train(msg, context, call_next)
        if phase == wire.EVALUATE:
            return _evaluate(msg, context, call_next)
        ballot_attack = attack(context) if attack is not None else None
        batched = batch_scorer(context) if batch_scorer is not None else None
        if batched is not None:
            return client.handle_cross_evaluate(msg, context, batched, ballot_attack, batch_size)
        metric = score_metric_of(context, score_metric)
        return client.handle_cross_evaluate(
            msg, context, _scorer(msg, context, call_next, metric), ballot_attack
        )

    return seccl_mod


seccl_mod: Mod = make_seccl_mod()
"""The SecCL mod: ``ClientApp(mods=[seccl_mod])`` (see :mod:`seccl_flwr.mod`)."""


def _train(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Check the global model, run the app's train handler, sign its change."""
    ctx = client.check_train(msg, context)
    with metered(TRAIN):
        reply = call_next(msg, context)
    if reply.has_error():
        return reply
    trained = _returned_arrays(reply)
    signed = client.signed_update(context, ctx, trained)
    return client.train_reply(msg, ctx, signed, _returned_metrics(reply, "train"))


def _evaluate(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Check the global model and the round, run the app's evaluate handler, sign."""
    ctx = client.check_evaluate(msg, context)
    with metered(EVALUATE):
        reply = call_next(msg, context)
    if reply.has_error():
        return reply
    return client.evaluation_reply(msg, ctx, _scalar_metrics(_returned_metrics(reply, "evaluate")))


def _scorer(
    msg: Message, context: Context, call_next: ClientAppCallable, metric: str
) -> client.BatchScoreFn:
    """Return a scorer that runs the app's evaluate handler on each candidate model."""
    server_round = int(msg.content[wire.SECCL_KEY][wire.ROUND])

    def score(arrays: dict) -> float:
        content = RecordDict(
            {
                wire.ARRAYS: record_of(arrays),
                wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: server_round}),
            }
        )
        # an evaluate message like the server's, without SecCL's record
        reply = call_next(Message(content, metadata=copy.copy(msg.metadata)), context)
        if reply.has_error():
            raise HandlerReplyError(
                f"the evaluate handler failed on a peer's candidate model: {reply.error.reason}"
            )
        metrics = _returned_metrics(reply, "evaluate")
        if metric not in metrics:
            raise ScoreMetricError(
                f"the evaluate handler returned no metric {metric!r} to score peers by "
                f"(it returned {sorted(metrics) or 'none'}); name one in the run config's "
                f"{SCORE_METRIC!r}"
            )
        return float(metrics[metric])

    return lambda candidates: [score(arrays) for arrays in candidates]


def _returned_arrays(reply: Message) -> dict:
    """Return the arrays the train handler replied (its one ArrayRecord, or ``arrays``)."""
    records = reply.content.array_records
    record: ArrayRecord | None = records.get(wire.ARRAYS)
    if record is None and len(records) == 1:
        record = next(iter(records.values()))
    if record is None:
        raise HandlerReplyError(
            f"the train handler replied {len(records)} ArrayRecords "
            f"({sorted(records)}); SecCL needs the trained model as one, or as {wire.ARRAYS!r}"
        )
    return arrays_of(record)


def _returned_metrics(reply: Message, phase: str) -> MetricRecord:
    """Return the handler's MetricRecord (its one, or ``metrics``; empty if none)."""
    records = reply.content.metric_records
    if wire.METRICS in records:
        return records[wire.METRICS]
    if len(records) == 1:
        return next(iter(records.values()))
    if not records:
        return MetricRecord()
    raise HandlerReplyError(
        f"the {phase} handler replied {len(records)} MetricRecords ({sorted(records)}); "
        f"SecCL needs one, or one named {wire.METRICS!r}"
    )


def _scalar_metrics(metrics: MetricRecord) -> dict[str, float]:
    """Return the metrics as floats (what the node signs)."""
    lists = sorted(k for k, v in metrics.items() if isinstance(v, list))
    if lists:
        raise HandlerReplyError(
            f"the evaluate handler returned list metrics {lists}; SecCL signs scalar metrics"
        )
    return {k: float(v) for k, v in metrics.items()}

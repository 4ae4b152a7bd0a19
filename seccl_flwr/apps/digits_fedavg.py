"""Plain Flower FedAvg ClientApp on the same digits data and functions as SecCL's.

The baseline for :mod:`benchmarks.seccl_vs_fedavg`: every node trains and evaluates
with exactly the ``train_fn`` / ``evaluate_fn`` of :func:`seccl_flwr.apps.digits.
client_functions` (same partitions, validation splits, model and SGD loop), but
speaks Flower's standard ``train`` / ``evaluate`` messages - full model back, no
sparsification, signatures, chain or cross-evaluation. Run it with
``flwr.serverapp.strategy.FedAvg``.
"""

from collections.abc import Callable, Mapping
from typing import Any

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from .. import wire
from ..attacks.client import ClientAttack, node_attack
from ..client import EvaluateFn, TrainFn, run_config_mod
from ..metering import EVALUATE, TRAIN, metered
from ..records import arrays_of, record_of
from . import digits


def fedavg_client_app(
    train_fn: Callable[[Context], TrainFn],
    evaluate_fn: Callable[[Context], EvaluateFn],
    attack: Callable[[Context], ClientAttack | None] | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> ClientApp:
    """Return a standard Flower ClientApp around SecCL-style client functions.

    It serves every strategy of ``flwr.serverapp.strategy`` (FedAvg, Krum, ...).

    Parameters
    ----------
    train_fn, evaluate_fn : Callable[[Context], ...]
        Factories that return the node's ``(arrays, config) -> (arrays, metrics)``
        train function and ``arrays -> metrics`` evaluation function.
    attack : Callable[[Context], ClientAttack | None] | None
        Experiments only: the node's attack; its scaled or random change replaces
        the honest one (label flipping happens inside ``train_fn``).
    run_config : Mapping[str, Any] | None
        Defaults for ``context.run_config`` (see :func:`seccl_flwr.client.run_config_mod`).
    """
    app = ClientApp(mods=[run_config_mod(run_config)] if run_config else None)
    attack_of = attack or (lambda context: None)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        arrays = arrays_of(msg.content.array_records[wire.ARRAYS])
        config = msg.content.config_records.get(wire.CONFIG, ConfigRecord())
        train_on = train_fn(context)
        with metered(TRAIN):
            trained, metrics = train_on(arrays, config)
        attacker = attack_of(context)
        if attacker is not None:
            trained = attacker.poison_arrays(arrays, trained, int(config[wire.SERVER_ROUND]))
        content = RecordDict(
            {
                wire.ARRAYS: record_of(trained),
                wire.METRICS: MetricRecord({k: float(v) for k, v in metrics.items()}),
            }
        )
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        arrays = arrays_of(msg.content.array_records[wire.ARRAYS])
        evaluate_on = evaluate_fn(context)
        with metered(EVALUATE):
            metrics = evaluate_on(arrays)
        metric_record = MetricRecord({k: float(v) for k, v in metrics.items()})
        content = RecordDict({wire.METRICS: metric_record})
        return Message(content, reply_to=msg)

    return app


app = fedavg_client_app(
    train_fn=lambda ctx: digits.client_functions(ctx)[0],
    evaluate_fn=lambda ctx: digits.client_functions(ctx)[2],
    attack=node_attack,
)
"""FedAvg ClientApp on the digits partitions of :data:`seccl_flwr.apps.digits.app`."""

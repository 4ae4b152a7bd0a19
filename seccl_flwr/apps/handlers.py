"""A standard Flower ClientApp from numpy-level train and evaluate functions.

The library's own apps (digits, the MNIST example) write their ``@app.train`` and
``@app.evaluate`` handlers once, here: FedAvg, Krum, ... run them as they are, and
SecCL runs the very same handlers with :data:`seccl_flwr.mod.seccl_mod` around them
(``mods=[seccl_mod]``), so the two differ only in the protocol.
"""

from collections.abc import Callable, Sequence

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from .. import wire
from ..attacks.client import ClientAttack
from ..metering import EVALUATE, TRAIN, metered
from ..records import arrays_of, record_of

TrainFn = Callable[[dict[str, np.ndarray], ConfigRecord], tuple[dict[str, np.ndarray], dict]]
"""``(global arrays, config) -> (trained arrays, metrics incl. 'num-examples')``."""
EvaluateFn = Callable[[dict[str, np.ndarray]], dict]
"""``arrays -> metrics`` (e.g. loss, accuracy, macro-f1, num-examples)."""


def flower_client_app(
    train_fn: Callable[[Context], TrainFn],
    evaluate_fn: Callable[[Context], EvaluateFn],
    attack: Callable[[Context], ClientAttack | None] | None = None,
    mods: Sequence[Mod] = (),
) -> ClientApp:
    """Return a standard Flower ClientApp around numpy-level client functions.

    Parameters
    ----------
    train_fn, evaluate_fn : Callable[[Context], ...]
        Factories that return the node's ``(arrays, config) -> (arrays, metrics)``
        train function and ``arrays -> metrics`` evaluation function.
    attack : Callable[[Context], ClientAttack | None] | None
        Experiments only: the node's attack; its scaled or random change replaces
        the honest one (label flipping happens inside ``train_fn``).
    mods : Sequence[Mod]
        The app's mods, e.g. ``[seccl_mod]``.
    """
    app = ClientApp(mods=list(mods))
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
        content = RecordDict(
            {wire.METRICS: MetricRecord({k: float(v) for k, v in metrics.items()})}
        )
        return Message(content, reply_to=msg)

    return app

"""The MNIST ClientApps: SecCL's, and a plain Flower one for Flower's strategies.

Both run the very same ``train`` and ``evaluate`` handlers (:func:`client_functions`:
one partition, one model, one SGD loop); SecCL's has :data:`seccl_flwr.mod.seccl_mod`
around them, scoring peers by the handler's ``macro-f1`` as the SecCL paper does
(or by the metric ``seccl-score-metric`` names, e.g. ``brier``), so
SecCL and FedAvg/Krum/... differ only in the protocol.
Run config keys: ``device`` (``"cpu"``, ``"cuda"``, ...; default ``"cpu"``), ``seed``,
``lr``, ``batch-size``, ``local-epochs``,
``val-fraction``, ``dirichlet-alpha``, ``digits-per-participant`` and the data keys of
:func:`mnist_seccl.task.data_from_config`; the SecCL keys of
:mod:`seccl_flwr.identity`; for experiments the attack keys of
:data:`seccl_flwr.attacks.ATTACK_KEYS`.

``score-batch`` opts in to batched cross-evaluation
(:func:`seccl_flwr.torch_task.torch_batch_score_fn`, channels-last, up to 16 peers
per call): ``"loop"`` scores one peer after the other without a Flower message per
peer, ``"vmap"`` all of a call at once (slower on a CPU for this CNN:
``benchmarks/cross_eval_cost.py``); ``"off"`` (the default): each peer through the
evaluate handler. Scores are the handler's metric either way (up to the float
rounding of channels-last logits).
"""

from functools import cache
from typing import Any

import torch
from flwr.app import Context
from flwr.clientapp import ClientApp
from torch.utils.data import DataLoader

from seccl_flwr.apps.handlers import EvaluateFn, TrainFn, flower_client_app
from seccl_flwr.attacks import attack_from_config, node_attack
from seccl_flwr.client import BatchScoreFn
from seccl_flwr.datasets import Partition
from seccl_flwr.mod import make_seccl_mod, score_metric_of
from seccl_flwr.torch_task import (
    sgd_train,
    torch_batch_score_fn,
    torch_evaluate_fn,
    torch_train_fn,
)

from .task import MnistNet, data_from_config, partition

DATA_KEYS = (
    "data-dir",
    "data-source",
    "pool-size",
    "test-size",
    "seed",
    "dirichlet-alpha",
    "val-fraction",
    "digits-per-participant",
)
"""Run config keys that decide a node's data partition."""
SCORE_BATCH = ("off", "loop", "vmap")
"""Values of the run config key ``score-batch`` (see the module's docstring)."""
SCORE_METRIC_DEFAULT = "macro-f1"
"""What the app scores peers by without ``seccl-score-metric``: the paper's macro F1."""


@cache
def _partition(
    data_settings: tuple[tuple[str, Any], ...], partition_id: int, num_partitions: int
) -> Partition:
    cfg = dict(data_settings)
    return partition(
        data_from_config(cfg),
        partition_id,
        num_partitions,
        alpha=float(cfg.get("dirichlet-alpha", 0.0)),
        val_fraction=float(cfg.get("val-fraction", 0.2)),
        seed=int(cfg.get("seed", 0)),
        per_participant=int(cfg.get("digits-per-participant", 0)),
    )


@cache
def _functions(
    settings: tuple[tuple[str, Any], ...], partition_id: int, num_partitions: int
) -> tuple[TrainFn, EvaluateFn]:
    cfg = dict(settings)
    device = str(cfg.get("device", "cpu"))
    part = _partition(
        tuple((k, v) for k, v in settings if k in DATA_KEYS), partition_id, num_partitions
    )
    # a fresh loader per run: the shuffle order does not depend on earlier runs
    loader = DataLoader(
        part.train.dataset,
        batch_size=int(cfg.get("batch-size", 32)),
        shuffle=True,
        generator=torch.Generator().manual_seed(int(cfg.get("seed", 0)) + partition_id),
    )
    attack = attack_from_config(cfg, partition_id, num_partitions)
    model = MnistNet()
    train = sgd_train(
        loader,
        device,
        epochs=int(cfg.get("local-epochs", 1)),
        lr=float(cfg.get("lr", 0.02)),
        labels=attack.labels if attack is not None else None,
    )
    return (
        torch_train_fn(model, train, device),
        torch_evaluate_fn(model, part.val_x, part.val_y, device),
    )


@cache
def _batch_scorer(
    settings: tuple[tuple[str, Any], ...], partition_id: int, num_partitions: int, metric: str
) -> BatchScoreFn | None:
    cfg = dict(settings)
    mode = str(cfg.get("score-batch", "off"))
    if mode not in SCORE_BATCH:
        raise ValueError(f"score-batch {mode!r} is none of {SCORE_BATCH}")
    if mode == "off":
        return None
    part = _partition(
        tuple((k, v) for k, v in settings if k in DATA_KEYS), partition_id, num_partitions
    )
    return torch_batch_score_fn(
        MnistNet(),
        part.val_x,
        part.val_y,
        str(cfg.get("device", "cpu")),
        metric=metric,
        vectorize=mode == "vmap",
        channels_last=True,
    )


def batch_scorer(context: Context) -> BatchScoreFn | None:
    """Return this node's batched scorer if the run config's ``score-batch`` asks for one.

    It scores by the metric the mod scores by: ``seccl-score-metric`` of the node or
    run config, ``macro-f1`` without it.
    """
    settings = tuple(sorted((k, v) for k, v in context.run_config.items()))
    return _batch_scorer(
        settings,
        int(context.node_config["partition-id"]),
        int(context.node_config["num-partitions"]),
        score_metric_of(context, SCORE_METRIC_DEFAULT),
    )


def client_functions(context: Context) -> tuple[TrainFn, EvaluateFn]:
    """Return ``(train_fn, evaluate_fn)`` of this node's partition."""
    settings = tuple(sorted((k, v) for k, v in context.run_config.items()))
    return _functions(
        settings,
        int(context.node_config["partition-id"]),
        int(context.node_config["num-partitions"]),
    )


def make_client_app(seccl: bool = True) -> ClientApp:
    """Return the MNIST ClientApp: with the SecCL mod, or plain Flower (FedAvg, Krum, ...)."""
    mods = (
        [
            make_seccl_mod(
                score_metric=SCORE_METRIC_DEFAULT, attack=node_attack, batch_scorer=batch_scorer
            )
        ]
        if seccl
        else []
    )
    return flower_client_app(
        train_fn=lambda ctx: client_functions(ctx)[0],
        evaluate_fn=lambda ctx: client_functions(ctx)[1],
        attack=node_attack,
        mods=mods,
    )


app = make_client_app()
"""The SecCL ClientApp (``[tool.flwr.app.components] clientapp``)."""

flower_app = make_client_app(seccl=False)
"""The same handlers without SecCL, for Flower's own strategies."""

"""The MNIST ClientApps: SecCL's, and a plain Flower one for Flower's strategies.

Both call the very same client functions (:func:`client_functions`: one partition,
one model, one SGD loop), so SecCL and FedAvg/Krum/... differ only in the protocol.
Run config keys: ``seed``, ``lr``, ``batch-size``, ``local-epochs``,
``val-fraction``, ``dirichlet-alpha``, ``digits-per-participant`` and the data keys of
:func:`mnist_seccl.task.data_from_config`; the SecCL keys of
:mod:`seccl_flwr.identity`; for experiments the attack keys of
:data:`seccl_flwr.attacks.ATTACK_KEYS`.
"""

from collections.abc import Mapping
from functools import cache
from typing import Any

import torch
from flwr.app import Context
from flwr.clientapp import ClientApp
from torch.utils.data import DataLoader

from seccl_flwr.apps.digits_fedavg import fedavg_client_app
from seccl_flwr.attacks import attack_from_config, node_attack
from seccl_flwr.client import EvaluateFn, ScoreFn, TrainFn, seccl_client_app
from seccl_flwr.datasets import Partition
from seccl_flwr.torch_task import sgd_train, torch_evaluate_fn, torch_score_fn, torch_train_fn

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
) -> tuple[TrainFn, ScoreFn, EvaluateFn]:
    cfg = dict(settings)
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
        epochs=int(cfg.get("local-epochs", 1)),
        lr=float(cfg.get("lr", 0.02)),
        labels=attack.labels if attack is not None else None,
    )
    return (
        torch_train_fn(model, train),
        torch_score_fn(model, part.val_x, part.val_y),
        torch_evaluate_fn(model, part.val_x, part.val_y),
    )


def client_functions(context: Context) -> tuple[TrainFn, ScoreFn, EvaluateFn]:
    """Return ``(train_fn, score_fn, evaluate_fn)`` of this node's partition."""
    settings = tuple(sorted((k, v) for k, v in context.run_config.items()))
    return _functions(
        settings,
        int(context.node_config["partition-id"]),
        int(context.node_config["num-partitions"]),
    )


def make_client_app(run_config: Mapping[str, Any] | None = None) -> ClientApp:
    """Return the SecCL ClientApp, with ``run_config`` as defaults."""
    return seccl_client_app(
        train_fn=lambda ctx: client_functions(ctx)[0],
        score_fn=lambda ctx: client_functions(ctx)[1],
        evaluate_fn=lambda ctx: client_functions(ctx)[2],
        run_config=run_config,
        attack=node_attack,
    )


def make_flower_client_app(run_config: Mapping[str, Any] | None = None) -> ClientApp:
    """Return a plain Flower ClientApp (FedAvg, Krum, ...) on the same functions."""
    return fedavg_client_app(
        train_fn=lambda ctx: client_functions(ctx)[0],
        evaluate_fn=lambda ctx: client_functions(ctx)[2],
        attack=node_attack,
        run_config=run_config,
    )


app = make_client_app()
"""The SecCL ClientApp (``[tool.flwr.app.components] clientapp``)."""

flower_app = make_flower_client_app()
"""The same clients speaking Flower's standard train/evaluate messages."""

"""SecCL on scikit-learn's digits: a small, download-free Flower app.

The 1,797 8x8 digits are split into a held-out test set (20 %) and a pool shared
IID among the participants; each participant keeps 20 % of its share as its private
validation split for cross-evaluation. Run config keys: ``seed``, ``local-epochs``,
``lr``, ``batch-size``, ``hidden`` (see :class:`DigitsNet`), the SecCL keys of
:mod:`seccl_flwr.identity` and, for experiments, the attack keys of
:data:`seccl_flwr.attacks.ATTACK_KEYS`.
"""

from functools import cache
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, MetricRecord
from torch import nn

from ..attacks.client import attack_from_config, node_attack
from ..datasets import (
    load_digits_arrays,
    make_partition,
    partition_indices,
    split_held_out,
)
from ..mod import make_seccl_mod
from ..records import arrays_of
from ..torch_task import sgd_train, torch_evaluate_fn, torch_train_fn
from .handlers import flower_client_app

DEVICE = "cpu"
"""Where the digits model trains and evaluates (it is small)."""
SCORE_METRIC = "macro-f1"
"""What cross-evaluation scores peers by: macro F1, as in the SecCL paper."""
DATA_NOTE = "scikit-learn digits (1,797 8x8 images): 80% split IID among participants, 20% held out"


class DigitsNet(nn.Module):
    """A small CNN for 8x8 digits (about 1.4k parameters).

    Parameters
    ----------
    hidden : int (default: 0)
        Width of an optional hidden dense layer (``0``: none). Benchmarks use it to
        give clients a heavier model (``hidden=4096``: about 570k parameters).
    """

    def __init__(self, hidden: int = 0) -> None:
        super().__init__()
        if hidden < 0:
            raise ValueError(f"hidden must be non-negative, got {hidden}")
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        layers = (
            [nn.Linear(8 * 4 * 4, hidden), nn.ReLU(), nn.Linear(hidden, 10)]
            if hidden
            else [nn.Linear(8 * 4 * 4, 10)]
        )
        self.head = nn.Sequential(nn.Flatten(), *layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits."""
        return self.head(self.features(x))


def initial_model(seed: int = 0, hidden: int = 0) -> DigitsNet:
    """Return the initial global model (deterministic for a seed)."""
    torch.manual_seed(seed)
    return DigitsNet(hidden)


@cache
def _pool(
    seed: int,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    x, y = load_digits_arrays()
    return split_held_out(x, y, test_fraction=0.2, seed=seed)


def test_set(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the held-out test set (never seen by any participant)."""
    _, (x, y) = _pool(seed)
    return torch.from_numpy(x), torch.from_numpy(y)


@cache
def _client(settings: tuple[tuple[str, Any], ...], partition_id: int, num_partitions: int):
    """Return a node's train and evaluate functions, built once per run.

    ``settings`` is the run config, so a new run (another chain URL or key seed)
    starts from a fresh, equally seeded shuffle, whatever ran before in this process.
    """
    cfg = dict(settings)
    seed = int(cfg.get("seed", 0))
    (x, y), _ = _pool(seed)
    indices = partition_indices(y, num_partitions, seed)[partition_id]
    part = make_partition(
        x, y, indices, batch_size=int(cfg.get("batch-size", 32)), seed=seed + partition_id
    )
    model = DigitsNet(int(cfg.get("hidden", 0)))
    attack = attack_from_config(cfg, partition_id, num_partitions)
    train = torch_train_fn(
        model,
        sgd_train(
            part.train,
            DEVICE,
            epochs=int(cfg.get("local-epochs", 1)),
            lr=float(cfg.get("lr", 0.05)),
            labels=attack.labels if attack is not None else None,
        ),
        DEVICE,
    )
    return train, torch_evaluate_fn(model, part.val_x, part.val_y, DEVICE)


def client_functions(context: Context):
    """Return ``(train_fn, evaluate_fn)`` of this node's partition."""
    return _client(
        tuple(sorted(context.run_config.items())),
        int(context.node_config["partition-id"]),
        int(context.node_config["num-partitions"]),
    )


app = flower_client_app(
    train_fn=lambda ctx: client_functions(ctx)[0],
    evaluate_fn=lambda ctx: client_functions(ctx)[1],
    attack=node_attack,
    mods=[make_seccl_mod(score_metric=SCORE_METRIC, attack=node_attack)],
)
"""The digits SecCL ClientApp: the FedAvg twin's handlers with the SecCL mod around them."""


def server_evaluate_fn(seed: int = 0, hidden: int = 0):
    """Return a centralized evaluation on the held-out test set (accuracy, macro F1)."""
    x, y = test_set(seed)
    model = DigitsNet(hidden)
    evaluate = torch_evaluate_fn(model, x, y, DEVICE)

    def fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        return MetricRecord(evaluate(arrays_of(arrays)))

    return fn

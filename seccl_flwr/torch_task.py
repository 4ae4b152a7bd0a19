"""PyTorch glue: turn an ordinary model and training loop into SecCL client functions.

The handlers in :mod:`seccl_flwr.client` work on named numpy arrays; these helpers
load such arrays into one reusable ``torch.nn.Module`` (no copies of the model per
candidate) and score with batched inference.
"""

from collections.abc import Callable

import numpy as np
import torch
from flwr.app import ConfigRecord
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader

from .client import EvaluateFn, ScoreFn, TrainFn
from .wire import SERVER_ROUND


def model_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """Return the model's state dict as named numpy arrays (CPU copies)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_arrays(model: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Load named numpy arrays into the model in place."""
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Return the model's logits on ``x``, computed in batches in eval mode."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def sgd_train(
    loader: DataLoader,
    epochs: int = 1,
    lr: float = 0.02,
    labels: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> Callable[[nn.Module, ConfigRecord], dict]:
    """Return a plain local SGD loop (cross-entropy), as in the SecCL paper.

    ``config`` may override ``local-epochs`` and ``lr`` per round. ``labels``
    (experiments only, e.g. :meth:`seccl_flwr.attacks.ClientAttack.labels`) maps each
    batch's labels and the ``server-round`` of the config to the labels trained on.
    """

    def train(model: nn.Module, config: ConfigRecord) -> dict:
        n_epochs = int(config.get("local-epochs", epochs))
        server_round = int(config.get(SERVER_ROUND, 0))
        optimizer = torch.optim.SGD(model.parameters(), lr=float(config.get("lr", lr)))
        criterion = nn.CrossEntropyLoss()
        model.train()
        total, seen = 0.0, 0
        for _ in range(n_epochs):
            for x, y in loader:
                if labels is not None:
                    y = labels(y, server_round)
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(y)
                seen += len(y)
        return {"train-loss": total / max(seen, 1), "num-examples": len(loader.dataset)}

    return train


def torch_train_fn(model: nn.Module, train: Callable[[nn.Module, ConfigRecord], dict]) -> TrainFn:
    """Wrap ``train(model, config) -> metrics`` as a SecCL train function."""

    def fn(arrays: dict[str, np.ndarray], config: ConfigRecord) -> tuple[dict, dict]:
        load_arrays(model, arrays)
        metrics = train(model, config)
        return model_arrays(model), metrics

    return fn


def torch_score_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> ScoreFn:
    """Return the macro-F1 scorer SecCL uses in cross-evaluation."""
    labels = y.cpu().numpy()

    def fn(arrays: dict[str, np.ndarray]) -> float:
        load_arrays(model, arrays)
        pred = predict(model, x).argmax(1).cpu().numpy()
        return float(f1_score(labels, pred, average="macro", zero_division=0))

    return fn


def torch_evaluate_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> EvaluateFn:
    """Return an evaluation function: loss, accuracy, macro F1, num-examples."""
    labels = y.cpu().numpy()

    def fn(arrays: dict[str, np.ndarray]) -> dict:
        load_arrays(model, arrays)
        logits = predict(model, x)
        pred = logits.argmax(1).cpu().numpy()
        return {
            "loss": float(nn.functional.cross_entropy(logits, y)),
            "accuracy": float((pred == labels).mean()),
            "macro-f1": float(f1_score(labels, pred, average="macro", zero_division=0)),
            "num-examples": len(labels),
        }

    return fn

"""PyTorch glue: an ordinary model and training loop as numpy-level client functions.

The handlers of :func:`seccl_flwr.apps.handlers.flower_client_app` work on named
numpy arrays; these helpers load such arrays into one reusable ``torch.nn.Module``
on the ``device`` each one is given (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...) and
evaluate with batched inference there. Arrays always come back as CPU numpy
copies, which is all :data:`seccl_flwr.mod.seccl_mod` ever touches: the device is
the app's business.
"""

from collections.abc import Callable

import numpy as np
import torch
from flwr.app import ConfigRecord
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader

from .apps.handlers import EvaluateFn, TrainFn
from .wire import SERVER_ROUND

Device = torch.device | str
"""Where a helper runs the model: a ``torch.device`` or its name."""


def model_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """Return the model's state dict as named numpy arrays (CPU copies, from any device)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_arrays(model: nn.Module, arrays: dict[str, np.ndarray], device: Device) -> None:
    """Move the model to ``device`` and load named numpy arrays into it in place."""
    model.to(device)
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, device: Device, batch_size: int = 4096
) -> torch.Tensor:
    """Return the model's logits on ``x`` (on ``device``), in batches in eval mode."""
    model.eval()
    return torch.cat(
        [model(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
    )


def sgd_train(
    loader: DataLoader,
    device: Device,
    epochs: int = 1,
    lr: float = 0.02,
    labels: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> Callable[[nn.Module, ConfigRecord], dict]:
    """Return a plain local SGD loop (cross-entropy) on ``device``, as in the SecCL paper.

    ``config`` may override ``local-epochs`` and ``lr`` per round. ``labels``
    (experiments only, e.g. :meth:`seccl_flwr.attacks.ClientAttack.labels`) maps each
    batch's labels and the ``server-round`` of the config to the labels trained on.
    """

    def train(model: nn.Module, config: ConfigRecord) -> dict:
        n_epochs = int(config.get("local-epochs", epochs))
        server_round = int(config.get(SERVER_ROUND, 0))
        model.to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=float(config.get("lr", lr)))
        criterion = nn.CrossEntropyLoss()
        model.train()
        total, seen = 0.0, 0
        for _ in range(n_epochs):
            for x, y in loader:
                if labels is not None:
                    y = labels(y, server_round)
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(y)
                seen += len(y)
        return {"train-loss": total / max(seen, 1), "num-examples": len(loader.dataset)}

    return train


def torch_train_fn(
    model: nn.Module, train: Callable[[nn.Module, ConfigRecord], dict], device: Device
) -> TrainFn:
    """Wrap ``train(model, config) -> metrics`` as a train function on ``device``."""

    def fn(arrays: dict[str, np.ndarray], config: ConfigRecord) -> tuple[dict, dict]:
        load_arrays(model, arrays, device)
        metrics = train(model, config)
        return model_arrays(model), metrics

    return fn


def torch_evaluate_fn(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: Device
) -> EvaluateFn:
    """Return an evaluation function on ``device``: loss, accuracy, macro F1, num-examples.

    Macro F1 (scikit-learn) is the SecCL paper's cross-evaluation score: name it in
    ``seccl-score-metric`` (``"macro-f1"``) to score peers by it.
    """
    labels = y.cpu().numpy()

    def fn(arrays: dict[str, np.ndarray]) -> dict:
        load_arrays(model, arrays, device)
        logits = predict(model, x, device)
        pred = logits.argmax(1).cpu().numpy()
        return {
            "loss": float(nn.functional.cross_entropy(logits, y.to(logits.device))),
            "accuracy": float((pred == labels).mean()),
            "macro-f1": float(f1_score(labels, pred, average="macro", zero_division=0)),
            "num-examples": len(labels),
        }

    return fn

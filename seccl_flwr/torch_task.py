"""PyTorch glue: an ordinary model and training loop as numpy-level client functions.

The handlers of :func:`seccl_flwr.apps.handlers.flower_client_app` work on named
numpy arrays; these helpers load such arrays into one reusable ``torch.nn.Module``
on the ``device`` each one is given (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...) and
evaluate with batched inference there. Arrays always come back as CPU numpy
copies, which is all :data:`seccl_flwr.mod.seccl_mod` ever touches: the device is
the app's business.

:func:`torch_batch_score_fn` is the opt-in batched scorer of cross-evaluation
(``make_seccl_mod(batch_scorer=...)``): several peers' candidate models per call,
scored without Flower messages in between.
"""

from collections.abc import Callable, Sequence

import numpy as np
import torch
from flwr.app import ConfigRecord
from torch import nn
from torch.func import functional_call, vmap
from torch.utils.data import DataLoader

from .apps.handlers import EvaluateFn, TrainFn
from .wire import SERVER_ROUND

SCORE_METRICS = ("macro-f1", "accuracy", "brier")
"""Metrics :func:`torch_batch_score_fn` scores by (as :func:`torch_evaluate_fn` names them)."""

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
    """Return an evaluation function on ``device``: loss, scores, num-examples.

    The scores are the :data:`SCORE_METRICS` (accuracy, macro F1, Brier score).
    Macro F1 (scikit-learn) is the SecCL paper's cross-evaluation score: name it in
    ``seccl-score-metric`` (``"macro-f1"``) to score peers by it; ``"brier"``
    (:func:`brier_score`) also sees how sure a model is of the right label.
    """
    labels = y.cpu().numpy()

    def fn(arrays: dict[str, np.ndarray]) -> dict:
        load_arrays(model, arrays, device)
        logits = predict(model, x, device)
        return {
            "loss": float(nn.functional.cross_entropy(logits, y.to(logits.device))),
            **{metric: score_logits(metric, labels, logits) for metric in SCORE_METRICS},
            "num-examples": len(labels),
        }

    return fn


def score_logits(metric: str, labels: np.ndarray, logits: torch.Tensor) -> float:
    """Return one of :data:`SCORE_METRICS` of a model's ``logits`` on examples ``labels``.

    Raises
    ------
    ValueError
        If ``metric`` is not one of :data:`SCORE_METRICS`.
    """
    if metric == "brier":
        return brier_score(labels, torch.softmax(logits.float(), -1).cpu().numpy())
    check_score_metric(metric)
    pred = logits.argmax(-1).cpu().numpy()
    if metric == "accuracy":
        return float((pred == labels).mean())
    return macro_f1(labels, pred)


def check_score_metric(metric: str) -> None:
    """Raise ``ValueError`` naming ``metric`` unless it is one of :data:`SCORE_METRICS`."""
    if metric not in SCORE_METRICS:
        raise ValueError(f"unknown score metric {metric!r}; choose from {', '.join(SCORE_METRICS)}")


def brier_score(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Return ``1 - mean((probs - onehot(y_true))^2 summed over classes) / 2``, in [0, 1].

    The multi-class Brier score (Brier, 1950) turned into a score where higher is
    better, as accuracy and F1 are: 1 for a model certain of every right label, 0
    for one certain of wrong ones (0 with no example). Unlike accuracy and F1 it
    sees how sure a model is: a model that keeps the right label on top but only at
    probability 0.6 (what training on 40 % flipped labels teaches) has the same
    accuracy as a sure one and a lower Brier score. It is strictly proper: a model
    scores best in expectation by stating its true beliefs, so nobody gains by
    sharpening or blurring an honest update's probabilities.

    Parameters
    ----------
    y_true : np.ndarray
        Integer labels, shape ``(examples,)``.
    probs : np.ndarray
        Predicted class probabilities, shape ``(examples, classes)``, rows summing to 1.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if not len(y_true):
        return 0.0
    right = probs[np.arange(len(y_true)), y_true]
    squared = (probs**2).sum(axis=1) - 2.0 * right + 1.0
    return float(1.0 - squared.mean() / 2.0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Return the macro F1 over the labels in ``y_true`` or ``y_pred`` (0 for none).

    Equal to ``sklearn.metrics.f1_score(y_true, y_pred, average="macro",
    zero_division=0)`` for non-negative integer labels (checked in
    ``tests/test_batch_score.py``), at a fraction of its per-call cost (about 2 ms
    per call in scikit-learn's input validation, as much as a tenth of a peer's
    cross-evaluation on the MNIST example).
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if not len(y_true):
        return 0.0
    num = int(max(y_true.max(), y_pred.max())) + 1
    tp = np.bincount(y_true[y_true == y_pred], minlength=num)
    support = np.bincount(y_true, minlength=num) + np.bincount(y_pred, minlength=num)
    f1 = np.divide(2.0 * tp, support, out=np.zeros(num), where=support > 0)
    return float(f1[support > 0].mean())


def torch_batch_score_fn(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    device: Device,
    metric: str = "macro-f1",
    vectorize: bool = False,
    channels_last: bool = False,
    batch_size: int = 4096,
) -> Callable[[Sequence[dict[str, np.ndarray]]], list[float]]:
    """Return a batched scorer of candidate models: ``[arrays, ...] -> [score, ...]``.

    The opt-in scorer of cross-evaluation (``make_seccl_mod(batch_scorer=...)``,
    see :mod:`seccl_flwr.mod`): it scores several peers' candidate models per call
    by ``metric`` of :func:`torch_evaluate_fn`, with the validation data moved to
    ``device`` (and laid out) once, not per peer, and no Flower message, record
    encoding or ``load_state_dict`` per peer: each candidate's arrays run through
    ``model`` by :func:`torch.func.functional_call`. Scores equal
    :func:`torch_evaluate_fn`'s metric on each candidate (``tests/test_batch_score.py``).

    Parameters
    ----------
    model : nn.Module
        The architecture (its own weights are not used; its buffers are, unless a
        candidate carries them).
    x, y : torch.Tensor
        The validation split, loaded once.
    device : Device
        Where inference runs.
    metric : str (default: ``"macro-f1"``)
        One of :data:`SCORE_METRICS`: ``"macro-f1"``, ``"accuracy"`` or ``"brier"``.
    vectorize : bool (default: ``False``)
        Run all candidates of a call at once, :func:`torch.func.vmap` over their
        stacked parameters. Only for models whose layers vmap supports; on a CPU the
        MNIST example's CNN ran 2-4x slower so (vmap turns its convolutions into
        grouped ones), so the default is one candidate after the other per batch of
        inputs.
    channels_last : bool (default: ``False``)
        Lay 4-D inputs and weights out channels-last: on a CPU the MNIST example's
        CNN infers about 2x faster (its max-pooling most), with logits equal to the
        default layout's up to float rounding (about 1e-6).
    batch_size : int (default: 4096)
        Validation inputs per forward pass (per candidate).

    Raises
    ------
    ValueError
        If ``metric`` is not one of :data:`SCORE_METRICS`.
    """
    check_score_metric(metric)
    model = model.to(device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    inputs = [
        x[i : i + batch_size].to(device).to(memory_format=layout)
        if x.dim() == 4
        else x[i : i + batch_size].to(device)
        for i in range(0, len(x), batch_size)
    ]
    labels = y.cpu().numpy()
    buffers = {k: v for k, v in model.named_buffers()}

    def tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        out = {**buffers}
        for name, array in arrays.items():
            tensor = torch.from_numpy(np.asarray(array)).to(device)
            out[name] = tensor.to(memory_format=layout) if tensor.dim() == 4 else tensor
        return out

    @torch.no_grad()
    def fn(candidates: Sequence[dict[str, np.ndarray]]) -> list[float]:
        params = [tensors(arrays) for arrays in candidates]
        if not params:
            return []
        model.eval()  # the app's training may share the module
        if vectorize:
            stacked = {k: torch.stack([p[k] for p in params]) for k in params[0]}
            forward = vmap(lambda p, batch: functional_call(model, p, (batch,)), (0, None))
            logits = torch.cat([forward(stacked, batch) for batch in inputs], 1)
        else:
            logits = torch.stack(
                [
                    torch.cat([functional_call(model, p, (batch,)) for batch in inputs])
                    for p in params
                ]
            )
        return [score_logits(metric, labels, one) for one in logits]

    return fn

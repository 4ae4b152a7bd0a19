"""Batched cross-evaluation scores exactly as the per-peer path does (issue 16, item 4).

The per-peer path scores each peer's candidate model by one call of the app's
evaluate function (through the evaluate handler, :mod:`seccl_flwr.mod`); the opt-in
batched scorer (:func:`seccl_flwr.torch_task.torch_batch_score_fn`) scores several
per call, looped or vmapped, in either memory layout. Differential tests: same
candidates, same scores; and the client's batching keeps the ballot's order.
"""

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score
from torch import nn

from seccl_flwr.chain.rpc_server import free_loopback_url
from seccl_flwr.client import score_updates
from seccl_flwr.errors import HandlerReplyError
from seccl_flwr.protocol.sparse import ModelLayout, sparsify
from seccl_flwr.torch_task import (
    SCORE_METRICS,
    macro_f1,
    torch_batch_score_fn,
    torch_evaluate_fn,
)

labels = st.lists(st.integers(0, 9), min_size=1, max_size=60)


@given(labels, st.data())
def test_macro_f1_equals_scikit_learns(y_true, data):
    y_pred = data.draw(st.lists(st.integers(0, 9), min_size=len(y_true), max_size=len(y_true)))
    expected = f1_score(y_true, y_pred, average="macro", zero_division=0)
    assert macro_f1(np.array(y_true), np.array(y_pred)) == pytest.approx(expected, abs=1e-12)


class TinyNet(nn.Module):
    """Conv, ReLU, max-pool, linear: the layer kinds of the MNIST example's CNN."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.head = nn.Linear(3 * 3 * 3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(nn.functional.max_pool2d(torch.relu(self.conv(x)), 2), 1))


def candidates_of(seed: int, count: int) -> tuple[TinyNet, list[dict], torch.Tensor, torch.Tensor]:
    """A model, ``count`` perturbed copies of its arrays and a validation split."""
    torch.manual_seed(seed)
    model = TinyNet()
    base = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(seed)
    models = [
        {k: (v + rng.normal(0, 0.5, v.shape)).astype(np.float32) for k, v in base.items()}
        for _ in range(count)
    ]
    x = torch.from_numpy(rng.random((int(rng.integers(5, 40)), 1, 8, 8), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 4, len(x)))
    return model, models, x, y


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    count=st.integers(1, 5),
    vectorize=st.booleans(),
    channels_last=st.booleans(),
    metric=st.sampled_from(SCORE_METRICS),
    batch_size=st.integers(3, 64),
)
def test_batched_scores_equal_per_peer_scores(
    seed, count, vectorize, channels_last, metric, batch_size
):
    model, models, x, y = candidates_of(seed, count)
    per_peer = torch_evaluate_fn(TinyNet(), x, y, "cpu")
    batched = torch_batch_score_fn(
        model,
        x,
        y,
        "cpu",
        metric=metric,
        vectorize=vectorize,
        channels_last=channels_last,
        batch_size=batch_size,
    )
    expected = [per_peer(m)[metric] for m in models]
    if metric == "brier":  # probabilities of channels-last or vmapped logits: float rounding
        assert batched(models) == pytest.approx(expected, abs=1e-6)
    else:
        assert batched(models) == expected
    assert batched([]) == []


def test_a_batched_scorer_names_its_metrics():
    with pytest.raises(ValueError, match="unknown score metric 'loss'"):
        torch_batch_score_fn(TinyNet(), torch.zeros(1, 1, 8, 8), torch.zeros(1), "cpu", "loss")


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), peers=st.integers(1, 7), batch_size=st.integers(1, 8))
def test_the_client_scores_in_batches_as_peer_by_peer(seed, peers, batch_size):
    model, _, x, y = candidates_of(seed, 0)
    arrays = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    layout = ModelLayout.of(arrays)
    rng = np.random.default_rng(seed)
    updates = {
        f"peer{i}": sparsify(rng.normal(0, 1, layout.size).astype(np.float32), 0.3)
        for i in range(peers)
    }
    evaluate = torch_evaluate_fn(TinyNet(), x, y, "cpu")
    one_by_one = score_updates(
        layout, arrays, updates, lambda ms: [evaluate(m)["macro-f1"] for m in ms]
    )
    batched = torch_batch_score_fn(TinyNet(), x, y, "cpu", channels_last=True)
    assert score_updates(layout, arrays, updates, batched, batch_size) == one_by_one


def test_a_scorer_that_drops_a_model_is_refused():
    arrays = {"w": np.zeros(4, np.float32)}
    updates = {"a": sparsify(np.ones(4, np.float32), 0.5), "b": sparsify(np.ones(4, np.float32), 1)}
    with pytest.raises(HandlerReplyError, match="returned 1 scores for 2 candidate models"):
        score_updates(ModelLayout.of(arrays), arrays, updates, lambda ms: [0.5], batch_size=2)


def test_an_app_with_a_batched_scorer_elects_as_its_evaluate_handler_does():
    """Through the mod, on the embedded chain: same totals and candidates, no handler call."""
    from seccl_flwr.apps import digits
    from seccl_flwr.apps.handlers import flower_client_app
    from seccl_flwr.inprocess import InProcessGrid
    from seccl_flwr.mod import make_seccl_mod
    from seccl_flwr.strategy import SecCL
    from tests.strategy_helpers import pins_of

    evaluations = []

    def evaluate_fn(context):
        inner = digits.client_functions(context)[1]

        def fn(arrays):
            evaluations.append(context.node_id)
            return inner(arrays)

        return fn

    def batch_scorer(context):
        from seccl_flwr.datasets import make_partition, partition_indices

        (x, y), _ = digits._pool(0)
        pid, n = (
            int(context.node_config["partition-id"]),
            int(context.node_config["num-partitions"]),
        )
        part = make_partition(x, y, partition_indices(y, n, 0)[pid], batch_size=32, seed=pid)
        return torch_batch_score_fn(digits.DigitsNet(), part.val_x, part.val_y, "cpu")

    results = {}
    for name, scorer in (("per-peer", None), ("batched", batch_scorer)):
        app = flower_client_app(
            lambda ctx: digits.client_functions(ctx)[0],
            evaluate_fn,
            mods=[make_seccl_mod(score_metric="macro-f1", batch_scorer=scorer, batch_size=2)],
        )
        strategy = SecCL(chain_url=free_loopback_url(), candidate_fraction=0.5)
        grid = InProcessGrid(
            app,
            4,
            run_config={
                "seccl-key-seed": 5,
                "seccl-chain-url": strategy.chain_url,
                **pins_of(strategy),
            },
        )
        evaluations.clear()
        result = strategy.start(
            grid, ArrayRecord(digits.initial_model().state_dict()), num_rounds=1
        )
        results[name] = (result.rounds[0].totals, result.rounds[0].candidates, len(evaluations))
    assert results["batched"][:2] == results["per-peer"][:2]
    assert results["per-peer"][2] == 4 * 3 + 4  # each peer's candidate, then the global model
    assert results["batched"][2] == 4  # the global model only

"""The metrics clients score peers by (:data:`seccl_flwr.torch_task.SCORE_METRICS`).

The Brier score against scikit-learn's, at its extremes, as a proper scoring rule,
and against the attack it is for: a stealthy label flipper, whose update keeps most
right labels on top, is scored below an honest one by every evaluator's small
validation split far more consistently under the Brier score than under macro F1.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from sklearn.metrics import brier_score_loss

from seccl_flwr.torch_task import SCORE_METRICS, brier_score, score_logits

CLASSES = 4


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**16), examples=st.integers(1, 40), scale=st.floats(0.01, 20))
def test_the_brier_score_is_one_minus_scikit_learns_halved_loss(seed, examples, scale):
    rng = np.random.default_rng(seed)
    logits = torch.from_numpy(rng.normal(0, scale, (examples, CLASSES)))
    y = rng.integers(0, CLASSES, examples)
    probs = torch.softmax(logits, 1).numpy()
    loss = brier_score_loss(y, probs, labels=list(range(CLASSES)), scale_by_half=True)
    assert brier_score(y, probs) == pytest.approx(1 - loss, abs=1e-9)
    assert score_logits("brier", y, logits) == pytest.approx(1 - loss, abs=1e-6)  # float32


def test_the_brier_score_runs_from_sure_and_wrong_to_sure_and_right():
    y = np.array([0, 1, 2])
    sure = np.eye(CLASSES)[y]
    assert brier_score(y, sure) == 1.0
    assert brier_score(y, np.eye(CLASSES)[(y + 1) % CLASSES]) == 0.0
    # uniform: 1 - (1 - 1/C) / 2
    assert brier_score(y, np.full((3, CLASSES), 1 / CLASSES)) == pytest.approx(0.625)
    assert brier_score(np.array([], dtype=int), np.zeros((0, CLASSES))) == 0.0


def test_a_hedging_model_has_the_accuracy_of_a_sure_one_and_a_lower_brier_score():
    # what 40 % flipped labels teach: the right label on top, at 0.6 instead of 1
    y = np.array([0, 1, 2, 3])
    sure = np.eye(CLASSES)[y]
    hedged = 0.6 * sure + 0.4 * np.eye(CLASSES)[CLASSES - 1 - y]
    for metric in ("accuracy", "macro-f1"):
        assert score_logits(metric, y, torch.log(torch.from_numpy(hedged))) == 1.0
    assert brier_score(y, hedged) == pytest.approx(1 - (0.4**2 + 0.4**2) / 2)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_stating_the_true_probabilities_scores_best_in_expectation(seed):
    # strictly proper: no update gains by sharpening or blurring honest probabilities
    rng = np.random.default_rng(seed)
    truth, stated = rng.dirichlet(np.ones(CLASSES), 2)

    def expected(p: np.ndarray) -> float:
        return sum(q * brier_score(np.array([c]), p[None]) for c, q in enumerate(truth))

    assert expected(truth) >= expected(stated) - 1e-12
    sharpened = np.eye(CLASSES)[truth.argmax()]
    assert expected(truth) >= expected(sharpened) - 1e-12


def test_an_unknown_metric_is_named():
    with pytest.raises(ValueError, match="unknown score metric 'loss'.*brier"):
        score_logits("loss", np.array([0]), torch.zeros(1, CLASSES))
    assert "brier" in SCORE_METRICS


def test_evaluators_rank_a_stealthy_flipper_below_an_honest_model_more_surely_by_brier():
    """A linear model of scikit-learn's 8x8 digits trained on clean labels, and one on
    labels of which 40 % are flipped (y -> 9 - y): ten evaluators, each with 80
    validation digits, score both. The honest model's lead is a few times its own
    spread across evaluators under macro F1, many times under the Brier score: what
    lets a median over evaluators keep the flipper out when colluders shift it."""
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16, dtype=torch.float32), torch.tensor(y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, val = order[:1000], order[1000:1800]

    def fit(labels: torch.Tensor) -> torch.nn.Module:
        torch.manual_seed(0)
        model = torch.nn.Linear(64, 10)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(300):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[train]), labels).backward()
            opt.step()
        return model

    flipped = y[train].clone()
    mask = torch.from_numpy(np.random.default_rng(0).random(len(train)) < 0.4)
    flipped[mask] = 9 - flipped[mask]
    honest, stealthy = fit(y[train]), fit(flipped)

    def lead(metric: str) -> np.ndarray:
        gaps = []
        with torch.no_grad():
            for split in val.split(80):
                labels = y[split].numpy()
                gaps.append(
                    score_logits(metric, labels, honest(x[split]))
                    - score_logits(metric, labels, stealthy(x[split]))
                )
        return np.array(gaps)

    f1, brier = lead("macro-f1"), lead("brier")
    assert (brier > 0).all()
    assert brier.mean() / brier.std() > 3 * f1.mean() / f1.std()

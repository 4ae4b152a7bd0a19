"""examples/mnist's collusion sweep: error-feedback and Brier cells and their CSV.

The sweep's SecCL runs send plain top-k updates, as in the paper, unless a cell asks
for error feedback (the library's default client); these tests hold that such a
cell is its own run everywhere: in the CSV's key, the tables and the off-chain
harness, which must carry each client's residual from round to round as
:func:`seccl_flwr.client.sparse_update` does.
"""

import csv
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist"


@pytest.fixture
def collusion(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import collusion

    return collusion


def _row(collusion, **values) -> dict:
    row = dict.fromkeys(collusion.FIELDS, "0")
    row |= {"rule": "median", "attack": "collude", "epsilon": "0.4", "split": "iid"}
    row |= {"mode": "off-chain", "round": "10", "accuracy": "0.5", "score_metric": ""}
    return row | values


def test_an_error_feedback_cell_is_its_own_run(collusion, tmp_path):
    plain = collusion.Cell("median", "collude", 0.4, 0)
    feedback = collusion.Cell("median", "collude", 0.4, 0, error_feedback=True)
    assert plain.key() != feedback.key()
    assert plain.setting().error_feedback is False and feedback.setting().error_feedback
    path = tmp_path / collusion.CSV_NAME
    collusion.append_rows(path, [_row(collusion, error_feedback="False")])
    assert collusion.done_keys(path) == {plain.key()}
    collusion.append_rows(path, [_row(collusion, error_feedback="True", accuracy="0.9")])
    assert collusion.done_keys(path) == {plain.key(), feedback.key()}
    table = collusion.finals(path)
    assert table[("median", "collude", "iid", 0.4)] == [0.5]
    assert table[("median" + collusion.FEEDBACK, "collude", "iid", 0.4)] == [0.9]
    grid = collusion.grid("error-feedback")
    assert len(grid) == 78 and all(c.error_feedback for c in grid)
    assert {c.rule for c in grid} == {"median", "rank-median"}
    assert set(grid) <= set(collusion.grid("all"))
    assert not any(c.error_feedback for c in collusion.grid("target"))


def test_a_csv_from_before_the_column_is_rewritten_whole(collusion, tmp_path):
    """Rows written before ``error_feedback`` existed keep every value and count as
    runs without it; a column the sweep does not know is refused, the file untouched."""
    path = tmp_path / collusion.CSV_NAME
    old = [f for f in collusion.FIELDS if f != "error_feedback"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=old, extrasaction="ignore")
        writer.writeheader()
        writer.writerow(_row(collusion, seed="2"))
    collusion.append_rows(path, [_row(collusion, error_feedback="True")])
    rows = list(csv.DictReader(path.open(newline="")))
    assert list(rows[0]) == list(collusion.FIELDS)
    assert rows[0]["seed"] == "2" and rows[0]["error_feedback"] == ""
    assert rows[1]["error_feedback"] == "True"
    assert collusion.done_keys(path) == {
        collusion.Cell("median", "collude", 0.4, 2).key(),
        collusion.Cell("median", "collude", 0.4, 0, error_feedback=True).key(),
    }
    assert not path.with_name(path.name + ".tmp").exists()

    strange = tmp_path / "strange" / collusion.CSV_NAME
    strange.parent.mkdir()
    strange.write_text("rule,bogus\nmedian,1\n")
    with pytest.raises(ValueError, match="bogus"):
        collusion.append_rows(strange, [_row(collusion)])
    assert strange.read_text() == "rule,bogus\nmedian,1\n"


def test_the_fast_harness_carries_each_clients_residual(monkeypatch):
    """With error feedback each client's round-r update starts from the residual its
    round r - 1 update left (none in round 1); without it, plain top-k."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from mnist_seccl import experiments as ex
    from mnist_seccl import offchain

    from seccl_flwr.identity import ERROR_FEEDBACK

    real = offchain.sparsify_with_feedback
    calls: list[tuple[np.ndarray | None, np.ndarray]] = []

    def spy(change, residual, *args, **kwargs):
        update, left = real(change, residual, *args, **kwargs)
        calls.append((None if residual is None else residual.copy(), left.copy()))
        return update, left

    monkeypatch.setattr(offchain, "sparsify_with_feedback", spy)
    config = {**ex.BASE_CONFIG, **ex.QUICK_CONFIG, "local-epochs": 1, ERROR_FEEDBACK: True}
    n, rounds = 3, 3
    offchain.run_offchain(config, n, rounds, 0.4, "median")
    assert len(calls) == n * rounds
    assert all(residual is None for residual, _ in calls[:n])
    for r in range(1, rounds):
        for p in range(n):
            residual, _ = calls[r * n + p]
            assert np.array_equal(residual, calls[(r - 1) * n + p][1])
    assert any(np.any(left) for _, left in calls)

    calls.clear()
    offchain.run_offchain({**config, ERROR_FEEDBACK: False}, n, 1, 0.4, "median")
    assert calls == []


def test_the_ballot_spread_diagnostic_separates_an_evaluators_offset(monkeypatch):
    """ballot_spread.py: scores that are an evaluator's offset plus the update's quality
    spread across evaluators only by the offsets, which centring removes; the median
    rule seats colluders that zero honest peers where ranks and the honest mean do not."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import ballot_spread

    authors = [f"0x{i:040x}" for i in range(1, 11)]
    colluders = set(authors[:4])
    ballots = {}
    for i, e in enumerate(authors):
        offset = 100_000 * (i % 3)  # evaluators 0, 100k or 200k F1 x 1e6 more generous
        ballots[e] = {
            a: (1_000_000 if a in colluders else 0)
            if e in colluders
            else offset + (560_000 if a in colluders else 600_000) + 1_000 * authors.index(a)
            for a in authors
            if a != e
        }
    honest = set(authors) - colluders
    raw, centred = ballot_spread.spread(ballots, honest)
    assert raw > 5 and centred < 2  # F1 points: the offsets are most of the spread
    won = ballot_spread.seats(ballots, honest, colluders, 3)
    assert won["median"] >= 1 and won["rank-median"] == 0 and won["honest mean"] == 0


def test_a_brier_cell_is_its_own_run_named_in_the_tables(collusion, tmp_path):
    plain = collusion.Cell("median", "stealthy", 0.4, 0, error_feedback=True)
    brier = collusion.Cell("median", "stealthy", 0.4, 0, error_feedback=True, score_metric="brier")
    assert plain.key() != brier.key() and brier.setting().score_metric == "brier"
    path = tmp_path / collusion.CSV_NAME
    rows = [  # "": a row from before the column, macro F1
        _row(collusion, attack="stealthy", error_feedback="True", score_metric=metric, accuracy=acc)
        for metric, acc in (("", "0.5"), ("brier", "0.9"))
    ]
    collusion.append_rows(path, rows)
    assert collusion.done_keys(path) == {plain.key(), brier.key()}
    table = collusion.finals(path)
    name = "median" + collusion.FEEDBACK
    assert table[(name, "stealthy", "iid", 0.4)] == [0.5]
    assert table[(name + collusion.BRIER, "stealthy", "iid", 0.4)] == [0.9]
    assert collusion.base_rule(name + collusion.BRIER) == "median"
    grid = collusion.grid("brier")
    assert len(grid) == 78 and all(c.score_metric == "brier" and c.error_feedback for c in grid)
    assert set(grid) <= set(collusion.grid("all"))
    assert all(c.score_metric == "macro-f1" for c in collusion.grid("stealthy"))


def test_the_fast_harness_scores_by_the_metric_the_run_config_names(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from mnist_seccl import experiments as ex
    from mnist_seccl import offchain

    real = offchain.score_logits
    metrics: list[str] = []

    def spy(metric, *args):
        metrics.append(metric)
        return real(metric, *args)

    monkeypatch.setattr(offchain, "score_logits", spy)
    config = {**ex.BASE_CONFIG, **ex.QUICK_CONFIG, "local-epochs": 1}
    offchain.run_offchain({**config, "seccl-score-metric": "brier"}, 3, 1, 0.4, "median")
    assert metrics == ["brier"] * 6  # 3 updates, each scored by the 2 other nodes
    metrics.clear()
    offchain.run_offchain(config, 3, 1, 0.4, "median")
    assert metrics == ["macro-f1"] * 6  # the paper's without the key
    with pytest.raises(ValueError, match="seccl-score-metric 'loss' is none of"):
        offchain.run_offchain({**config, "seccl-score-metric": "loss"}, 3, 1, 0.4, "median")

"""The MNIST example: its data handling, its two ClientApps and the --quick scripts."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, RecordDict

from seccl_flwr.inprocess import new_run_id

from .conftest import skip_or_fail

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist"


def _read(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


@pytest.fixture
def example(monkeypatch):
    """Import the example's modules (``mnist_seccl`` and the scripts)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from mnist_seccl import task

    try:
        task.resolve_data_dir()
    except FileNotFoundError as exc:
        skip_or_fail(f"MNIST IDX files not here: {exc}")
    return task


def test_missing_data_dir_names_every_path_tried(example, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")) as info:
        example.resolve_data_dir(tmp_path / "nowhere")
    assert "data-dir" in str(info.value)
    with pytest.raises(ValueError, match="unknown data source 'floppy'"):
        example.load_data(source="floppy")


def test_test_set_split_is_disjoint_and_says_so(example):
    data = example.load_data(source="idx", pool_size=8000, test_size=2000)
    assert data.note == (
        "MNIST test set (10k) split: 8,000 digits for participants, 2,000 held out"
    )
    assert len(data.pool_y) == 8000 and len(data.test_y) == 2000
    pool = {x.tobytes() for x in data.pool_x}
    assert not any(x.tobytes() in pool for x in data.test_x)


def test_iid_and_dirichlet_partitions(example):
    data = example.load_data(source="idx", pool_size=2000, test_size=500)
    iid = [example.partition(data, p, 10) for p in range(10)]
    sizes = [len(p.train.dataset) + len(p.val_y) for p in iid]
    assert sum(sizes) == 2000 and max(sizes) - min(sizes) <= 1  # equal split
    skewed = [example.partition(data, p, 10, alpha=0.1) for p in range(10)]

    def classes(part):
        labels = np.concatenate([part.train.dataset.tensors[1].numpy(), part.val_y.numpy()])
        return np.bincount(labels, minlength=10).max() / len(labels)

    # label skew: a Dirichlet(0.1) participant is dominated by few classes
    assert np.mean([classes(p) for p in skewed]) > 2 * np.mean([classes(p) for p in iid])


def test_digits_per_participant_draws_a_fixed_size_share_each_that_may_overlap(example):
    data = example.load_data(source="idx", pool_size=2000, test_size=500)
    parts = [example.partition(data, p, 4, per_participant=1500) for p in range(4)]

    def digits(part):
        x = np.concatenate([part.train.dataset.tensors[0].numpy(), part.val_x.numpy()])
        return [d.tobytes() for d in x]

    shares = [digits(p) for p in parts]
    assert all(len(share) == 1500 for share in shares)
    assert len(set(shares[0])) > 1400  # drawn without replacement (MNIST has a few twins)
    assert set(shares[0]) & set(shares[1])  # 4 x 1,500 of 2,000: participants overlap
    assert shares[0] != shares[1]
    again = example.partition(data, 0, 4, per_participant=1500)
    assert digits(again) == shares[0]  # deterministic for a seed
    with pytest.raises(ValueError, match="digits-per-participant 2001 not in"):
        example.partition(data, 0, 4, per_participant=2001)


def test_both_client_apps_share_one_set_of_functions(example):
    from mnist_seccl import client_app

    run_config = {"pool-size": 400, "test-size": 100, "data-source": "idx"}
    context = Context(
        run_id=new_run_id(),
        node_id=1,
        node_config={"partition-id": 0, "num-partitions": 4},
        state=RecordDict(),
        run_config=run_config,
    )
    train, evaluate = client_app.client_functions(context)
    assert client_app.client_functions(context) == (train, evaluate)
    metrics = evaluate(example.model_arrays(example.initial_model()))
    assert metrics["num-examples"] == 20  # 20 % of 100 digits
    assert 0.0 <= metrics["macro-f1"] <= 1.0  # what SecCL's mod scores peers by


@pytest.mark.slow
def test_quick_reproduction_writes_every_output(example, tmp_path):
    import reproduce

    results = reproduce.main(["--quick", "--out", str(tmp_path)])
    assert len(results) == 16
    for name in ("fig4", "fig5", "baselines"):
        rows = _read(tmp_path / f"{name}.csv")
        assert rows, name
        ran = [float(r["test_accuracy"]) for r in rows if not r["note"].startswith("n/a")]
        assert ran and all(0.0 <= a <= 1.0 for a in ran), name
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
        text = (tmp_path / f"{name}.md").read_text()
        assert "Data: MNIST test set (10k) split: 600 digits for participants" in text
    rows = _read(tmp_path / "baselines.csv")
    bulyan = [r for r in rows if r["strategy"] == "Bulyan" and r["epsilon"] == "0.2"]
    assert [r["note"] for r in bulyan] == ["n/a: Bulyan needs n >= 4f+3; n=5, f=1"]
    assert math.isnan(float(bulyan[0]["test_accuracy"]))
    assert "| Bulyan | " in (tmp_path / "baselines.md").read_text()
    assert "(--quick)" in (tmp_path / "timing.md").read_text()

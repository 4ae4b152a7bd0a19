"""The SecCL-vs-FedAvg benchmark runs and reports consistent figures (``--quick``)."""

import importlib.util
from pathlib import Path

import pytest

from .conftest import skip_or_fail

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "seccl_vs_fedavg.py"


@pytest.mark.slow
def test_quick_benchmark_reports_phases_and_overhead(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("seccl_vs_fedavg", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "rows.csv"
    (row,) = bench.main(["--quick", "--chain", "embedded", "--out", str(out)])
    assert row["clients"] == 5 and row["chain"] == "embedded"
    phases = sum(row[f"seccl_{p}_s"] for p in bench.PHASES)
    assert row["seccl_s_per_round"] == pytest.approx(phases)
    assert 0 < row["overhead_s"] < row["seccl_s_per_round"]
    assert 0 < row["overhead_pct"] < 100
    assert row["ratio"] == pytest.approx(row["seccl_s_per_round"] / row["fedavg_s_per_round"])
    assert row["gas_per_round"] > 0
    assert out.read_text().startswith("model,chain,clients")
    assert "Target chain+hash+sign < 5%" in capsys.readouterr().out


@pytest.mark.slow
def test_mnist_workload_runs_the_example_app_with_a_share_per_client(capsys):
    spec = importlib.util.spec_from_file_location("seccl_vs_fedavg", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    try:
        bench.mnist_modules()[1].resolve_data_dir()
    except FileNotFoundError as exc:
        skip_or_fail(f"MNIST IDX files not here: {exc}")
    argv = ["--quick", "--chain", "embedded", "--task", "mnist", "--digits-per-client", "300"]
    (row,) = bench.main(argv)
    assert row["model"] == "mnist 11k/2ep/300pc"
    assert 0 < row["overhead_pct"] < 100 and row["seccl_score_fn_s"] > 0
    out = capsys.readouterr().out
    assert "each client draws 300 of the participants' digits" in out
    with pytest.raises(ValueError, match="mnist task only"):
        bench.Workload("digits", per_client=10)


def _load(name: str):
    path = SCRIPT.parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scale_appends_its_rows_under_the_shared_header(tmp_path):
    scale = _load("scale")
    assert scale.committee_of("full", 20) == (19, 0)  # the paper's protocol, run as k = 0
    assert scale.committee_of("19", 20) == (19, 0)
    assert scale.committee_of("5", 20) == (5, 5)
    path = tmp_path / "scale.csv"
    header = ",".join(scale.HEADER)
    assert header == (
        "n,k,rule,ratio,seccl_s_per_round,fedavg_s_per_round,peak_rss_mb,max_tx_gas,"
        "gas_per_round,source"
    )
    path.write_text(header + "\n100,5,borda,,,,,9000000,80000000,gas\n")
    row = dict.fromkeys(scale.HEADER, "") | {"n": 20, "k": 5, "ratio": "1.2", "source": "time"}
    scale.append_rows([row], path)
    lines = path.read_text().splitlines()
    assert lines == [header, "100,5,borda,,,,,9000000,80000000,gas", "20,5,,1.2,,,,,,time"]


@pytest.mark.slow
def test_cross_evaluation_cost_compares_every_path_on_the_same_scores(capsys):
    cost = _load("cross_eval_cost")
    try:
        cost.mnist()[1].resolve_data_dir()
    except FileNotFoundError as exc:
        skip_or_fail(f"MNIST IDX files not here: {exc}")
    rows = cost.main(["--clients", "3", "--per-client", "0", "--repeats", "1"])
    assert [r["method"] for r in rows] == ["before", "handler", "batched", "batched-cl", "vmap-cl"]
    assert rows[0]["ratio_to_before"] == 1.0 and all(r["ms_per_peer"] > 0 for r in rows)
    assert "differs from before" not in capsys.readouterr().out

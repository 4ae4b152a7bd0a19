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

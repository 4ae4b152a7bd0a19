"""The SecCL-vs-FedAvg benchmark runs and reports consistent figures (``--quick``)."""

import importlib.util
from pathlib import Path

import pytest

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

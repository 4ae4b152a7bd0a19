"""SecCL through Flower's simulation engine (Ray actors) and against a real node (anvil)."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from flwr.app import ArrayRecord

from seccl_flwr.apps import digits
from seccl_flwr.cli import main
from seccl_flwr.client_checks import pinned_run_config
from seccl_flwr.inprocess import InProcessGrid
from seccl_flwr.protocol.eip712 import Kind
from seccl_flwr.strategy import SecCL


@pytest.mark.slow
def test_cli_simulate_with_flowers_simulation_engine(tmp_path, capsys):
    """ClientApps run in Ray actors and read the embedded chain over loopback JSON-RPC."""
    out = tmp_path / "run"
    code = main(
        ["simulate", "--participants", "3", "--rounds", "3", "--out", str(out), "--seed", "1"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "round 3/3: 3 updates, 2 candidates" in printed  # ceil(0.4 * 3) = 2
    assert "Data: scikit-learn digits" in printed
    rows = list(csv.DictReader((out / "rounds.csv").open()))
    assert [int(r["round"]) for r in rows] == [1, 2, 3]
    assert all(int(r["dropped"]) == 0 and int(r["gas"]) > 0 for r in rows)
    assert float(rows[-1]["test_accuracy"]) > float(rows[0]["test_accuracy"])
    assert (out / "rounds.png").stat().st_size > 10_000


@pytest.mark.slow
def test_the_demo_audits_itself_and_prints_no_engine_noise(tmp_path):
    """The README's demo (Ray engine, --audit) with ResourceWarnings switched on everywhere.

    Python hides ResourceWarnings by default; PYTHONWARNINGS shows them in this
    process and in every Ray worker, so a leak of Ray's or ours would print here.
    """
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONWARNINGS": "default::ResourceWarning",
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    argv = ["simulate", "--participants", "3", "--rounds", "2", "--audit", "--no-plot"]
    done = subprocess.run(
        [sys.executable, "-m", "seccl_flwr.cli", *argv, "--out", str(tmp_path / "run")],
        cwd=tmp_path,  # Ray puts the driver's working directory on its workers' path
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "audit passed: the run, every message, election and global model check out" in output
    for noise in ("ResourceWarning", "FutureWarning", "DEPRECATED FEATURE", "Traceback"):
        assert noise not in output, output


@pytest.mark.anvil
@pytest.mark.parametrize("gas_limit", [None, 12_000_000], ids=["estimated-gas", "fixed-gas"])
def test_seccl_round_trip_against_anvil(anvil_url, gas_limit):
    """Server and clients talk to anvil; every anchor is on the real node."""
    run_config = {"seccl-key-seed": 5, "seccl-chain-url": anvil_url, "seed": 0, "lr": 0.1}
    run_config.update(pinned_run_config(0.5))
    grid = InProcessGrid(digits.app, 4, run_config=run_config)
    strategy = SecCL(
        chain=anvil_url,
        candidate_fraction=0.5,
        run_label=f"anvil-e2e-{gas_limit}",
        gas_limit=gas_limit,
    )
    result = strategy.start(grid, ArrayRecord(digits.initial_model().state_dict()), num_rounds=2)
    csc = strategy.csc
    assert result.chain_id == 31337  # anvil's default chain id
    assert csc.last_completed_round() == 2
    for record in result.rounds:
        assert record.dropped == {} and record.rejections == []
        assert record.candidates == csc.candidates_of(record.round)
        assert len(record.candidates) == 2
        owner = csc.owner()
        assert csc.anchor_of(record.round, Kind.GLOBAL_MODEL, owner) != b"\0" * 32
        sent = [
            csc.w3.eth.get_transaction(tx)["gas"]
            for hashes in record.transactions.values()
            for tx in hashes
        ]
        if gas_limit is None:
            assert len(set(sent)) > 1  # estimated per transaction
        else:
            assert sent and set(sent) == {gas_limit}

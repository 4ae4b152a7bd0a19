"""The CLI's errors: one line on stderr naming the input and the fix, never a traceback.

A bad argument fails as it is parsed (exit code 2, as argparse's), before anything
starts or is written; a chain that does not answer is found by a probe before a
simulation starts (exit 2); an error of the package raised while a simulation runs
ends it with exit 1; ``audit`` keeps its exit codes (2: cannot read its inputs).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from seccl_flwr.chain.rpc_server import free_loopback_url
from seccl_flwr.cli import main
from seccl_flwr.errors import NotEnoughNodesError
from seccl_flwr.strategy import SecCL

ADDRESS = "0x" + "11" * 20


def error_line(capsys) -> str:
    """Return the only line on stderr, failing if there is none, several or a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("--candidate-fraction", "2", "must lie in (0, 1], got 2"),
        ("--candidate-fraction", "0", "must lie in (0, 1], got 0"),
        ("--share-fraction", "0", "must lie in (0, 1], got 0"),
        ("--share-fraction", "1.5", "must lie in (0, 1], got 1.5"),
        ("--participants", "1", "must be at least 2, got 1"),
        ("--participants", "five", "'five' is not an integer"),
        ("--rounds", "0", "must be at least 1, got 0"),
        ("--attackers", "1.0", "must lie in [0, 1), got 1.0"),
        ("--attack-start", "0", "must be at least 1, got 0"),
        ("--flip-fraction", "0", "must lie in (0, 1], got 0"),
        ("--flip-fraction", "1.2", "must lie in (0, 1], got 1.2"),
        ("--gas-limit", "0", "must be at least 1, got 0"),
        ("--seed", "-1", "must be at least 0, got -1"),
        ("--lr", "nan", "must be greater than 0, got nan"),
        ("--local-epochs", "0", "must be at least 1, got 0"),
        ("--timeout", "-5", "must be greater than 0, got -5"),
        ("--chain", "127.0.0.1:8545", "is neither 'embedded' nor a JSON-RPC URL"),
        ("--chain", "http://127.0.0.1:99999", "is neither 'embedded' nor a JSON-RPC URL"),
        ("--attack", "flip", "invalid choice: 'flip'"),
        ("--score-metric", "loss", "unknown score metric 'loss'; choose from macro-f1,"),
        ("--election-rule", "copeland", "copeland"),
    ],
)
def test_a_bad_simulate_argument_is_one_line_naming_it_and_nothing_starts(
    option, value, says, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = ["simulate", "--engine", "inprocess", "--out", str(out), option, value]
    assert main(argv) == 2
    line = error_line(capsys)
    assert line.startswith("seccl-flwr simulate: error: ")
    assert f"argument {option}: " in line
    assert says in line
    assert not out.exists()  # rejected before anything was written


@pytest.mark.parametrize("option", ["--candidate-fraction", "--share-fraction", "--chain"])
def test_the_fix_is_named_with_the_error(option, capsys):
    assert main(["simulate", option, "7"]) == 2
    assert "e.g." in error_line(capsys)


def test_an_unreachable_chain_is_found_before_the_simulation_starts(tmp_path, capsys):
    url = free_loopback_url()  # nothing listens there
    out = tmp_path / "run"
    assert main(["simulate", "--chain", url, "--out", str(out)]) == 2  # ray engine
    line = error_line(capsys)
    assert line.startswith("seccl-flwr simulate: error: ChainUnreachableError: ")
    assert f"--chain {url}: no chain node answers" in line
    assert "start the chain node" in line and "fix --chain" in line
    assert not out.exists()


def test_the_console_script_prints_one_line_for_an_unreachable_chain(tmp_path):
    script = Path(sys.executable).with_name("seccl-flwr")
    if not script.exists():
        pytest.skip("the seccl-flwr console script is not installed next to this Python")
    url = free_loopback_url()
    done = subprocess.run(
        [str(script), "simulate", "--chain", url, "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"seccl-flwr simulate: error: ChainUnreachableError: --chain {url}: no chain node "
        "answers (Connection refused); start the chain node (e.g. anvil) or fix --chain"
    ]


def test_an_unwritable_out_directory_is_named_before_the_run(tmp_path, capsys):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    assert main(["simulate", "--engine", "inprocess", "--out", str(not_a_directory)]) == 2
    line = error_line(capsys)
    assert f"--out {not_a_directory}: cannot create the directory" in line
    assert "give a writable directory" in line


def _stop_with_too_few_nodes(self, *args, **kwargs):
    raise NotEnoughNodesError("train: 1 valid update(s), fewer than min_train_nodes=2")


def test_an_error_of_the_package_during_an_in_process_run_is_one_line(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(SecCL, "start", _stop_with_too_few_nodes)
    argv = ["simulate", "--engine", "inprocess", "--participants", "2", "--rounds", "1"]
    assert main([*argv, "--out", str(tmp_path)]) == 1
    line = error_line(capsys)
    assert line == (
        "seccl-flwr simulate: error: NotEnoughNodesError: train: 1 valid update(s), fewer "
        "than min_train_nodes=2; see the log above; a longer --timeout helps slow nodes"
    )


@pytest.mark.slow
def test_an_error_raised_in_flowers_server_app_thread_reaches_the_cli_as_its_type(
    tmp_path, capsys, monkeypatch
):
    """``run_simulation`` re-raises the ServerApp's exception (Ray engine), so it is one line."""
    monkeypatch.setattr(SecCL, "start", _stop_with_too_few_nodes)
    argv = ["simulate", "--participants", "2", "--rounds", "1", "--out", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    ours = [line for line in err.splitlines() if line.startswith("seccl-flwr")]
    assert ours == [
        "seccl-flwr simulate: error: NotEnoughNodesError: train: 1 valid update(s), fewer "
        "than min_train_nodes=2; see the log above; a longer --timeout helps slow nodes"
    ]


@pytest.mark.parametrize(
    "replace, says",
    [
        ({"--chain": "embedded"}, "argument --chain: an embedded chain ends with the process"),
        ({"--chain": "ftp://127.0.0.1"}, "argument --chain: 'ftp://127.0.0.1' is not a JSON-RPC"),
        ({"--contract": "0xabc"}, "argument --contract: '0xabc' is not an address"),
        ({"--store": "missing"}, "is not a directory; give the run's message store"),
    ],
)
def test_a_bad_audit_argument_is_one_line_and_exit_code_2(replace, says, tmp_path, capsys):
    options = {"--chain": "http://127.0.0.1:8545", "--contract": ADDRESS, "--store": str(tmp_path)}
    options.update(replace)
    if options["--store"] == "missing":
        options["--store"] = str(tmp_path / "missing")
    assert main(["audit", *(x for pair in options.items() for x in pair)]) == 2
    line = error_line(capsys)
    assert line.startswith("seccl-flwr audit: error: ")
    assert says in line


def test_audit_of_an_unreachable_chain_names_it_and_exits_2(tmp_path, capsys):
    url = free_loopback_url()
    assert main(["audit", "--chain", url, "--contract", ADDRESS, "--store", str(tmp_path)]) == 2
    line = error_line(capsys)
    assert line.startswith("seccl-flwr audit: error: cannot read the chain: ")
    assert f"--chain {url}: no chain node answers" in line and "fix --chain" in line


def test_a_missing_command_or_option_is_one_line(capsys):
    assert main([]) == 2
    assert "the following arguments are required: command" in error_line(capsys)
    assert main(["audit", "--contract", ADDRESS]) == 2
    assert "the following arguments are required: --chain, --store" in error_line(capsys)

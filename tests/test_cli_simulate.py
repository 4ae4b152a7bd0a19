"""``seccl-flwr simulate`` with attack options (in-process engine, embedded chain)."""

import csv

import pytest

from seccl_flwr.cli import main
from seccl_flwr.inprocess import InProcessGrid


@pytest.mark.slow
def test_simulate_with_colluding_label_flippers_counts_elected_attackers(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["simulate", "--engine", "inprocess", "--participants", "5", "--rounds", "2"]
    argv += ["--attack", "label-flip", "--attackers", "0.4", "--collude", "--attack-start", "2"]
    assert main([*argv, "--out", str(out), "--no-plot"]) == 0
    printed = capsys.readouterr().out
    assert " att " in printed  # the table counts elected attackers
    with open(out / "rounds.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["round"]) for r in rows] == [1, 2]
    assert all(0 <= int(r["attackers_elected"]) <= 2 for r in rows)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--attackers", "1.0"], "--attackers: must lie in [0, 1)"),
        (["--attack-start", "0"], "--attack-start: must be at least 1"),
        (["--gas-limit", "0"], "--gas-limit: must be at least 1"),
    ],
)
def test_simulate_names_bad_options(extra, message, tmp_path, capsys):
    argv = ["simulate", "--engine", "inprocess", "--attack", "scale", *extra]
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_a_stealthy_flip_reaches_the_attackers_run_config():
    """``--flip-fraction`` becomes the run config's ``attack-flip-fraction``, which
    :func:`seccl_flwr.attacks.attack_from_config` reads."""
    from argparse import Namespace

    from seccl_flwr.attacks import attack_from_config
    from seccl_flwr.cli import _attack_config

    args = Namespace(
        attack="label-flip", attackers=0.4, attack_start=2, flip_fraction=0.4, collude=True
    )
    config = _attack_config(args)
    assert config["attack-flip-fraction"] == 0.4
    assert attack_from_config(config, 0, 5).flip_fraction == 0.4


def test_simulate_rejects_an_unknown_attack(capsys):
    assert main(["simulate", "--attack", "flip"]) == 2
    assert "invalid choice: 'flip'" in capsys.readouterr().err


def test_simulate_audit_audits_the_run_before_the_embedded_chain_ends(
    tmp_path, capsys, monkeypatch
):
    # a median-rank run whose clients score by the Brier score: both reach the run
    configs = []
    grid_init = InProcessGrid.__init__

    def spy(self, client_app, num_nodes, run_config=None, **kwargs):
        configs.append(run_config)
        grid_init(self, client_app, num_nodes, run_config, **kwargs)

    monkeypatch.setattr(InProcessGrid, "__init__", spy)
    argv = ["simulate", "--engine", "inprocess", "--participants", "3", "--rounds", "2"]
    argv += ["--election-rule", "rank-median", "--score-metric", "brier"]
    assert main([*argv, "--audit", "--out", str(tmp_path), "--no-plot"]) == 0
    # what the clients read: the metric the mod scores by, the rule they pin
    assert configs[0]["seccl-score-metric"] == "brier"
    assert configs[0]["seccl-election-rule"] == "rank-median"
    printed = capsys.readouterr().out
    contract = next(line for line in printed.splitlines() if line.startswith("SecCL on chain"))
    address = contract.rsplit(" ", 1)[1]
    assert f"audit of contract {address}" in printed
    # the simulation's own roster and parameters are pinned, and they match
    assert "Election rule: rank-median; peers scored by brier" in printed
    assert "election rule = 2 (rank-median) (pinned 2 (rank-median): matches)" in printed
    assert "(pinned 3 members: matches)" in printed
    assert "(pinned λ 0.4 -> M = 2: matches)" in printed
    assert "audit passed: the run, every message, election and global model check out" in printed
    assert "cannot be audited" not in printed

"""SecCL logs like Flower's strategies: per round, a final summary, how to audit; λ warnings."""

import logging

import pytest

from seccl_flwr.run_setup import election_size_warning
from seccl_flwr.strategy import SecCLResult

from .strategy_helpers import run_digits


def test_rounds_and_final_results_are_logged_as_flower_strategies_do(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="flwr"):  # the CLI tests set flwr to WARNING
        result, _, _ = run_digits(num_nodes=3, num_rounds=2, store=tmp_path / "store")
    lines = [r.getMessage() for r in caplog.records]
    text = "\n".join(lines)
    for round_ in result.rounds:
        assert (
            f"SecCL round {round_.round}: 3 updates anchored, 3 ballots on chain, "
            f"candidates {round_.candidates}, gas {sum(round_.gas.values()):,} (anchor "
        ) in text
    assert lines.count("configure_train: Sampled 3 nodes (out of 3)") == 2
    assert lines.count("aggregate_train: 3 updates verified, 0 dropped") == 2
    assert lines.count("cross_evaluate: 3 ballots verified, 0 dropped") == 2
    assert lines.count("elect: 3 ballots on chain (quorum 2), vote closed") == 2
    assert lines.count("aggregate_evaluate: 3 evaluations verified, 0 dropped") == 2
    train = result.train_metrics_clientapp[2]
    assert f"\t└──> Aggregated MetricRecord: {train}" in lines
    assert f"\t└──> Aggregated MetricRecord: {result.evaluate_metrics_clientapp[2]}" in lines
    # the summary: Flower's "Final results", then the contract, the candidates and the gas
    final = lines.index("Final results:")
    summary = "\n".join(lines[final:])
    assert "Aggregated ClientApp-side Evaluate Metrics:" in summary
    assert f"Contract {result.contract} on chain {result.chain_id} (embedded)" in summary
    total = sum(sum(r.gas.values()) for r in result.rounds)
    assert f"Gas per round (total {total:,}):" in summary
    assert "Audit: the embedded chain ends with this process" in summary


def test_the_audit_hint_is_the_exact_command_or_why_there_is_none():
    result = SecCLResult(chain="http://127.0.0.1:8545", contract="0xC0", store="runs/my run")
    assert result.audit_hint() == (
        "seccl-flwr audit --chain http://127.0.0.1:8545 --contract 0xC0 --store 'runs/my run'"
    )
    assert "published no messages" in SecCLResult(chain="http://x", contract="0xC0").audit_hint()


@pytest.mark.parametrize(
    ("m", "n", "expected"),
    [
        (1, 2, "M = ceil(λn) = 1 of n = 2 participants: each round merges one"),
        (1, 10, "choose λ > 0.1 for M >= 2"),
        (5, 5, "M = ceil(λn) = 5 of n = 5 participants: every update is elected"),
        (2, 2, "with 2 participants M = 1 is the only other choice"),
        (2, 5, None),
        (4, 5, None),
    ],
)
def test_election_size_warning(m, n, expected):
    warning = election_size_warning(m, n)
    assert warning is None if expected is None else expected in warning


def test_a_run_electing_one_of_two_warns_in_the_log(caplog):
    with caplog.at_level(logging.WARNING):
        run_digits(num_nodes=2, num_rounds=1, candidate_fraction=0.2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("SecCL: M = ceil(λn) = 1 of n = 2 participants" in w for w in warnings)

"""Committee capture probabilities (seccl_flwr.protocol.committee_risk).

The analytic values are checked three ways: against a brute-force enumeration of
every arrangement of the colluders on the committee order (small rounds), against a
Monte Carlo over the real assignment (protocol.committee.assignments with random
seeds), and against the all-or-nothing threshold of full cross-evaluation.
"""

import itertools
from math import comb
from pathlib import Path

import pytest

from seccl_flwr.protocol import committee_risk as risk
from seccl_flwr.protocol.committee import effective_size


def brute_force(m: int, f: int, k: int, kinds: tuple[str, ...]) -> float:
    """P(some update captured) by enumerating the colluders' slot sets."""
    k_eff = effective_size(k, m)
    lift, push = risk.thresholds(k_eff)
    captured = 0
    for slots in itertools.combinations(range(m), f):
        colluding = set(slots)
        for u in range(m):
            c = sum((u - j) % m in colluding for j in range(1, k_eff + 1))
            if (u in colluding and "lift" in kinds and c >= lift) or (
                u not in colluding and "push" in kinds and c >= push
            ):
                captured += 1
                break
    return captured / comb(m, f)


def test_thresholds_are_those_of_the_lower_median():
    assert risk.thresholds(5) == (3, 3)
    assert risk.thresholds(10) == (6, 5)
    assert risk.thresholds(19) == (10, 10)
    assert risk.thresholds(1) == (1, 1)


def test_update_capture_is_hypergeometric():
    # n = 20, k = 5: a colluding update has 7 colluders among the other 19 (f = 8)
    expected = sum(comb(7, x) * comb(12, 5 - x) for x in (3, 4, 5)) / comb(19, 5)
    assert risk.update_capture(20, 8, 5, "lift") == pytest.approx(expected)
    expected = sum(comb(8, x) * comb(11, 5 - x) for x in (3, 4, 5)) / comb(19, 5)
    assert risk.update_capture(20, 8, 5, "push") == pytest.approx(expected)
    assert risk.update_capture(20, 0, 5, "lift") == 0.0
    assert risk.expected_lifted(20, 8, 5) == pytest.approx(
        8 * risk.update_capture(20, 8, 5, "lift")
    )
    with pytest.raises(ValueError, match="kind"):
        risk.update_capture(20, 8, 5, "sideways")


@pytest.mark.parametrize(
    ("m", "f", "k"),
    [(8, 3, 3), (9, 4, 4), (10, 3, 5), (11, 5, 2), (12, 6, 5), (7, 7, 3), (7, 0, 3)],
)
@pytest.mark.parametrize("kinds", [risk.KINDS, ("lift",), ("push",)])
def test_round_capture_counts_every_arrangement(m, f, k, kinds):
    assert risk.round_capture(m, f, k, kinds) == pytest.approx(
        brute_force(m, f, k, kinds), abs=1e-12
    )


@pytest.mark.parametrize("n", [20, 50, 100])
def test_full_cross_evaluation_is_all_or_nothing(n):
    """k = n - 1: colluders lift each other exactly when f - 1 is more than half of n - 1."""
    for f in range(n + 1):
        lifted = risk.round_capture(n, f, 0, ("lift",))
        assert lifted == float(f - 1 >= (n - 1) // 2 + 1)
        assert risk.update_capture(n, f, n - 1, "lift") == lifted
        assert risk.update_capture(n, f, 0, "lift") == lifted


def test_large_committees_below_full_need_the_monte_carlo():
    with pytest.raises(ValueError, match="simulate"):
        risk.round_capture(100, 30, risk.MAX_EXACT_ROUND_SIZE + 1)


@pytest.mark.parametrize("k", [5, 10])
def test_analytic_matches_a_monte_carlo_over_the_real_assignment(k):
    """The committee of :func:`assignments` is what the hypergeometric model assumes.

    600 rounds at n = 20: per update within 4.5 standard errors (over rounds), per
    round within 4.5 binomial standard errors.
    """
    colluders = [2, 4, 6, 8, 9]
    simulated = risk.simulate(20, k, colluders, trials=600, seed=k)
    any_round = risk.round_capture_all(20, k, colluders)
    lift_round = risk.round_capture_all(20, k, colluders, ("lift",))
    for s in simulated:
        for kind, value, se in (
            ("lift", s.lift_update, s.lift_update_se),
            ("push", s.push_update, s.push_update_se),
        ):
            p = risk.update_capture(20, s.f, k, kind)
            assert abs(value - p) <= 4.5 * se + 1e-3, (k, s.f, kind, value, p)
        for value, p in ((s.round_any, any_round[s.f]), (s.round_lift, lift_round[s.f])):
            se = (p * (1 - p) / s.trials) ** 0.5
            assert abs(value - p) <= 4.5 * se + 5e-3, (k, s.f, value, p)
        assert s.lifted == pytest.approx(s.f * s.lift_update)  # expected_lifted's estimate


def test_the_fast_harness_scores_exactly_the_assigned_peers(monkeypatch):
    """examples/mnist's off-chain harness: a committee ballot covers the assignment only,
    with the scores full cross-evaluation gives those peers; k = 0 assigns nothing."""
    import torch
    from eth_utils import keccak

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples" / "mnist"))
    from mnist_seccl.offchain import cross_scores, round_assignment
    from mnist_seccl.task import MnistNet

    from seccl_flwr.protocol.committee import assignments
    from seccl_flwr.torch_task import model_arrays

    authors = [f"0x{i + 1:040X}" for i in range(7)]
    authors = list(assignments(authors, None, 0))  # checksummed
    torch.manual_seed(0)
    models = {a: model_arrays(MnistNet()) for a in authors}
    validation = [(a, torch.randn(12, 1, 28, 28), torch.randint(0, 10, (12,))) for a in authors]
    digests = {a: keccak(text=a) for a in authors}
    assert round_assignment(3, 1, digests, 0) is None
    assigned = round_assignment(3, 1, digests, 3)
    assert assigned == round_assignment(3, 1, digests, 3) != round_assignment(3, 2, digests, 3)
    full = cross_scores(models, validation)
    partial = cross_scores(models, validation, assigned)
    for evaluator, peers in assigned.items():
        assert sorted(partial[evaluator]) == sorted(peers)
        assert partial[evaluator] == {p: full[evaluator][p] for p in peers}
    assert all(sorted(full[e]) == sorted(set(authors) - {e}) for e in authors)


def test_committee_size_for_bounds_the_lifted_colluders():
    # n = 20, 8 colluders, 10 rounds, at most 1 % expected lifts: k = 14 (13 is not enough)
    k = risk.committee_size_for(20, 8, 0.01, rounds=10)
    assert k == 14
    assert 10 * risk.expected_lifted(20, 8, k) <= 0.01 < 10 * risk.expected_lifted(20, 8, k - 1)
    assert risk.committee_size_for(20, 2, 0.0) == 2  # one other colluder never holds 2 of 2 seats
    assert risk.committee_size_for(20, 11, 0.5) is None  # 10 of 19 others: a majority of all
    # even sizes beat the next odd one under the lower median
    assert risk.expected_lifted(20, 8, 10) < risk.expected_lifted(20, 8, 11)


def test_the_collusion_sweep_keeps_committee_runs_apart(monkeypatch, tmp_path):
    """Committee runs go to committees.csv (collusion.csv's columns plus ``committee``);
    a finished cell of either file is not run again, and collusion.csv keeps its columns."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples" / "mnist"))
    import collusion

    full = collusion.Cell("median", "collude", 0.4, 0)
    small = collusion.Cell("median", "collude", 0.4, 0, committee=5)
    assert full.key() != small.key()
    row = dict.fromkeys(collusion.FIELDS, "0")
    row |= {"rule": "median", "attack": "collude", "epsilon": "0.4", "split": "iid"}
    row |= {"mode": "off-chain", "error_feedback": "", "score_metric": ""}
    collusion.append_rows(tmp_path / collusion.CSV_NAME, [row])
    assert collusion.done_keys(tmp_path / collusion.CSV_NAME) == {full.key()}
    collusion.append_rows(tmp_path / collusion.COMMITTEE_CSV, [{**row, "committee": 5}])
    assert collusion.done_keys(tmp_path / collusion.CSV_NAME) == {full.key(), small.key()}
    header = (tmp_path / collusion.CSV_NAME).read_text().splitlines()[0]
    assert header == ",".join(collusion.FIELDS)
    grid = collusion.grid("committees")
    assert len(grid) == 30 and {c.committee for c in grid} == {5, 10}
    assert not any(c.committee for c in collusion.grid("all"))

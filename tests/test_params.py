"""The run parameters a run opens with: M, the ballot quorum, the share fraction in ppm."""

import pytest

from seccl_flwr.errors import ConfigurationError
from seccl_flwr.protocol.params import (
    PPM,
    RunParams,
    checked_quorum,
    default_quorum,
    param_mismatches,
    run_params,
    share_fraction_ppm,
)


@pytest.mark.parametrize("n, majority", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (256, 129)])
def test_the_default_quorum_is_a_majority_of_the_roster(n, majority):
    assert default_quorum(n) == majority
    assert 2 * default_quorum(n) > n  # two disjoint quorums cannot exist
    assert checked_quorum(None, n) == majority


def test_an_explicit_quorum_is_kept_if_it_fits_the_roster():
    assert checked_quorum(1, 5) == 1 and checked_quorum(5, 5) == 5
    for bad in (0, -1, True, 2.0, "3"):
        with pytest.raises(ConfigurationError, match="quorum must be a positive int or None"):
            checked_quorum(bad, 5)
    with pytest.raises(ConfigurationError, match="quorum=6 exceeds the 5 participants"):
        checked_quorum(6, 5)


def test_the_share_fraction_is_stored_in_parts_per_million():
    assert share_fraction_ppm(0.1) == 100_000 and share_fraction_ppm(1.0) == PPM
    assert share_fraction_ppm(1e-6) == 1
    for bad in (0.0, -0.1, 1.5, 1e-7):
        with pytest.raises(ConfigurationError, match="share_fraction must lie in"):
            share_fraction_ppm(bad)


def test_run_params_fix_every_parameter_of_a_run():
    params = run_params(10, candidate_fraction=0.4, share_fraction=0.25, per_tensor=True)
    assert params == RunParams(
        num_candidates=4, quorum=6, share_fraction_ppm=250_000, per_tensor=True, election_rule=0
    )
    assert params.share_fraction == 0.25
    assert RunParams.from_tuple(params.as_tuple()) == params
    assert run_params(10, 0.4, 0.25, False, quorum=2).quorum == 2
    with pytest.raises(ConfigurationError, match="candidate_fraction"):
        run_params(10, 0.0, 0.25, False)


def test_committee_size_is_the_last_params_field_and_pinned_exactly():
    params = RunParams(4, 11, 100_000, False, 0, 5)
    assert params.as_tuple() == (4, 11, 100_000, False, 0, 5)
    assert RunParams.from_tuple(params.as_tuple()) == params
    assert RunParams(4, 11, 100_000, False).committee_size == 0  # full cross-evaluation
    assert param_mismatches(params, 20, committee_size=5) == []
    assert param_mismatches(params, 20) == []  # unpinned: not compared
    assert param_mismatches(params, 20, committee_size=0) == ["committee size 5, but the pin is 0"]
    assert param_mismatches(RunParams(4, 11, 100_000, False), 20, committee_size=6) == [
        "committee size 0, but the pin is 6"
    ]
    assert run_params(20, 0.2, 0.1, False, committee_size=19).committee_size == 19
    for bad in (-1, 20, True, 2.0):
        with pytest.raises(ConfigurationError, match="committee_size"):
            run_params(20, 0.2, 0.1, False, committee_size=bad)

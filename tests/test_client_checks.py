"""The client's checks of the server's conduct, called directly (issue 12).

Each check compares what the chain holds with the client's own configuration or
with what the client itself sent and verified, and raises its named error with the
round and node concerned.
"""

import numpy as np
import pytest
from eth_account import Account
from flwr.app import Context, RecordDict

from seccl_flwr.client_checks import (
    RunPins,
    check_aggregation,
    check_ballot_on_chain,
    check_forwarded_authors,
    check_params,
    check_roster,
    check_update_anchored,
    pinned_run_config,
    run_pins,
)
from seccl_flwr.errors import (
    AggregationMismatchError,
    AggregationUncheckableError,
    BallotMissingError,
    ConfigurationError,
    ParameterMismatchError,
    RosterMismatchError,
    UntrustedContractError,
    UpdateNotAnchoredError,
    WithheldUpdateError,
)
from seccl_flwr.identity import simulation_key
from seccl_flwr.inprocess import new_run_id
from seccl_flwr.protocol.eip712 import RunBinding, run_id_from_label
from seccl_flwr.protocol.params import RunParams, election_rule_of, roster_digest
from seccl_flwr.protocol.signed import next_global_model
from seccl_flwr.protocol.sparse import SparseUpdate
from seccl_flwr.strategy import SecCL

SEED = 5
KEYS = [Account.from_key(simulation_key(SEED, p)) for p in range(4)]
ROSTER = [k.address for k in KEYS]
ME = ROSTER[0]
SYBIL = Account.from_key(b"\x07" * 32).address  # a key the server holds
CONTRACT = "0x" + "ab" * 20
BINDING = RunBinding(chain_id=31337, contract=CONTRACT, run_id=run_id_from_label("checks"))
OWNER = Account.from_key(b"\x09" * 32).address


def context(node_config: dict | None = None, run_config: dict | None = None) -> Context:
    return Context(
        run_id=new_run_id(),
        node_id=1,
        node_config={"partition-id": 0, "num-partitions": 4, **(node_config or {})},
        state=RecordDict(),
        run_config={"seccl-key-seed": SEED, **(run_config or {})},
    )


# ------------------------------------------------------------------- run pins
def test_simulation_pins_are_the_run_keys_and_the_library_defaults():
    pins = run_pins(context())
    assert pins.simulation_roster == frozenset(ROSTER)
    assert pins.roster_digest is None
    assert (pins.candidate_fraction, pins.share_fraction, pins.per_tensor) == (0.2, 0.1, False)
    assert pins.quorum is None


def test_pins_come_from_node_config_before_run_config():
    digest = roster_digest(ROSTER)
    pins = run_pins(
        context(
            node_config={"seccl-roster-digest": "0x" + digest.hex(), "share-fraction": 0.3},
            run_config={
                "share-fraction": 0.5,
                "candidate-fraction": 0.4,
                "per-tensor": True,
                "seccl-quorum": 2,
            },
        )
    )
    assert pins.roster_digest == digest and pins.simulation_roster is None
    assert (pins.candidate_fraction, pins.share_fraction, pins.per_tensor) == (0.4, 0.3, True)
    assert pins.quorum == 2


def test_a_node_with_a_key_file_has_no_simulation_roster(tmp_path):
    assert run_pins(context(node_config={"seccl-key-file": "k"})).simulation_roster is None


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("seccl-roster-digest", "0x1234", "'seccl-roster-digest' must be 32 bytes"),
        ("seccl-roster-digest", "zz" * 32, "'seccl-roster-digest' must be 32 bytes"),
        ("per-tensor", "maybe", "'per-tensor' must be true or false"),
        ("candidate-fraction", "lots", "'candidate-fraction' must be a number"),
        ("seccl-quorum", "half", "'seccl-quorum' must be an integer"),
    ],
)
def test_bad_pins_are_named(key, value, match):
    with pytest.raises(ConfigurationError, match=match):
        run_pins(context(node_config={key: value}))


# --------------------------------------------------------------------- roster
def test_the_run_keys_roster_is_accepted():
    check_roster(run_pins(context()), CONTRACT, ROSTER, roster_digest(ROSTER), ME)


def test_a_sybil_in_the_roster_is_refused():
    roster = [*ROSTER, SYBIL]
    with pytest.raises(RosterMismatchError) as info:
        check_roster(run_pins(context()), CONTRACT, roster, roster_digest(roster), ME)
    assert isinstance(info.value, UntrustedContractError)
    assert f"contract {CONTRACT}: roster members ['{SYBIL}'] are none of the run's 4" in str(
        info.value
    )


def test_a_roster_without_this_node_is_refused():
    roster = ROSTER[1:]
    with pytest.raises(RosterMismatchError, match=f"does not list this node's address {ME}"):
        check_roster(run_pins(context()), CONTRACT, roster, roster_digest(roster), ME)


def test_the_pinned_digest_must_match():
    pins = RunPins(roster_digest=roster_digest(ROSTER))
    check_roster(pins, CONTRACT, ROSTER, roster_digest(ROSTER), ME)
    other = [*ROSTER[:3], SYBIL]  # one member replaced
    with pytest.raises(RosterMismatchError) as info:
        check_roster(pins, CONTRACT, other, roster_digest(other), ME)
    message = str(info.value)
    assert f"rosterDigest 0x{roster_digest(other).hex()} differs from the pinned" in message
    assert roster_digest(ROSTER).hex() in message


def test_a_deployment_that_pins_no_roster_is_refused():
    with pytest.raises(RosterMismatchError, match="pins no roster: set 'seccl-roster-digest'"):
        check_roster(RunPins(), CONTRACT, ROSTER, roster_digest(ROSTER), ME)


# ----------------------------------------------------------------- parameters
HONEST = RunParams(num_candidates=1, quorum=3, share_fraction_ppm=100_000, per_tensor=False)


def test_parameters_of_the_clients_configuration_are_accepted():
    check_params(RunPins(), CONTRACT, HONEST, 4)  # λ 0.2 of 4: M = 1; majority 3
    check_params(RunPins(quorum=4), CONTRACT, RunParams(1, 4, 100_000, False), 4)
    pins = RunPins(candidate_fraction=0.5, share_fraction=0.25, per_tensor=True, quorum=2)
    check_params(pins, CONTRACT, RunParams(2, 2, 250_000, True), 4)


@pytest.mark.parametrize(
    "params, match",
    [
        (RunParams(4, 3, 100_000, False), "M = 4, but λ = 0.2 and n = 4 give M = 1"),
        (RunParams(1, 3, 1_000_000, False), "share fraction 1000000 ppm, but this node"),
        (RunParams(1, 2, 100_000, False), "quorum 2 is below the 3 ballots"),
        (RunParams(1, 3, 100_000, True), "per-tensor True, but this node"),
        (RunParams(1, 3, 100_000, False, 1), "election rule 1"),
    ],
    ids=["lambda-1", "share-1.0", "quorum", "per-tensor", "rule"],
)
def test_parameters_other_than_the_clients_are_refused(params, match):
    with pytest.raises(ParameterMismatchError, match=match) as info:
        check_params(RunPins(), CONTRACT, params, 4)
    assert str(info.value).startswith(f"ParameterMismatchError: contract {CONTRACT}: ")
    assert isinstance(info.value, UntrustedContractError)


def test_a_lower_quorum_is_accepted_only_if_the_client_says_so():
    low = RunParams(1, 1, 100_000, False)
    with pytest.raises(ParameterMismatchError, match="quorum 1 is below the 3"):
        check_params(RunPins(), CONTRACT, low, 4)
    check_params(RunPins(quorum=1), CONTRACT, low, 4)


# --------------------------------------------------------- withheld updates
def test_a_complete_set_passes_with_or_without_the_evaluators_own_update():
    check_forwarded_authors(2, ME, ROSTER, ROSTER)
    check_forwarded_authors(2, ME, ROSTER, ROSTER[1:])


def test_a_withheld_update_is_named():
    with pytest.raises(WithheldUpdateError) as info:
        check_forwarded_authors(2, ME, ROSTER, [ME, ROSTER[2]])
    missing = sorted([ROSTER[1], ROSTER[3]])
    assert str(info.value).startswith(f"WithheldUpdateError: round 2, node {missing[0]}: ")
    assert f"the chain anchored updates of {missing}" in str(info.value)
    assert info.value.round == 2


def test_an_update_the_chain_did_not_anchor_is_named():
    with pytest.raises(WithheldUpdateError) as info:
        check_forwarded_authors(3, ME, ROSTER[:3], ROSTER)
    assert str(info.value).startswith(f"WithheldUpdateError: round 3, node {ROSTER[3]}: ")
    assert "that the chain did not anchor" in str(info.value)


# ------------------------------------------------------ own update and ballot
def test_own_update_must_be_the_anchored_one():
    digest = b"\x11" * 32
    check_update_anchored(4, ME, digest, digest)
    with pytest.raises(UpdateNotAnchoredError) as info:
        check_update_anchored(4, ME, digest, bytes(32))
    assert str(info.value).startswith(f"UpdateNotAnchoredError: round 4, node {ME}: ")
    assert "the chain holds nothing" in str(info.value)
    with pytest.raises(UpdateNotAnchoredError, match="the chain holds 0x2222"):
        check_update_anchored(4, ME, digest, b"\x22" * 32)


def test_own_ballot_must_be_on_chain():
    digest = b"\x33" * 32
    check_ballot_on_chain(2, ME, digest, digest)
    with pytest.raises(BallotMissingError) as info:
        check_ballot_on_chain(2, ME, digest, bytes(32))
    assert str(info.value).startswith(f"BallotMissingError: round 2, node {ME}: my ballot 0x33")


# ---------------------------------------------------------------- aggregation
PREVIOUS = {"w": np.linspace(-1, 1, 12, dtype=np.float32), "b": np.zeros(3, np.float32)}


def sparse(indices, values) -> dict:
    return SparseUpdate(np.array(indices, dtype="<u4"), np.array(values, dtype="<f4")).to_arrays()


UPDATES = {
    ROSTER[0]: sparse([0, 5], [0.5, -0.25]),
    ROSTER[1]: sparse([5, 13], [1.0, 2.0]),
    ROSTER[2]: sparse([1], [3.0]),
}


def anchored_model(round_: int, candidates: list[str], updates=UPDATES) -> bytes:
    """The digest an honest server anchors for the candidates' merge."""
    payloads = [updates[c] for c in candidates]
    return next_global_model(BINDING, round_, OWNER, PREVIOUS, payloads).digest()


def test_the_honest_aggregation_passes():
    candidates = [ROSTER[1], ROSTER[0]]
    check_aggregation(
        BINDING, 1, ME, OWNER, PREVIOUS, candidates, UPDATES, anchored_model(1, candidates)
    )


def test_a_weighted_aggregation_is_named():
    candidates = [ROSTER[1], ROSTER[0]]
    # one candidate counted three times: weighted 3x in the mean
    lie = anchored_model(1, [ROSTER[1], ROSTER[1], ROSTER[1], ROSTER[0]])
    with pytest.raises(AggregationMismatchError) as info:
        check_aggregation(BINDING, 1, ME, OWNER, PREVIOUS, candidates, UPDATES, lie)
    assert str(info.value).startswith(f"AggregationMismatchError: round 1, node {OWNER}: ")
    assert f"elected candidates {candidates}" in str(info.value)


@pytest.mark.parametrize(
    "previous, updates, match",
    [
        (PREVIOUS, {ROSTER[0]: UPDATES[ROSTER[0]]}, f"the updates of \\['{ROSTER[1]}'\\]"),
        (None, UPDATES, "the previous global model"),
    ],
    ids=["missing-update", "missing-previous"],
)
def test_a_client_that_cannot_recompute_says_so(previous, updates, match):
    candidates = [ROSTER[1], ROSTER[0]]
    with pytest.raises(AggregationUncheckableError, match=match) as info:
        check_aggregation(
            BINDING, 2, ME, OWNER, previous, candidates, updates, anchored_model(2, candidates)
        )
    assert str(info.value).startswith(f"AggregationUncheckableError: round 2, node {ME}: ")


def test_a_pinned_quorum_of_zero_means_a_majority_not_any_quorum():
    # the MNIST app's run config says `seccl-quorum = 0` for "a majority"
    with pytest.raises(ParameterMismatchError, match="quorum 1 is below the 3 ballots"):
        check_params(RunPins(quorum=0), CONTRACT, RunParams(1, 1, 100_000, False), 4)
    check_params(RunPins(quorum=0), CONTRACT, RunParams(1, 3, 100_000, False), 4)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"candidate_fraction": 0.5, "share_fraction": 0.3},
        {"per_tensor": True, "quorum": 3, "election_rule": "median"},
    ],
)
def test_a_server_built_from_the_run_config_opens_the_run_its_clients_pin(params):
    """``SecCL.from_run_config`` reads the very keys the clients pin, the election rule
    included: a server given ``seccl-election-rule = "median"`` must not open a Borda run
    its clients then refuse."""
    config = pinned_run_config(**params)
    server = SecCL.from_run_config(config)
    pins = run_pins(
        Context(
            run_id=new_run_id(), node_id=1, node_config={}, state=RecordDict(), run_config=config
        )
    )
    assert server.candidate_fraction == pins.candidate_fraction
    assert server.share_fraction == pins.share_fraction
    assert server.per_tensor == pins.per_tensor
    assert server.election_rule == pins.election_rule
    assert server.election_rule == election_rule_of(params.get("election_rule", "borda"))

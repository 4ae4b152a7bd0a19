"""Withholding lies (issue 12), end to end: who detects each, with which error.

The digits app in-process (tests/strategy_helpers.py). Each lie is one of
:data:`seccl_flwr.attacks.server.SERVER_LIES` or a server subclass written here; the
honest clients catch it with a named error that names round and node, in the round it
happens (the last round included) or at the censored author's next contact.
"""

import re

import pytest
from eth_account import Account
from flwr.app import Context, RecordDict

from seccl_flwr import strategy as strategy_module
from seccl_flwr.attacks import LyingServer
from seccl_flwr.chain.connection import ensure_funded
from seccl_flwr.chain.csc import CandidateSelection
from seccl_flwr.chain.errors import ContractRevertError
from seccl_flwr.chain.rpc_server import LoopbackRPCServer
from seccl_flwr.client import trusted_contract
from seccl_flwr.errors import NotEnoughNodesError, UntrustedContractError
from seccl_flwr.identity import simulation_key
from seccl_flwr.protocol.eip712 import Kind, sign_join
from seccl_flwr.protocol.params import RunParams
from seccl_flwr.run_setup import Registration
from tests.csc_helpers import open_csc
from tests.strategy_helpers import run_digits

ADDRESS = r"0x[0-9a-fA-F]{40}"
SYBIL = Account.from_key(b"\x5b" * 32)  # a key the server holds


def run_lying(lie: str, num_rounds: int = 1, lie_round: int = 1, **kwargs):
    return run_digits(
        LyingServer, num_nodes=4, num_rounds=num_rounds, lie=lie, lie_round=lie_round, **kwargs
    )


def named_nodes(text: str, error: str, round_: int) -> list[str]:
    """The nodes that ``error`` texts in ``text`` name for ``round_``."""
    return re.findall(rf"{error}: round {round_}, node ({ADDRESS})", text)


# ------------------------------------------------ aggregation lies, last round
@pytest.mark.parametrize("lie", ["aggregate-weighted", "replay-old-model", "previous-candidates"])
def test_a_last_round_aggregation_lie_is_caught_in_that_rounds_evaluate(lie):
    result, strategy, _ = run_lying(lie, num_rounds=2, lie_round=2)
    first, last = result.rounds
    assert first.dropped == {}
    # every participant trained and cross-evaluated round 2: each recomputes the model
    assert last.dropped.keys() == {f"evaluate:{a}" for a in last.authors}
    owner = strategy.csc.owner()
    for reason in last.dropped.values():
        assert f"AggregationMismatchError: round 2, node {owner}" in reason
        assert "elected candidates" in reason
    # no evaluation of the forged model reached the chain
    assert all(strategy.csc.anchor_of(2, Kind.EVALUATION, a) == bytes(32) for a in last.authors)


# ------------------------------------------------------- withheld updates
def test_an_evaluator_given_a_partial_set_does_not_vote():
    with pytest.raises(NotEnoughNodesError) as info:  # no ballot on a partial set
        run_lying("withhold-updates")
    message = str(info.value)
    assert "round 1: 0 valid ballots" in message
    # four evaluators each refused, naming an author whose anchored update it lacks
    assert len(named_nodes(message, "WithheldUpdateError", 1)) == 4
    assert "that the cross-evaluation sent to" in message and "lacks" in message


# ---------------------------------------------------------------- no ballots
def test_an_election_without_ballots_is_refused_by_the_contract():
    with pytest.raises(ContractRevertError) as info:
        run_lying("no-ballots")
    assert info.value.error_name == "QuorumNotReached"
    assert info.value.function == "elect"


# -------------------------------------------------------------- censorship
def test_a_censored_author_finds_out_in_the_rounds_evaluate():
    result, strategy, _ = run_lying("censor-update")
    (record,) = result.rounds
    victim = strategy.participants[4]  # the server drops the last update it received
    assert victim not in record.authors and len(record.authors) == 3
    assert strategy.csc.anchor_of(1, Kind.UPDATE, victim) == bytes(32)
    assert list(record.dropped) == [f"evaluate:{victim}"]
    reason = record.dropped[f"evaluate:{victim}"]
    assert f"UpdateNotAnchoredError: round 1, node {victim}: my signed update 0x" in reason
    assert "the chain holds nothing" in reason


def test_a_censored_author_not_asked_to_evaluate_finds_out_at_its_next_train():
    # the server censors the last update it receives each round; no evaluate phase
    result, strategy, _ = run_digits(
        LyingServer,
        num_nodes=4,
        num_rounds=2,
        lie="censor-update",
        fraction_evaluate=0.0,
        quorum=2,
    )
    first, second = result.rounds
    victim = strategy.participants[4]
    assert victim not in first.authors and first.dropped == {}
    reason = second.dropped[f"train:{victim}"]
    assert f"UpdateNotAnchoredError: round 1, node {victim}" in reason
    assert list(second.dropped) == [f"train:{victim}"]  # reported once, by the victim only


# ------------------------------------------------ roster and parameters
def test_a_run_with_other_parameters_is_refused_by_every_client():
    with pytest.raises(NotEnoughNodesError) as info:
        run_lying("wrong-parameters", candidate_fraction=0.4)
    message = str(info.value)
    assert "round 1: 0 valid updates" in message
    assert message.count("ParameterMismatchError") == 4
    assert "M = 4, but λ = 0.4 and n = 4 give M = 2" in message


def test_a_run_with_share_fraction_one_is_refused_by_every_client():
    with pytest.raises(NotEnoughNodesError) as info:
        # the server opens the run dense; the clients pin the share fraction 0.1
        run_digits(
            num_nodes=3, num_rounds=1, share_fraction=1.0, run_config={"share-fraction": 0.1}
        )
    message = str(info.value)
    assert message.count("ParameterMismatchError") == 3
    assert "share fraction 1000000 ppm, but this node is configured with 0.1" in message


def test_a_sybil_in_the_roster_is_refused_by_every_client(monkeypatch):
    honest_register = strategy_module.register_nodes

    def register_with_sybil(grid, run_id, chain_id, *args):
        roster = honest_register(grid, run_id, chain_id, *args)
        sybil = Registration(SYBIL.address, sign_join(SYBIL.key, run_id, chain_id))
        return {**roster, 999: sybil}  # no such node: the server votes with its key

    monkeypatch.setattr(strategy_module, "register_nodes", register_with_sybil)
    with pytest.raises(NotEnoughNodesError) as info:
        run_digits(num_nodes=3, num_rounds=1)
    message = str(info.value)
    assert message.count("RosterMismatchError") == 3
    assert f"roster members ['{SYBIL.address}'] are none of the run's 3 simulation keys" in message


def test_a_client_refuses_a_run_that_is_not_open():
    with LoopbackRPCServer() as server:
        owner = Account.from_key(simulation_key("withholding-owner", 0))
        ensure_funded(server.w3, owner)
        me = Account.from_key(simulation_key(11, 0))
        closed, _ = CandidateSelection.deploy(
            server.w3, owner, bytes(32), RunParams(1, 1, 100_000, False)
        )
        context = Context(
            run_id=1,
            node_id=1,
            node_config={"partition-id": 0, "num-partitions": 1, "seccl-chain-url": server.url},
            state=RecordDict(),
            run_config={"seccl-key-seed": 11},
        )
        with pytest.raises(UntrustedContractError, match="the run is not open"):
            trusted_contract(context, {"contract": closed.address})
        opened, _ = open_csc(server.w3, owner, b"\x01" * 32, [me], 1)
        assert trusted_contract(context, {"contract": opened.address}).address == opened.address

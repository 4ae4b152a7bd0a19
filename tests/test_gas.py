"""The gas model (seccl_flwr.chain.gas): batch sizes under the EIP-7825 cap for every
run the contract accepts, checked against gas measured on eth-tester and, with the
cap enforced, on anvil at n = 256."""

import math

import pytest
from web3 import HTTPProvider, Web3

from seccl_flwr.chain import gas
from seccl_flwr.chain.anvil import AnvilNode, anvil_command
from seccl_flwr.errors import ConfigurationError
from seccl_flwr.protocol.eip712 import Kind
from seccl_flwr.protocol.params import MAX_MEDIAN_PARTICIPANTS, MEDIAN_SCORE, TRUNCATED_BORDA
from tests.conftest import skip_or_fail
from tests.gas_measure import measure_round

CAP = 2**24
LAMBDAS = (0.1, 0.2, 0.4, 0.6, 1.0)


def test_every_run_size_gets_batches_under_the_budget():
    assert gas.TX_GAS_CAP == CAP
    assert gas.DEFAULT_BUDGET < CAP
    for size, cost in [
        (gas.register_batch_size(), gas.register_gas),
        (gas.anchor_batch_size(Kind.UPDATE), lambda b: gas.anchor_gas(b, Kind.UPDATE)),
        (gas.anchor_batch_size(Kind.EVALUATION), lambda b: gas.anchor_gas(b, Kind.EVALUATION)),
    ]:
        assert 1 <= size <= 256
        assert cost(size) <= gas.DEFAULT_BUDGET
        assert size == 256 or cost(size + 1) > gas.DEFAULT_BUDGET
    for n in range(1, 257):
        for m in sorted({1, n, *(math.ceil(lam * n) for lam in LAMBDAS)}):
            for peers in {n - 1, n}:  # an author's ballot, a non-author evaluator's
                size = gas.ballot_batch_size(peers, m)
                assert size >= 1
                assert gas.ballot_batch_gas(size, peers, m) <= gas.DEFAULT_BUDGET
                assert size == 256 or gas.ballot_batch_gas(size + 1, peers, m) > gas.DEFAULT_BUDGET


def test_the_model_grows_with_batch_peers_and_candidates():
    for b in (1, 5, 20):
        assert gas.ballot_batch_gas(b + 1, 99, 40) > gas.ballot_batch_gas(b, 99, 40)
        assert gas.ballot_batch_gas(b, 100, 40) > gas.ballot_batch_gas(b, 99, 40)
        assert gas.ballot_batch_gas(b, 99, 41) > gas.ballot_batch_gas(b, 99, 40)
        assert gas.register_gas(b + 1) > gas.register_gas(b)
        assert gas.anchor_gas(b + 1) > gas.anchor_gas(b)


def test_a_smaller_budget_gives_smaller_batches_or_a_named_error():
    assert gas.ballot_batch_size(255, 256, budget=6_000_000) < gas.ballot_batch_size(255, 256)
    with pytest.raises(ConfigurationError, match="one ballot needs about .* gas, above 100,000"):
        gas.ballot_batch_size(255, 256, budget=100_000)


def test_batches_split_in_order():
    assert gas.batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert gas.batches([], 3) == []
    with pytest.raises(ConfigurationError, match="at least 1"):
        gas.batches([1], 0)


# ---------------------------------------------------------------- anvil, capped
@pytest.fixture(scope="module")
def capped_anvil():
    """anvil with the EIP-7825 transaction gas cap enforced."""
    if anvil_command() is None:
        skip_or_fail("anvil not found; run `npm ci --prefix contracts`")
    with AnvilNode(extra_args=["--enable-tx-gas-limit"]) as node:
        yield Web3(HTTPProvider(node.url, request_kwargs={"timeout": 120}))


@pytest.mark.anvil
@pytest.mark.slow
@pytest.mark.parametrize("fraction", [0.4, 1.0])
def test_full_round_at_256_participants_fits_the_capped_node(capped_anvil, fraction):
    w3 = capped_anvil
    owner = w3.eth.accounts[0]
    n = 256
    m = math.ceil(fraction * n)
    ballot_batch = gas.ballot_batch_size(n - 1, m)
    first = w3.eth.block_number + 1
    result = measure_round(
        w3,
        owner,
        n,
        m,
        register_batch=gas.register_batch_size(),
        anchor_batch=gas.anchor_batch_size(Kind.UPDATE),
        ballot_batches=ballot_batch,
    )
    csc = result.contract
    assert csc.functions.ballotCount(1).call() == n
    assert len(csc.functions.candidatesOf(1).call()) == m
    assert csc.functions.lastCompletedRound().call() == 1

    # every transaction of the run, as the node recorded it: limit and gas used
    limits, used = [], []
    for number in range(first, w3.eth.block_number + 1):
        for tx in w3.eth.get_block(number, full_transactions=True).transactions:
            limits.append(tx["gas"])
            used.append(w3.eth.get_transaction_receipt(tx["hash"]).gasUsed)
    assert len(limits) == 1 + len(result.all_gas())  # the deployment and every batch
    assert max(limits) <= CAP and max(used) < CAP
    for b, k, mm, g in result.ballots:
        assert g <= gas.ballot_batch_gas(b, k, mm)
    print(
        f"\nanvil --enable-tx-gas-limit, n={n}, M={m}: {len(limits)} transactions, "
        f"largest gas limit {max(limits):,}, largest gas used {max(used):,} "
        f"(ballot batch {ballot_batch}: {max(g for *_, g in result.ballots):,}; "
        f"elect {result.elect:,})"
    )


@pytest.mark.anvil
def test_the_capped_node_refuses_a_transaction_above_the_cap(capped_anvil):
    w3 = capped_anvil
    with pytest.raises(Exception, match="(?i)gas"):  # noqa: B017 - the node's own message
        w3.eth.send_transaction(
            {"from": w3.eth.accounts[0], "to": w3.eth.accounts[1], "value": 1, "gas": CAP + 1}
        )


@pytest.mark.anvil
@pytest.mark.slow
def test_median_rule_rounds_fit_the_capped_node_up_to_its_limit(capped_anvil):
    """Gas per round of the median rule at n = 20, 50, 100 and its limit, beside Borda."""
    w3 = capped_anvil
    owner = w3.eth.accounts[0]
    lines = []
    for n in (20, 50, 100, MAX_MEDIAN_PARTICIPANTS):
        m = math.ceil(0.2 * n)
        per_rule = {}
        for rule in (TRUNCATED_BORDA, MEDIAN_SCORE):
            model_m = gas.ballot_model_candidates(n - 1, m, rule)
            batch = gas.ballot_batch_size(n - 1, model_m)
            result = measure_round(
                w3,
                owner,
                n,
                m,
                register_batch=gas.register_batch_size(),
                anchor_batch=gas.anchor_batch_size(Kind.UPDATE),
                ballot_batches=batch,
                election_rule=rule,
            )
            assert len(result.contract.functions.candidatesOf(1).call()) == m
            assert max(result.all_gas()) < CAP
            for b, k, _, used in result.ballots:  # the model bounds the median ballots too
                assert used <= gas.ballot_batch_gas(b, k, model_m)
            round_gas = sum(g for *_, g in result.ballots) + result.elect
            round_gas += sum(g for _, g in result.anchor) + result.global_model
            per_rule[rule] = (round_gas, result.elect, max(g for *_, g in result.ballots))
        lines.append(
            f"n={n} M={m}: round gas Borda {per_rule[0][0]:,} / median {per_rule[1][0]:,}; "
            f"elect {per_rule[0][1]:,} / {per_rule[1][1]:,}; largest ballot batch "
            f"{per_rule[0][2]:,} / {per_rule[1][2]:,}"
        )
    print("\nanvil --enable-tx-gas-limit (updates, ballots, elect, global model):")
    print("\n".join(lines))

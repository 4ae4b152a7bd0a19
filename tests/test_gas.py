"""The gas model (seccl_flwr.chain.gas): batch sizes under the EIP-7825 cap for every
run the contract accepts, checked against gas measured on eth-tester and, with the
cap enforced, on anvil at n = 256."""

import math

import pytest
from web3 import EthereumTesterProvider, HTTPProvider, Web3

from seccl_flwr.chain import gas
from seccl_flwr.chain.anvil import AnvilNode, anvil_command
from seccl_flwr.errors import ConfigurationError
from seccl_flwr.protocol.eip712 import Kind
from seccl_flwr.protocol.params import (
    MAX_MEDIAN_PARTICIPANTS,
    MEDIAN_RANK,
    MEDIAN_SCORE,
    TRUNCATED_BORDA,
)
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
    """Gas per round of the median rules (scores, ranks) at n = 20, 50, 100 and their
    limit, beside Borda."""
    w3 = capped_anvil
    owner = w3.eth.accounts[0]
    lines = []
    for n in (20, 50, 100, MAX_MEDIAN_PARTICIPANTS):
        m = math.ceil(0.2 * n)
        per_rule = {}
        # rank-median stores what the median rule stores, so its election at the limit
        # is the median's: measured at the sizes only
        rules = (TRUNCATED_BORDA, MEDIAN_SCORE, *((MEDIAN_RANK,) if n <= 100 else ()))
        for rule in rules:
            model_m = gas.ballot_model_candidates(n - 1, m, rule)
            batch = gas.ballot_batch_size(n - 1, model_m, election_rule=rule)
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
                assert used <= gas.ballot_batch_gas(b, k, model_m, rule)
            round_gas = sum(g for *_, g in result.ballots) + result.elect
            round_gas += sum(g for _, g in result.anchor) + result.global_model
            per_rule[rule] = (round_gas, result.elect, max(g for *_, g in result.ballots))
        lines.append(
            f"n={n} M={m}: "
            + "; ".join(
                f"rule {r}: round gas {g:,}, elect {e:,}, largest ballot batch {b:,}"
                for r, (g, e, b) in per_rule.items()
            )
        )
    print("\nanvil --enable-tx-gas-limit (updates, ballots, elect, global model):")
    print("\n".join(lines))


# ------------------------------------------------------------------ committees
def test_committee_batches_stay_under_the_ten_million_budget_for_every_run():
    assert gas.COMMITTEE_BUDGET == 10_000_000 < gas.DEFAULT_BUDGET
    for n in (2, 20, 50, 100, 180, 256):
        for k in sorted({1, 5, 10, n // 2, n - 1} - {0}):
            for m in sorted({1, math.ceil(0.2 * n), n}):
                for rule in (TRUNCATED_BORDA, MEDIAN_SCORE, MEDIAN_RANK):
                    size = gas.committee_ballot_batch_size(k, m, rule)
                    cost = gas.committee_ballot_batch_gas(size, k, m, rule)
                    assert 1 <= size <= 256 and cost <= gas.COMMITTEE_BUDGET
                    assert (
                        size == 256
                        or gas.committee_ballot_batch_gas(size + 1, k, m, rule)
                        > gas.COMMITTEE_BUDGET
                    )
                    # the bound covers the draw and the fresh writes of any run size
                    assert cost >= gas.ballot_batch_gas(
                        size, k, gas.ballot_model_candidates(k, m, rule), rule
                    ) + gas.committee_draw_gas(gas.MAX_AUTHORS)


@pytest.mark.parametrize(
    ("n", "k", "rule", "fraction"),
    [
        (30, 3, TRUNCATED_BORDA, 0.2),
        (30, 3, MEDIAN_SCORE, 0.2),
        (30, 29, TRUNCATED_BORDA, 0.2),
        (30, 12, TRUNCATED_BORDA, 1.0),  # M = n: every point a fresh write
        (40, 10, MEDIAN_SCORE, 0.2),
        (40, 39, MEDIAN_RANK, 0.2),  # the largest sort of a committee ballot
    ],
)
def test_committee_rounds_stay_under_their_gas_bound(n, k, rule, fraction):
    """Measured on eth-tester: every committee ballot batch (the first, which draws the
    committees, included) under its bound, every transaction under 10 M gas."""
    w3 = Web3(EthereumTesterProvider())
    m = math.ceil(fraction * n)
    size = gas.committee_ballot_batch_size(k, m, rule)
    result = measure_round(
        w3,
        w3.eth.accounts[0],
        n,
        m,
        register_batch=gas.register_batch_size(),
        anchor_batch=gas.anchor_batch_size(Kind.UPDATE),
        ballot_batches=[size, 1, 2],  # the draw in the largest batch, then small ones
        election_rule=rule,
        committee_size=k,
        gas=29_000_000,  # skip estimation: py-evm is slow at it
    )
    assert len(result.contract.functions.candidatesOf(1).call()) == m
    for i, (b, peers, _, used) in enumerate(result.ballots):
        assert peers == k
        assert used <= gas.committee_ballot_batch_gas(b, k, m, rule, n, draw=i == 0)
    assert result.seal < 100_000
    assert max(result.all_gas()) <= gas.COMMITTEE_BUDGET


@pytest.mark.anvil
@pytest.mark.slow
def test_committee_rounds_at_256_and_at_the_median_bound_fit_the_capped_node(capped_anvil):
    """n = 256 with k = 10 (both rules) and k = 255 (Borda), and the median rule at its
    word bound (n * ceil(k / 8) = 1352 at n = 169, k = 64; 1280 at n = 256, k = 40):
    every transaction under 80 % of the cap on anvil with the cap enforced."""
    w3 = capped_anvil
    lines = []
    for n, k, rule in [
        (256, 10, TRUNCATED_BORDA),
        (256, 10, MEDIAN_SCORE),
        (256, 255, TRUNCATED_BORDA),
        (169, 64, MEDIAN_SCORE),
        (256, 40, MEDIAN_SCORE),
    ]:
        m = math.ceil(0.2 * n)
        result = measure_round(
            w3,
            w3.eth.accounts[0],
            n,
            m,
            register_batch=gas.register_batch_size(),
            anchor_batch=gas.anchor_batch_size(Kind.UPDATE),
            ballot_batches=gas.committee_ballot_batch_size(k, m, rule),
            election_rule=rule,
            committee_size=k,
        )
        assert len(result.contract.functions.candidatesOf(1).call()) == m
        assert max(result.all_gas()) < gas.DEFAULT_BUDGET
        for i, (b, peers, _, used) in enumerate(result.ballots):
            assert used <= gas.committee_ballot_batch_gas(b, peers, m, rule, n, draw=i == 0)
        lines.append(
            f"n={n} k={k} rule={rule}: elect {result.elect:,}, max tx {max(result.all_gas()):,}"
        )
    print("\nanvil --enable-tx-gas-limit, committees:\n" + "\n".join(lines))


def test_committee_batches_cost_each_batch_with_its_exact_fresh_points():
    """At n = 256, k = 10, M = 52: ballots that give points to the same few authors make
    larger batches than the worst case, every batch within the budget, in order."""
    authors = [f"a{i}" for i in range(256)]
    same = [authors[:10]] * 256  # every ballot gives points to the same ten
    spread = [authors[(10 * i) % 256 :][:10] for i in range(256)]
    worst = gas.committee_ballot_batch_size(10, 52, TRUNCATED_BORDA)
    for points_to in (same, spread):
        sizes = gas.committee_batch_sizes(points_to, 10, 52, TRUNCATED_BORDA, 256)
        assert sum(sizes) == 256 and min(sizes) >= 1
        assert sizes[0] >= worst  # never smaller than the worst case
        have, start = set(), 0
        for i, size in enumerate(sizes):
            fresh = set().union(*points_to[start : start + size]) - have
            cost = gas.committee_ballot_batch_gas(size, 10, 52, 0, 256, i == 0, len(fresh))
            assert cost <= gas.COMMITTEE_BUDGET
            have, start = have | fresh, start + size
    # the first batch gives points to all the spread ballots' authors, to ten of same's
    assert (
        gas.committee_batch_sizes(same, 10, 52, 0, 256)[0]
        > gas.committee_batch_sizes(spread, 10, 52, 0, 256)[0]
    )
    median = gas.committee_batch_sizes([[]] * 256, 10, 52, MEDIAN_SCORE, 256, draw=False)
    assert median[0] >= gas.committee_ballot_batch_size(10, 52, MEDIAN_SCORE)

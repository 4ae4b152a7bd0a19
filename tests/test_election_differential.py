"""Differential test: the contract's election equals the Python oracle (borda.elect)."""

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import EthereumTesterProvider, Web3

from seccl_flwr.protocol import borda
from seccl_flwr.protocol.eip712 import MAX_SCORE, Kind
from tests.conftest_contract import binding_of, deploy, digest, make_keys, send, signed_ballot

MAX_N = 30
KEYS = make_keys(MAX_N, "differential")
ADDR = [k.address for k in KEYS]
GAS = 29_000_000


@pytest.fixture(scope="module")
def chain():
    w3 = Web3(EthereumTesterProvider())
    return w3, w3.eth.accounts[0]


@st.composite
def rounds(draw):
    """A random round: n, M, anchored authors (in anchoring order) and ballots."""
    n = draw(st.integers(2, MAX_N))
    m = draw(st.integers(1, n))
    authors = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    # small ranges make ties common; full range checks the extremes
    score = draw(st.sampled_from([st.integers(0, 2), st.integers(0, 5), st.integers(0, MAX_SCORE)]))
    evaluators = draw(st.lists(st.integers(0, n - 1), max_size=n, unique=True))
    ballots = {}
    for ev in evaluators:
        others = [a for a in authors if a != ev]
        peers = draw(st.permutations(others))[: draw(st.integers(0, len(others)))]
        ballots[ev] = {p: draw(score) for p in peers}
    chunk = draw(st.integers(1, max(1, len(evaluators))))
    return n, m, authors, ballots, chunk


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=rounds())
def test_contract_election_equals_python_oracle(chain, case):
    w3, owner = chain
    n, m, authors, ballots, chunk = case
    csc = deploy(w3, owner, keccak(text="diff"), ADDR[:n], m)
    binding = binding_of(w3, csc)
    author_addrs = [ADDR[a] for a in authors]
    send(
        csc.functions.anchor(1, Kind.UPDATE, author_addrs, [digest(f"u{a}") for a in authors]),
        owner,
    )
    signed = [
        signed_ballot(binding, 1, KEYS[ev], [ADDR[p] for p in row], list(row.values()))
        for ev, row in ballots.items()
    ]
    for start in range(0, len(signed), chunk):
        send(
            csc.functions.submitBallots(1, signed[start : start + chunk]),
            owner,
            gas=GAS,  # skip estimation: halves the time on py-evm
        )

    expected, totals = borda.elect(authors, ballots, m)

    got_authors, got_points = csc.functions.totalsOf(1).call()
    assert got_authors == author_addrs
    assert got_points == [totals[a] for a in authors]

    receipt = send(csc.functions.elect(1), owner, gas=GAS)
    (event,) = csc.events.Elected().process_receipt(receipt)
    assert event.args.candidates == [ADDR[c] for c in expected]
    assert event.args.totals == [totals[c] for c in expected]
    assert csc.functions.candidatesOf(1).call() == [ADDR[c] for c in expected]
    assert csc.functions.ballotCount(1).call() == len(ballots)

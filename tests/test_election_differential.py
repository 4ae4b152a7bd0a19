"""Differential test: the contract's election equals the Python oracle.

Every election rule: truncated Borda (``borda.elect``), the median score and the
median rank (``election.elect`` with rule 1 or 2: ranks tie as often as scores),
with full cross-evaluation and with evaluator
committees (``assigned=``: normalised Borda, medians of the received scores).
Scores are drawn from tiny ranges most of the time, so ballots, medians and totals
tie often and the seed's tie order decides; incomplete ballots (and, in committee
runs, ballots of unassigned peers or of non-authors) and rounds below the quorum
must be refused by both, with the matching error.
"""

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_case
from hypothesis import strategies as st
from web3 import EthereumTesterProvider, Web3

from seccl_flwr.protocol import borda, committee, election
from seccl_flwr.protocol.eip712 import MAX_SCORE, Kind
from seccl_flwr.protocol.params import MEDIAN_RANK, MEDIAN_SCORE, TRUNCATED_BORDA
from tests.conftest_contract import (
    binding_of,
    decode_revert,
    deploy,
    make_keys,
    send,
    signed_ballot,
)

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
    """A random round: n, M, quorum, anchored updates (in anchoring order) and ballots."""
    n = draw(st.integers(2, MAX_N))
    m = draw(st.integers(1, n))
    quorum = draw(st.integers(1, n))
    authors = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    digests = draw(
        st.lists(
            st.integers(1, 2**256 - 1).map(lambda v: v.to_bytes(32, "big")),
            min_size=len(authors),
            max_size=len(authors),
        )
    )
    # tiny ranges make ties common (all equal with {0}); the full range checks extremes
    score = draw(
        st.sampled_from(
            [st.just(0), st.integers(0, 1), st.integers(0, 3), st.integers(0, MAX_SCORE)]
        )
    )
    evaluators = draw(st.lists(st.integers(0, n - 1), max_size=n, unique=True))
    incomplete = draw(st.integers(0, 9)) == 0  # now and then one ballot misses a peer
    ballots = {}
    for ev in evaluators:
        peers = draw(st.permutations([a for a in authors if a != ev]))
        if incomplete and peers:
            peers, incomplete = peers[1:], False
        ballots[ev] = {p: draw(score) for p in peers}
    chunk = draw(st.integers(1, max(1, len(evaluators))))
    rule = draw(st.sampled_from([TRUNCATED_BORDA, MEDIAN_SCORE, MEDIAN_RANK]))
    return n, m, quorum, dict(zip(authors, digests, strict=True)), ballots, chunk, rule


def _reverted(fn, owner):
    """Return the custom error ``(name, args)`` of ``fn``, or send it and return None."""
    try:
        fn.call({"from": owner, "gas": GAS})
    except Exception as exc:  # noqa: BLE001 - decoded and compared by the caller
        return decode_revert(exc)
    send(fn, owner, gas=GAS)  # skip estimation: halves the time on py-evm
    return None


def _assert_quorum_refused(csc, owner, rule, authors, ballots, quorum, refusal):  # noqa: PLR0913
    """The oracle refused for the quorum, and the contract's election reverts the same."""
    assert isinstance(refusal, borda.QuorumNotReachedError)
    elect = (
        csc.functions.elect(1)
        if rule == TRUNCATED_BORDA
        else csc.functions.electByMedian(1, [0] * authors)
    )
    assert _reverted(elect, owner) == (
        "QuorumNotReached",
        {"round": 1, "ballots": ballots, "quorum": quorum},
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=rounds())
def test_contract_election_equals_python_oracle(chain, case):
    w3, owner = chain
    n, m, quorum, updates, ballots, chunk, rule = case
    csc = deploy(w3, owner, keccak(text="diff"), KEYS[:n], m, quorum=quorum, election_rule=rule)
    binding = binding_of(w3, csc)
    author_addrs = [ADDR[a] for a in updates]
    send(csc.functions.anchor(1, Kind.UPDATE, author_addrs, list(updates.values())), owner)
    assert csc.functions.roundSeed(1).call() == borda.round_seed(updates.values())

    signed = [
        signed_ballot(binding, 1, KEYS[ev], [ADDR[p] for p in row], list(row.values()))
        for ev, row in ballots.items()
    ]
    table = {ADDR[ev]: {ADDR[p]: s for p, s in row.items()} for ev, row in ballots.items()}
    address_updates = {ADDR[a]: d for a, d in updates.items()}
    try:
        if rule == TRUNCATED_BORDA:
            expected, totals = borda.elect(address_updates, table, m, quorum)
        else:
            expected, totals = election.elect(address_updates, table, m, quorum, rule)
        refusal = None
    except borda.ElectionError as exc:
        refusal = exc

    errors = [
        _reverted(csc.functions.submitBallots(1, signed[start : start + chunk]), owner)
        for start in range(0, len(signed), chunk)
    ]
    if isinstance(refusal, borda.IncompleteBallotError):
        assert [e[0] for e in errors if e] == ["IncompleteBallot"]
        return
    assert errors == [None] * len(errors)

    got_authors, got_points = csc.functions.totalsOf(1).call()
    assert got_authors == author_addrs
    if refusal is not None:
        _assert_quorum_refused(csc, owner, rule, len(author_addrs), len(ballots), quorum, refusal)
        return
    if rule == TRUNCATED_BORDA:  # Borda tallies as ballots come; medians need them all
        assert got_points == [totals[a] for a in author_addrs]

    if rule == TRUNCATED_BORDA:
        receipt = send(csc.functions.elect(1), owner, gas=GAS)
    else:
        medians = [totals[a] for a in author_addrs]
        wrong = list(medians)
        wrong[0] += 1  # any other value is refused
        assert _reverted(csc.functions.electByMedian(1, wrong), owner)[0] == "WrongMedian"
        receipt = send(csc.functions.electByMedian(1, medians), owner, gas=GAS)
    (event,) = csc.events.Elected().process_receipt(receipt)
    assert event.args.candidates == expected
    assert event.args.totals == [totals[c] for c in expected]
    assert csc.functions.candidatesOf(1).call() == expected
    assert csc.functions.ballotCount(1).call() == len(ballots)
    assert csc.functions.totalsOf(1).call()[1] == [totals[a] for a in author_addrs]


# ------------------------------------------------------------------ committees
COMMITTEE_ERRORS = {
    "drop": "IncompleteBallot",  # a ballot misses one of its assigned peers
    "swap": "NotAssigned",  # a ballot scores an author not assigned to it
    "outsider": "NotAnAuthor",  # a participant without an update casts a ballot
}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_committee_election_equals_python_oracle(chain, data):
    """Committee runs of both rules: random k, missing ballots, ties, bad ballots.

    The assignment comes from the seal block's hash (not drawn by hypothesis); the
    ballots are drawn against it, then the contract and ``election.elect(...,
    assigned=)`` must agree on every standing, the candidates and every refusal.
    """
    w3, owner = chain
    n = data.draw(st.integers(2, 16), label="n")
    k = data.draw(st.integers(1, n - 1), label="k")
    m = data.draw(st.integers(1, n), label="M")
    rule = data.draw(st.sampled_from([TRUNCATED_BORDA, MEDIAN_SCORE, MEDIAN_RANK]), label="rule")
    authors = data.draw(
        st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True), label="authors"
    )
    voters = data.draw(
        st.lists(st.sampled_from([ADDR[a] for a in authors]), min_size=1, unique=True)
    )
    # mostly reachable (some ballots missing), now and then one above the ballots cast
    above = data.draw(st.integers(0, 5)) == 5
    quorum = min(n, len(voters) + 1) if above else data.draw(st.integers(1, len(voters)))
    csc = deploy(
        w3,
        owner,
        keccak(text="diff-committee"),
        KEYS[:n],
        m,
        quorum=quorum,
        election_rule=rule,
        committee_size=k,
    )
    binding = binding_of(w3, csc)
    author_addrs = [ADDR[a] for a in authors]
    digests = [keccak(text=f"committee/{a}/{data.draw(st.integers(0, 3))}") for a in authors]
    send(csc.functions.anchor(1, Kind.UPDATE, author_addrs, digests), owner)
    send(csc.functions.sealUpdates(1), owner)
    w3.provider.make_request("evm_mine", [])  # calls run in the latest block
    block = w3.eth.get_block(csc.functions.sealBlockOf(1).call())
    seed = committee.committee_seed(bytes(block["hash"]), borda.round_seed(digests))
    assigned = committee.assignments(author_addrs, seed, k)

    score = data.draw(
        st.sampled_from(
            [st.just(0), st.integers(0, 1), st.integers(0, 3), st.integers(0, MAX_SCORE)]
        )
    )
    table = {
        v: {p: data.draw(score) for p in data.draw(st.permutations(assigned[v]))} for v in voters
    }
    fault = data.draw(st.sampled_from([*COMMITTEE_ERRORS, None, None]), label="fault")
    outsiders = [a for a in ADDR[:n] if a not in assigned]
    if fault == "drop" and any(table.values()):
        v = next(v for v in voters if table[v])
        table[v].pop(next(iter(table[v])))
    elif fault == "swap" and voters and len(author_addrs) > 2 and table[voters[0]]:
        v = voters[0]
        spare = [a for a in author_addrs if a != v and a not in table[v]]
        if spare:
            peer = next(iter(table[v]))
            table[v] = {(spare[0] if p == peer else p): s for p, s in table[v].items()}
        else:
            fault = None
    elif fault == "outsider" and outsiders:
        table[outsiders[0]] = {p: 0 for p in author_addrs[:1]}
    else:
        fault = None

    signed = [
        signed_ballot(binding, 1, KEYS[ADDR.index(v)], list(row), list(row.values()))
        for v, row in table.items()
    ]
    updates = dict(zip(author_addrs, digests, strict=True))
    try:
        expected, standings = election.elect(updates, table, m, quorum, rule, assigned)
        refusal = None
    except borda.ElectionError as exc:
        refusal = exc
    chunk = data.draw(st.integers(1, max(1, len(signed))), label="chunk")
    errors = [
        _reverted(csc.functions.submitBallots(1, signed[i : i + chunk]), owner)
        for i in range(0, len(signed), chunk)
    ]
    note_case(f"fault: {fault}; rule {rule}")
    if fault is not None:
        assert isinstance(refusal, borda.ElectionError)
        assert isinstance(refusal, borda.IncompleteBallotError) == (fault == "drop")
        assert [e[0] for e in errors if e] == [COMMITTEE_ERRORS[fault]]
        return
    assert errors == [None] * len(errors)
    if refusal is not None:
        note_case("below the quorum")
        _assert_quorum_refused(csc, owner, rule, len(author_addrs), len(table), quorum, refusal)
        return
    note_case(
        f"elected, {len(table)} of {len(author_addrs)} authors voted"
        if len(table) < len(author_addrs)
        else "elected, every author voted"
    )
    if rule == TRUNCATED_BORDA:
        receipt = send(csc.functions.elect(1), owner, gas=GAS)
    else:
        medians = [standings[a] for a in author_addrs]
        receipt = send(csc.functions.electByMedian(1, medians), owner, gas=GAS)
    (event,) = csc.events.Elected().process_receipt(receipt)
    assert event.args.candidates == expected
    assert event.args.totals == [standings[c] for c in expected]
    assert csc.functions.totalsOf(1).call()[1] == [standings[a] for a in author_addrs]

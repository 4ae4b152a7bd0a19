"""Evaluator committees on the CandidateSelection contract (issue 16), on eth-tester.

The seal and its rules, the committee draw (equal to ``protocol.committee``), ballot
validation against the assignment, normalised Borda and the median rule under
committees, and the typed client's ``committee_assignment``.
"""

import pytest
from eth_account import Account
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3
from web3.logs import DISCARD

from seccl_flwr.chain.connection import embedded_web3, ensure_funded
from seccl_flwr.chain.errors import CommitteeUnavailableError, ContractRevertError
from seccl_flwr.protocol import borda, committee, election
from seccl_flwr.protocol.eip712 import Kind, run_id_from_label
from seccl_flwr.protocol.params import (
    MAX_MEDIAN_WORDS,
    MEDIAN_SCORE,
    TRUNCATED_BORDA,
    RunParams,
    median_words,
    run_params,
)
from seccl_flwr.protocol.signed import SignedMessage
from tests.conftest_contract import (
    binding_of,
    create,
    deploy,
    digest,
    make_keys,
    reverts,
    send,
    signed_ballot,
    table_of,
)
from tests.csc_helpers import open_csc

RUN_ID = keccak(text="committee-run")
N = 8
K = 3


@pytest.fixture(scope="module")
def w3():
    return Web3(EthereumTesterProvider())


@pytest.fixture(scope="module")
def owner(w3):
    return w3.eth.accounts[0]


@pytest.fixture(scope="module")
def keys():
    return make_keys(N, "committee")


def anchored(w3, owner, keys, *, k=K, rule=TRUNCATED_BORDA, m=3, quorum=1, seal=True):
    """A committee run with every participant's update of round 1 anchored (and sealed)."""
    csc = deploy(w3, owner, RUN_ID, keys, m, quorum=quorum, election_rule=rule, committee_size=k)
    authors = [a.address for a in keys]
    digests = [digest(f"update/{a}") for a in authors]
    send(csc.functions.anchor(1, Kind.UPDATE, authors, digests), owner)
    if seal:
        send(csc.functions.sealUpdates(1), owner)
        mine(w3)  # eth_call runs in the latest block, where blockhash(seal block) is 0
    return csc


def mine(w3, blocks=1):
    w3.provider.ethereum_tester.mine_blocks(blocks)


def assignment_of(w3, csc, k=K):
    """The assignment derived off chain from the seal block's hash, as anyone does."""
    block = w3.eth.get_block(csc.functions.sealBlockOf(1).call())
    seed = committee.committee_seed(bytes(block["hash"]), csc.functions.roundSeed(1).call())
    return seed, committee.assignments(csc.functions.updateAuthors(1).call(), seed, k)


def by_address(keys):
    return {a.address: a for a in keys}


# --------------------------------------------------------------- parameters


def test_constructor_and_open_check_the_committee_size(w3, owner, keys):
    with reverts("InvalidCommitteeSize", committeeSize=256, numParticipants=256):
        create(w3, owner, RUN_ID, RunParams(1, 1, 1, False, 0, 256))
    with reverts("InvalidCommitteeSize", committeeSize=N, numParticipants=N):
        deploy(w3, owner, RUN_ID, keys, 2, committee_size=N)
    csc = deploy(w3, owner, RUN_ID, keys, 2, committee_size=N - 1)
    assert RunParams.from_tuple(csc.functions.params().call()).committee_size == N - 1


def test_median_committee_runs_are_bounded_by_the_words_their_election_reads(w3, owner):
    accounts = make_keys(170, "median-words")
    assert median_words(170, 64) == 1360 > MAX_MEDIAN_WORDS >= median_words(169, 64)
    with reverts("TooManyScoresForMedian", numParticipants=170, committeeSize=64, words=1360):
        deploy(w3, owner, RUN_ID, accounts, 2, election_rule=MEDIAN_SCORE, committee_size=64)
    deploy(w3, owner, RUN_ID, accounts[:169], 2, election_rule=MEDIAN_SCORE, committee_size=64)
    # 170 participants: refused under the median rule with k = 0, opened with k = 5
    deploy(w3, owner, RUN_ID, accounts, 2, election_rule=MEDIAN_SCORE, committee_size=5)
    assert run_params(170, 0.2, 0.1, False, election_rule=MEDIAN_SCORE, committee_size=5)
    with pytest.raises(Exception, match="storage words"):
        run_params(170, 0.2, 0.1, False, election_rule=MEDIAN_SCORE, committee_size=64)
    with pytest.raises(Exception, match="exceeds the n - 1"):
        run_params(10, 0.2, 0.1, False, committee_size=10)


# --------------------------------------------------------------------- seal


def test_seal_rules(w3, owner, keys):
    csc = anchored(w3, owner, keys, seal=False)
    assert csc.functions.sealBlockOf(1).call() == 0
    stranger = w3.eth.accounts[1]
    with reverts("NotOwner", caller=stranger):
        csc.functions.sealUpdates(1).call({"from": stranger})
    with reverts("WrongRound", round=2, expected=1):
        csc.functions.sealUpdates(2).call({"from": owner})
    binding = binding_of(w3, csc)
    with reverts("UpdatesNotSealed", round=1):  # a committee run needs the seal first
        ballot = signed_ballot(binding, 1, keys[0], [keys[1].address], [1])
        csc.functions.submitBallots(1, [ballot]).call({"from": owner})
    receipt = send(csc.functions.sealUpdates(1), owner)
    (event,) = csc.events.RoundSealed().process_receipt(receipt)
    assert event.args.round == 1 and event.args.sealBlock == receipt.blockNumber
    assert csc.functions.sealBlockOf(1).call() == receipt.blockNumber
    with reverts("UpdatesSealed", round=1):
        csc.functions.sealUpdates(1).call({"from": owner})
    with reverts("UpdatesSealed", round=1):
        extra = make_keys(1, "late")[0].address
        csc.functions.anchor(1, Kind.UPDATE, [extra], [digest("late")]).call({"from": owner})
    assert csc.functions.committeeSeedOf(1).call() == b"\0" * 32  # drawn at the first ballot


def test_a_round_without_updates_cannot_be_sealed(w3, owner, keys):
    csc = deploy(w3, owner, RUN_ID, keys, 2, committee_size=K)
    with reverts("NoUpdates", round=1):
        csc.functions.sealUpdates(1).call({"from": owner})


def test_seal_is_optional_in_a_full_cross_evaluation_run(w3, owner, keys):
    csc = anchored(w3, owner, keys, k=0)  # sealed: ballots still score every other author
    binding = binding_of(w3, csc)
    peers = [a.address for a in keys[1:]]
    ballot = signed_ballot(binding, 1, keys[0], peers, [1] * 7)
    send(csc.functions.submitBallots(1, [ballot]), owner)
    assert csc.functions.committeeSeedOf(1).call() == b"\0" * 32
    unsealed = anchored(w3, owner, keys, k=0, seal=False)
    ballot = signed_ballot(binding_of(w3, unsealed), 1, keys[0], peers, [1] * 7)
    send(unsealed.functions.submitBallots(1, [ballot]), owner)
    with reverts("UpdatesSealed", round=1):  # the first ballot sealed the updates
        unsealed.functions.sealUpdates(1).call({"from": owner})


def test_the_seed_is_unavailable_in_the_seal_block_and_256_blocks_after_it(w3, owner, keys):
    csc = anchored(w3, owner, keys, seal=False)
    send(csc.functions.sealUpdates(1), owner)
    seal_block = csc.functions.sealBlockOf(1).call()
    assert w3.eth.block_number == seal_block
    _, assigned = assignment_of(w3, csc)
    ballot = signed_ballot(binding_of(w3, csc), 1, keys[0], assigned[keys[0].address], [1] * K)
    submit = csc.functions.submitBallots(1, [ballot])
    with reverts("CommitteeSeedUnavailable", round=1, sealBlock=seal_block):
        submit.call({"from": owner})  # executed in the seal block: no hash of itself yet
    mine(w3, 256)  # the next block on, blockhash(seal block) holds for 256 blocks
    assert submit.call({"from": owner}) == []
    mine(w3)
    with reverts("CommitteeSeedUnavailable", round=1, sealBlock=seal_block):
        submit.call({"from": owner})


# --------------------------------------------------------------- the draw


def test_the_contract_draws_the_assignment_of_protocol_committee(w3, owner, keys):
    csc = anchored(w3, owner, keys)
    seed, assigned = assignment_of(w3, csc)
    binding = binding_of(w3, csc)
    first = keys[3]
    ballot = signed_ballot(binding, 1, first, assigned[first.address], [5, 6, 7])
    receipt = send(csc.functions.submitBallots(1, [ballot]), owner)
    (event,) = csc.events.CommitteeDrawn().process_receipt(receipt, errors=DISCARD)
    assert event.args.committeeSeed == seed == csc.functions.committeeSeedOf(1).call()
    authors = csc.functions.updateAuthors(1).call()
    order = committee.committee_order(seed, len(authors))
    slots = csc.functions.committeeSlotsOf(1).call()
    assert [order[slot] for slot in slots] == list(range(len(authors)))
    by_slot = {slot: authors[p] for p, slot in enumerate(slots)}
    for position, author in enumerate(authors):
        t = slots[position]
        assert assigned[author] == [by_slot[(t + j) % len(authors)] for j in range(1, K + 1)]
    # every other author's ballot of its assigned peers is accepted, in any order
    others = [
        signed_ballot(binding, 1, a, assigned[a.address][::-1], [1, 2, 3])
        for a in keys
        if a != first
    ]
    send(csc.functions.submitBallots(1, others), owner)
    assert csc.functions.ballotCount(1).call() == N


def test_committee_ballots_must_be_the_assignment(w3, owner, keys):
    csc = anchored(w3, owner, keys)
    _, assigned = assignment_of(w3, csc)
    binding = binding_of(w3, csc)
    ev = keys[0]
    peers = assigned[ev.address]
    outsider = next(a for a in assigned if a not in peers and a != ev.address)

    def refused(ballot_peers, scores, account=ev):
        return csc.functions.submitBallots(
            1, [signed_ballot(binding, 1, account, ballot_peers, scores)]
        ).call({"from": owner})

    with reverts("NotAssigned", round=1, evaluator=ev.address, peer=outsider):
        refused([peers[0], outsider, peers[2]], [1, 1, 1])
    with reverts("NotAssigned", round=1, evaluator=ev.address, peer=outsider):
        refused([*peers, outsider], [1, 1, 1, 1])  # one too many
    with reverts("IncompleteBallot", round=1, evaluator=ev.address, peers=2, expected=K):
        refused(peers[:2], [1, 1])
    with reverts("DuplicatePeer", peer=peers[0]):
        refused([peers[0], peers[0], peers[1]], [1, 1, 1])
    with reverts("SelfScore", evaluator=ev.address):
        refused([ev.address, peers[1], peers[2]], [1, 1, 1])
    stranger = make_keys(1, "not-an-author")[0]
    with reverts("UnknownParticipant", account=stranger.address):
        refused(peers, [1, 1, 1], account=stranger)
    # a participant without an update of the round holds no committee seat
    late = deploy(w3, owner, RUN_ID, keys, 3, committee_size=K)
    authors = [a.address for a in keys[:5]]
    send(late.functions.anchor(1, Kind.UPDATE, authors, [digest(a) for a in authors]), owner)
    send(late.functions.sealUpdates(1), owner)
    mine(w3)
    ballot = signed_ballot(binding_of(w3, late), 1, keys[6], authors[:3], [1, 1, 1])
    with reverts("NotAnAuthor", round=1, peer=keys[6].address):
        late.functions.submitBallots(1, [ballot]).call({"from": owner})


def test_a_committee_larger_than_the_round_scores_every_other_author(w3, owner, keys):
    csc = deploy(w3, owner, RUN_ID, keys, 2, committee_size=N - 1)
    authors = [a.address for a in keys[:4]]  # m = 4 authors: k_eff = 3
    send(csc.functions.anchor(1, Kind.UPDATE, authors, [digest(a) for a in authors]), owner)
    send(csc.functions.sealUpdates(1), owner)
    _, assigned = assignment_of(w3, csc, N - 1)
    assert all(sorted(assigned[a]) == sorted(set(authors) - {a}) for a in authors)
    binding = binding_of(w3, csc)
    ballots = [signed_ballot(binding, 1, k, assigned[k.address], [1, 2, 3]) for k in keys[:4]]
    send(csc.functions.submitBallots(1, ballots), owner)
    send(csc.functions.elect(1), owner)


# ------------------------------------------------------------- the election


@pytest.mark.parametrize("rule", [TRUNCATED_BORDA, MEDIAN_SCORE])
def test_committee_election_equals_the_python_reference_with_missing_ballots(w3, owner, keys, rule):
    csc = anchored(w3, owner, keys, rule=rule, m=3, quorum=5)
    _, assigned = assignment_of(w3, csc)
    binding = binding_of(w3, csc)
    accounts = by_address(keys)
    voters = [a.address for a in keys if a not in (keys[2], keys[5])]  # two stay silent
    ballots = [
        signed_ballot(
            binding,
            1,
            accounts[v],
            assigned[v],
            [(7 * i + 3 * j) % 4 for j, _ in enumerate(assigned[v])],
        )
        for i, v in enumerate(voters)
    ]
    send(csc.functions.submitBallots(1, ballots[:3]), owner)
    send(csc.functions.submitBallots(1, ballots[3:]), owner)
    authors = csc.functions.updateAuthors(1).call()
    updates = {a: digest(f"update/{a}") for a in authors}
    expected, standings = election.elect(updates, table_of(ballots), 3, 5, rule, assigned)
    if rule == TRUNCATED_BORDA:
        receipt = send(csc.functions.elect(1), owner)
        points, _ = borda.borda_totals(updates, table_of(ballots), 3, assigned), None
        assert points == standings
    else:
        medians = [standings[a] for a in authors]
        wrong = list(medians)
        wrong[1] += 1
        with reverts("WrongMedian", round=1, author=authors[1], claimed=wrong[1]):
            csc.functions.electByMedian(1, wrong).call({"from": owner})
        receipt = send(csc.functions.electByMedian(1, medians), owner)
    (event,) = csc.events.Elected().process_receipt(receipt)
    assert event.args.candidates == expected
    assert event.args.totals == [standings[c] for c in expected]
    assert csc.functions.totalsOf(1).call()[1] == [standings[a] for a in authors]


def test_normalised_borda_does_not_punish_an_author_whose_evaluator_is_silent(w3, owner, keys):
    """Every ballot ranks its peers in the same order; an author scored by fewer ballots
    keeps the same standing per ballot, where raw totals would rank it down."""
    csc = anchored(w3, owner, keys, k=2, m=1)
    _, assigned = assignment_of(w3, csc, 2)
    binding = binding_of(w3, csc)
    accounts = by_address(keys)
    silent = keys[0].address
    ballots = [
        signed_ballot(binding, 1, accounts[v], assigned[v], [9, 9]) for v in assigned if v != silent
    ]
    send(csc.functions.submitBallots(1, ballots), owner)
    send(csc.functions.elect(1), owner)
    authors, points = csc.functions.totalsOf(1).call()
    updates = {a: digest(f"update/{a}") for a in authors}
    assert dict(zip(authors, points, strict=True)) == borda.borda_totals(
        updates, table_of(ballots), 1, assigned
    )
    assert all(p % 1_000_000 == 0 or p == 500_000 for p in points)


# ---------------------------------------------------------- the typed client


def test_the_client_derives_the_assignment_and_plays_a_committee_round():
    w3 = embedded_web3()
    server = Account.from_key(b"\x0c" * 32)
    ensure_funded(w3, server)
    members = [Account.from_key(bytes([i + 1]) * 32) for i in range(6)]
    csc, _ = open_csc(w3, server, run_id_from_label("committees"), members, 2, committee_size=2)
    assert csc.params().committee_size == 2
    assert csc.committee_assignment(0) == {}  # no update: nobody scores
    authors = [m.address for m in members]
    csc.anchor(1, Kind.UPDATE, authors, [bytes([7, i]) * 16 for i in range(6)])
    with pytest.raises(CommitteeUnavailableError, match="not sealed"):
        csc.committee_assignment(1)
    assert not csc.updates_sealed(1)
    csc.seal_updates(1)
    assert csc.updates_sealed(1)
    assert csc.seal_block(1) == w3.eth.block_number
    assigned = csc.committee_assignment(1)
    seed = committee.committee_seed(w3.eth.get_block(csc.seal_block(1))["hash"], csc.round_seed(1))
    assert assigned == committee.assignments(authors, seed, 2)
    assert csc.committee_seed(1) == b"\0" * 32
    binding = csc.binding
    accounts = {m.address: m for m in members}
    ballots = [
        SignedMessage.sign(accounts[v], binding, 1, Kind.BALLOT, peers=p, scores=[3, 4])
        for v, p in assigned.items()
    ]
    csc.submit_ballots(1, ballots)
    assert csc.committee_seed(1) == seed
    assert csc.committee_assignment(1) == assigned  # checked against the drawn seed
    assert sorted(csc.committee_slots(1)) == list(range(6))
    csc.elect(1)
    table = {b.author: dict(zip(b.peers, b.scores, strict=True)) for b in ballots}
    updates = {a: bytes([7, i]) * 16 for i, a in enumerate(authors)}
    expected, _ = election.elect(updates, table, 2, 1, TRUNCATED_BORDA, assigned)
    assert csc.candidates_of(1) == expected
    with pytest.raises(ContractRevertError) as info:
        csc.seal_updates(1)
    assert info.value.error_name == "UpdatesSealed"


def test_full_cross_evaluation_assignment_needs_no_seal():
    w3 = embedded_web3()
    server = Account.from_key(b"\x0d" * 32)
    ensure_funded(w3, server)
    members = [Account.from_key(bytes([i + 1]) * 32) for i in range(3)]
    csc, _ = open_csc(w3, server, run_id_from_label("full"), members, 1)
    authors = [m.address for m in members]
    csc.anchor(1, Kind.UPDATE, authors, [bytes([5, i]) * 16 for i in range(3)])
    assert csc.committee_assignment(1) == committee.assignments(authors, None, 0)

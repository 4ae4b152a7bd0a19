"""Behaviour of the CandidateSelection contract on the embedded EVM (eth-tester)."""

import math
import random

import pytest
from eth_abi import encode
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3

from seccl_flwr.chain.csc import BALLOT_CHUNK
from seccl_flwr.protocol import borda
from seccl_flwr.protocol.eip712 import (
    MAX_SCORE,
    Kind,
    RunBinding,
    ballot_typed_data,
    message_typed_data,
    typed_digest,
)
from tests.conftest_contract import (
    ARTIFACT,
    binding_of,
    decode_revert,
    deploy,
    digest,
    make_keys,
    reverts,
    send,
    signed_ballot,
)

RUN_ID = keccak(text="test-run")
N = 5
M = 2
BLOCK_GAS_LIMIT = 30_000_000
EIP7825_TX_GAS_CAP = 2**24  # per-transaction cap from Osaka on


@pytest.fixture(scope="module")
def w3():
    return Web3(EthereumTesterProvider())


@pytest.fixture(scope="module")
def owner(w3):
    return w3.eth.accounts[0]


@pytest.fixture(scope="module")
def stranger(w3):
    return w3.eth.accounts[1]


@pytest.fixture(scope="module")
def keys():
    return make_keys(N)


@pytest.fixture
def csc(w3, owner, keys):
    return deploy(w3, owner, RUN_ID, [k.address for k in keys], M)


@pytest.fixture
def binding(w3, csc):
    return binding_of(w3, csc)


def anchor_updates(csc, owner, accounts, round_=1):
    authors = [a.address for a in accounts]
    digests = [digest(f"update/{round_}/{a}") for a in authors]
    return send(csc.functions.anchor(round_, Kind.UPDATE, authors, digests), owner)


def complete_round(csc, owner, round_):
    send(csc.functions.elect(round_), owner)
    send(
        csc.functions.anchor(round_, Kind.GLOBAL_MODEL, [owner], [digest(f"g{round_}")]),
        owner,
    )


# ----------------------------------------------------------------- constructor


def test_constructor_registers_run_and_emits_event(w3, csc, owner, keys):
    addrs = [k.address for k in keys]
    assert csc.functions.owner().call() == owner
    assert csc.functions.runId().call() == RUN_ID
    assert csc.functions.numCandidates().call() == M
    assert csc.functions.participants().call() == addrs
    for i, a in enumerate(addrs):
        assert csc.functions.participantIndex(a).call() == i
        assert csc.functions.isParticipant(a).call()
    assert not csc.functions.isParticipant(owner).call()
    with reverts("UnknownParticipant", account=owner):
        csc.functions.participantIndex(owner).call()
    assert csc.functions.currentRound().call() == 1
    assert csc.functions.lastCompletedRound().call() == 0

    (event,) = csc.events.RunOpened().get_logs(from_block=0)
    assert event.args.runId == RUN_ID
    assert event.args.owner == owner
    assert event.args.chainId == w3.eth.chain_id
    assert event.args.participants == addrs
    assert event.args.numCandidates == M


def test_runtime_code_is_the_artifact_for_every_run(w3, owner, keys):
    a = deploy(w3, owner, keccak(text="a"), [keys[0].address], 1)
    b = deploy(w3, owner, keccak(text="b"), [k.address for k in keys], 3)
    expected = bytes.fromhex(ARTIFACT["deployedBytecode"][2:])
    assert bytes(w3.eth.get_code(a.address)) == expected
    assert bytes(w3.eth.get_code(b.address)) == expected


@pytest.mark.parametrize(
    ("count", "m", "error", "args"),
    [
        (0, 1, "InvalidParticipantCount", {"count": 0}),
        (257, 1, "InvalidParticipantCount", {"count": 257}),
        (3, 0, "InvalidCandidateCount", {"numCandidates": 0, "numParticipants": 3}),
        (3, 4, "InvalidCandidateCount", {"numCandidates": 4, "numParticipants": 3}),
    ],
)
def test_constructor_rejects_bad_sizes(w3, owner, count, m, error, args):
    addrs = [k.address for k in make_keys(count, "size")]
    with reverts(error, **args):
        deploy(w3, owner, RUN_ID, addrs, m)


def test_constructor_accepts_256_participants_and_m_equal_n(w3, owner):
    addrs = [k.address for k in make_keys(256, "big")]
    csc = deploy(w3, owner, RUN_ID, addrs, 256)
    assert csc.functions.participantIndex(addrs[255]).call() == 255


def test_constructor_rejects_zero_and_duplicate_participants(w3, owner, keys):
    addrs = [k.address for k in keys]
    with reverts("ZeroAddressParticipant"):
        deploy(w3, owner, RUN_ID, [addrs[0], "0x" + "00" * 20], 1)
    with reverts("DuplicateParticipant", participant=addrs[1]):
        deploy(w3, owner, RUN_ID, [addrs[0], addrs[1], addrs[2], addrs[1]], 1)


# --------------------------------------------------------------------- access


def test_only_owner_may_write(csc, stranger, keys, binding):
    a = keys[0].address
    with reverts("NotOwner", caller=stranger):
        csc.functions.anchor(1, Kind.UPDATE, [a], [digest("u")]).transact({"from": stranger})
    ballot = signed_ballot(binding, 1, keys[1], [a], [1])
    with reverts("NotOwner", caller=stranger):
        csc.functions.submitBallots(1, [ballot]).transact({"from": stranger})
    with reverts("NotOwner", caller=stranger):
        csc.functions.elect(1).transact({"from": stranger})


# -------------------------------------------------------------------- EIP-712


def test_domain_separator_matches_eip712(w3, csc):
    expected = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                keccak(
                    text="EIP712Domain(string name,string version,uint256 chainId,"
                    "address verifyingContract)"
                ),
                keccak(text="SecCL"),
                keccak(text="1"),
                w3.eth.chain_id,
                csc.address,
            ],
        )
    )
    assert csc.functions.domainSeparator().call() == expected


def test_hash_message_equals_python_typed_digest(csc, binding, keys):
    payload = keccak(b"payload")
    for kind in Kind:
        for round_ in (0, 1, 2**32 - 1):
            typed = message_typed_data(binding, round_, kind, keys[2].address, payload)
            got = csc.functions.hashMessage(round_, kind, keys[2].address, payload).call()
            assert got == typed_digest(typed)


@pytest.mark.parametrize("k", [0, 1, 4])
def test_hash_ballot_equals_python_typed_digest(csc, binding, keys, k):
    peers = [p.address for p in keys[1 : 1 + k]]
    scores = [MAX_SCORE, 0, 17, 999_999][:k]
    typed = ballot_typed_data(binding, 7, keys[0].address, peers, scores)
    got = csc.functions.hashBallot(7, keys[0].address, peers, scores).call()
    assert got == typed_digest(typed)


# --------------------------------------------------------------------- anchor


def test_anchor_updates_records_authors_and_emits(csc, owner, keys):
    order = [keys[3], keys[0], keys[4]]
    receipt = anchor_updates(csc, owner, order)
    authors = [a.address for a in order]
    assert csc.functions.updateAuthors(1).call() == authors
    for a in authors:
        assert csc.functions.anchorOf(1, Kind.UPDATE, a).call() == digest(f"update/1/{a}")
    assert csc.functions.anchorOf(1, Kind.UPDATE, keys[1].address).call() == b"\0" * 32
    events = csc.events.Anchored().process_receipt(receipt)
    assert [(e.args.round, e.args.kind, e.args.author) for e in events] == [
        (1, Kind.UPDATE, a) for a in authors
    ]
    assert [e.args.digest for e in events] == [digest(f"update/1/{a}") for a in authors]
    # a second batch of the same phase appends
    anchor_updates(csc, owner, [keys[1]])
    assert csc.functions.updateAuthors(1).call() == authors + [keys[1].address]


@pytest.mark.parametrize("kind", [0, 2, 5, 255])
def test_anchor_rejects_invalid_kind(csc, owner, keys, kind):
    with reverts("InvalidKind", kind=kind):
        csc.functions.anchor(1, kind, [keys[0].address], [digest("x")]).transact({"from": owner})


def test_anchor_rejects_malformed_batches(csc, owner, keys):
    a, b = keys[0].address, keys[1].address
    with reverts("LengthMismatch", a=2, b=1):
        csc.functions.anchor(1, Kind.UPDATE, [a, b], [digest("x")]).transact({"from": owner})
    with reverts("EmptyBatch"):
        csc.functions.anchor(1, Kind.UPDATE, [], []).transact({"from": owner})
    with reverts("ZeroDigest"):
        csc.functions.anchor(1, Kind.UPDATE, [a], [b"\0" * 32]).transact({"from": owner})
    with reverts("UnknownParticipant", account=owner):
        csc.functions.anchor(1, Kind.UPDATE, [owner], [digest("x")]).transact({"from": owner})


def test_anchor_rejects_double_anchoring(csc, owner, keys):
    a = keys[0].address
    with reverts("AlreadyAnchored", round=1, kind=Kind.UPDATE, author=a):
        csc.functions.anchor(1, Kind.UPDATE, [a, a], [digest("x"), digest("y")]).transact(
            {"from": owner}
        )
    anchor_updates(csc, owner, [keys[0]])
    with reverts("AlreadyAnchored", round=1, kind=Kind.UPDATE, author=a):
        csc.functions.anchor(1, Kind.UPDATE, [a], [digest("z")]).transact({"from": owner})


@pytest.mark.parametrize("round_", [0, 2, 2**32 - 1])
def test_anchor_updates_only_in_current_round(csc, owner, keys, round_):
    with reverts("WrongRound", round=round_, expected=1):
        csc.functions.anchor(round_, Kind.UPDATE, [keys[0].address], [digest("x")]).transact(
            {"from": owner}
        )


def test_updates_sealed_after_first_ballot_and_after_election(w3, csc, owner, keys, binding):
    anchor_updates(csc, owner, keys[:2])
    ballot = signed_ballot(binding, 1, keys[0], [keys[1].address], [5])
    send(csc.functions.submitBallots(1, [ballot]), owner)
    with reverts("UpdatesSealed", round=1):
        csc.functions.anchor(1, Kind.UPDATE, [keys[2].address], [digest("late")]).transact(
            {"from": owner}
        )
    other = deploy(w3, owner, RUN_ID, [k.address for k in keys], M)
    anchor_updates(other, owner, keys[:1])
    send(other.functions.elect(1), owner)
    with reverts("UpdatesSealed", round=1):
        other.functions.anchor(1, Kind.UPDATE, [keys[2].address], [digest("late")]).transact(
            {"from": owner}
        )


def test_global_model_anchoring_rules(csc, owner, keys):
    a = keys[0].address
    with reverts("UnknownParticipant", account=a):
        csc.functions.anchor(0, Kind.GLOBAL_MODEL, [a], [digest("g0")]).transact({"from": owner})
    with reverts("UnknownParticipant", account=a):
        csc.functions.anchor(
            0, Kind.GLOBAL_MODEL, [owner, a], [digest("g0"), digest("g0")]
        ).transact({"from": owner})
    send(csc.functions.anchor(0, Kind.GLOBAL_MODEL, [owner], [digest("g0")]), owner)
    assert csc.functions.anchorOf(0, Kind.GLOBAL_MODEL, owner).call() == digest("g0")
    assert csc.functions.lastCompletedRound().call() == 0
    with reverts("AlreadyAnchored", round=0, kind=Kind.GLOBAL_MODEL, author=owner):
        csc.functions.anchor(0, Kind.GLOBAL_MODEL, [owner], [digest("g0b")]).transact(
            {"from": owner}
        )
    with reverts("NotElected", round=1):
        csc.functions.anchor(1, Kind.GLOBAL_MODEL, [owner], [digest("g1")]).transact(
            {"from": owner}
        )
    with reverts("WrongRound", round=2, expected=1):
        csc.functions.anchor(2, Kind.GLOBAL_MODEL, [owner], [digest("g2")]).transact(
            {"from": owner}
        )
    anchor_updates(csc, owner, keys[:1])
    send(csc.functions.elect(1), owner)
    assert csc.functions.currentRound().call() == 1
    send(csc.functions.anchor(1, Kind.GLOBAL_MODEL, [owner], [digest("g1")]), owner)
    assert csc.functions.lastCompletedRound().call() == 1
    assert csc.functions.currentRound().call() == 2
    with reverts("WrongRound", round=1, expected=2):
        csc.functions.anchor(1, Kind.GLOBAL_MODEL, [owner], [digest("g1b")]).transact(
            {"from": owner}
        )


def test_initial_global_model_only_before_first_completed_round(csc, owner, keys):
    anchor_updates(csc, owner, keys[:1])
    complete_round(csc, owner, 1)
    with reverts("WrongRound", round=0, expected=2):
        csc.functions.anchor(0, Kind.GLOBAL_MODEL, [owner], [digest("g0")]).transact(
            {"from": owner}
        )


def test_evaluation_anchoring_rules(csc, owner, keys):
    a = keys[0].address
    with reverts("WrongRound", round=1, expected=0):
        csc.functions.anchor(1, Kind.EVALUATION, [a], [digest("e1")]).transact({"from": owner})
    anchor_updates(csc, owner, keys[:2])
    complete_round(csc, owner, 1)
    with reverts("WrongRound", round=0, expected=1):
        csc.functions.anchor(0, Kind.EVALUATION, [a], [digest("e0")]).transact({"from": owner})
    with reverts("WrongRound", round=2, expected=1):
        csc.functions.anchor(2, Kind.EVALUATION, [a], [digest("e2")]).transact({"from": owner})
    with reverts("UnknownParticipant", account=owner):
        csc.functions.anchor(1, Kind.EVALUATION, [owner], [digest("e1")]).transact({"from": owner})
    authors = [k.address for k in keys]
    digests = [digest(f"e1/{x}") for x in authors]
    send(csc.functions.anchor(1, Kind.EVALUATION, authors, digests), owner)
    for x, d in zip(authors, digests, strict=True):
        assert csc.functions.anchorOf(1, Kind.EVALUATION, x).call() == d


# -------------------------------------------------------------------- ballots


def test_submit_ballots_round_state_errors(w3, csc, owner, keys, binding):
    ballot = signed_ballot(binding, 1, keys[0], [keys[1].address], [5])
    with reverts("EmptyBatch"):
        csc.functions.submitBallots(1, []).transact({"from": owner})
    with reverts("NoUpdates", round=1):
        csc.functions.submitBallots(1, [ballot]).transact({"from": owner})
    with reverts("WrongRound", round=2, expected=1):
        csc.functions.submitBallots(2, [ballot]).transact({"from": owner})
    anchor_updates(csc, owner, keys[:2])
    send(csc.functions.elect(1), owner)
    with reverts("AlreadyElected", round=1):
        csc.functions.submitBallots(1, [ballot]).transact({"from": owner})


@pytest.fixture
def open_round(csc, owner, keys):
    """Round 1 with updates from participants 0..3 (participant 4 sent none)."""
    anchor_updates(csc, owner, keys[:4])
    return csc


def test_ballot_content_errors(open_round, owner, keys, stranger, binding):
    csc = open_round
    k0, k1, k2, k4 = keys[0], keys[1].address, keys[2].address, keys[4].address

    def submit(*ballots):
        return csc.functions.submitBallots(1, list(ballots)).transact({"from": owner})

    class Outsider:
        address = stranger
        key = keccak(text="outsider")

    with reverts("UnknownParticipant", account=stranger):
        submit(signed_ballot(binding, 1, Outsider, [k1], [1]))
    with reverts("LengthMismatch", a=2, b=1):
        submit((k0.address, [k1, k2], [1], b"\0" * 65))
    with reverts("SelfScore", evaluator=k0.address):
        submit(signed_ballot(binding, 1, k0, [k1, k0.address], [1, 2]))
    with reverts("NotAnAuthor", round=1, peer=k4):
        submit(signed_ballot(binding, 1, k0, [k1, k4], [1, 2]))
    with reverts("DuplicatePeer", peer=k1):
        submit(signed_ballot(binding, 1, k0, [k1, k2, k1], [1, 2, 3]))
    with reverts("ScoreOutOfRange", score=MAX_SCORE + 1):
        submit(signed_ballot(binding, 1, k0, [k1, k2], [MAX_SCORE, MAX_SCORE + 1]))
    assert csc.functions.ballotCount(1).call() == 0
    # the bounds themselves are fine, and a non-author evaluator may vote
    send(
        csc.functions.submitBallots(
            1,
            [
                signed_ballot(binding, 1, k0, [k1, k2], [MAX_SCORE, 0]),
                signed_ballot(binding, 1, keys[4], [k1], [3]),
            ],
        ),
        owner,
    )
    assert csc.functions.ballotCount(1).call() == 2


def test_duplicate_ballots_rejected_within_and_across_calls(open_round, owner, keys, binding):
    csc = open_round
    b = signed_ballot(binding, 1, keys[0], [keys[1].address], [1])
    b2 = signed_ballot(binding, 1, keys[0], [keys[2].address], [1])
    with reverts("DuplicateBallot", round=1, evaluator=keys[0].address):
        csc.functions.submitBallots(1, [b, b2]).transact({"from": owner})
    send(csc.functions.submitBallots(1, [b]), owner)
    with reverts("DuplicateBallot", round=1, evaluator=keys[0].address):
        csc.functions.submitBallots(1, [b2]).transact({"from": owner})


def test_one_bad_ballot_reverts_the_whole_call(open_round, owner, keys, binding):
    csc = open_round
    good = signed_ballot(binding, 1, keys[0], [keys[1].address], [1])
    bad = signed_ballot(binding, 1, keys[1], [keys[1].address], [1])
    with reverts("SelfScore"):
        csc.functions.submitBallots(1, [good, bad]).transact({"from": owner})
    assert csc.functions.ballotCount(1).call() == 0
    assert csc.functions.anchorOf(1, Kind.BALLOT, keys[0].address).call() == b"\0" * 32


def _invalid_signature(csc, owner, ballot, evaluator):
    with pytest.raises(Exception) as info:  # noqa: B017
        csc.functions.submitBallots(1, [ballot]).transact({"from": owner})
    name, args = decode_revert(info.value)
    assert name == "InvalidSignature"
    assert args["evaluator"] == evaluator
    assert args["recovered"] != evaluator
    return args["recovered"]


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_signature_forgery_and_malformed_signatures(open_round, owner, keys, binding):
    csc = open_round
    ev, peers = keys[0], [keys[1].address, keys[2].address]
    good = signed_ballot(binding, 1, ev, peers, [10, 20])
    sig = good[3]
    # tampered content: the signature recovers to some unrelated address
    tampered = (ev.address, peers, [20, 10], sig)
    recovered = _invalid_signature(csc, owner, tampered, ev.address)
    assert recovered not in {k.address for k in keys} | {"0x" + "00" * 20}
    # signed by another participant
    forged = signed_ballot(binding, 1, ev, peers, [10, 20], key=keys[3])
    assert _invalid_signature(csc, owner, forged, ev.address) == keys[3].address
    zero = "0x0000000000000000000000000000000000000000"
    # malformed: wrong length, high-s (malleated twin), bad v
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    high_s = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    for bad in (sig[:64], sig + b"\0", b"", high_s, sig[:64] + b"\x00", sig[:64] + b"\x01"):
        ballot = (ev.address, peers, [10, 20], bad)
        assert _invalid_signature(csc, owner, ballot, ev.address) == zero
    send(csc.functions.submitBallots(1, [good]), owner)


def test_replayed_ballots_are_rejected(w3, open_round, owner, keys, binding):
    csc = open_round
    ev, peers, scores = keys[0], [keys[1].address], [7]
    other = deploy(w3, owner, RUN_ID, [k.address for k in keys], M)
    replays = {
        "round": signed_ballot(binding, 2, ev, peers, scores),
        "runId": signed_ballot(
            RunBinding(binding.chain_id, binding.contract, keccak(text="other")),
            1,
            ev,
            peers,
            scores,
        ),
        "contract": signed_ballot(binding_of(w3, other), 1, ev, peers, scores),
        "chainId": signed_ballot(
            RunBinding(binding.chain_id + 1, binding.contract, RUN_ID),
            1,
            ev,
            peers,
            scores,
        ),
    }
    for ballot in replays.values():
        _invalid_signature(csc, owner, ballot, ev.address)
    send(csc.functions.submitBallots(1, [signed_ballot(binding, 1, ev, peers, scores)]), owner)


# ------------------------------------------------------------------- election


def test_election_result_events_and_views(open_round, owner, keys, binding):
    csc = open_round
    addr = [k.address for k in keys]
    # participant index -> {peer index: score}; authors are 0..3, M = 2
    scores = {
        0: {1: 900, 2: 500, 3: 900},
        1: {0: 100, 2: 800, 3: 700},
        2: {0: 300, 1: 300},
        4: {0: 10, 1: 20, 2: 30, 3: 40},
    }
    ballots = []
    for ev, row in scores.items():
        peers = list(row)
        ballots.append(
            signed_ballot(binding, 1, keys[ev], [addr[p] for p in peers], list(row.values()))
        )
    with reverts("NotElected", round=1):
        csc.functions.candidatesOf(1).call()
    assert not csc.functions.isElected(1).call()
    r1 = send(csc.functions.submitBallots(1, ballots[:1]), owner)
    r2 = send(csc.functions.submitBallots(1, ballots[1:]), owner)

    cast = csc.events.BallotCast().process_receipt(r1) + csc.events.BallotCast().process_receipt(r2)
    assert [e.args.evaluator for e in cast] == [addr[e] for e in scores]
    for e, (ev, row) in zip(cast, scores.items(), strict=True):
        typed = ballot_typed_data(binding, 1, addr[ev], [addr[p] for p in row], list(row.values()))
        assert e.args.digest == typed_digest(typed)
        assert csc.functions.anchorOf(1, Kind.BALLOT, addr[ev]).call() == e.args.digest
    assert csc.functions.ballotCount(1).call() == 4
    assert csc.functions.evaluatorsOf(1).call() == [addr[e] for e in scores]

    expected_candidates, expected_totals = borda.elect([0, 1, 2, 3], scores, M)
    authors, points = csc.functions.totalsOf(1).call()
    assert authors == addr[:4]
    assert dict(zip(authors, points, strict=True)) == {
        addr[i]: t for i, t in expected_totals.items()
    }

    receipt = send(csc.functions.elect(1), owner)
    (event,) = csc.events.Elected().process_receipt(receipt)
    assert event.args.round == 1
    assert event.args.candidates == [addr[i] for i in expected_candidates]
    assert event.args.totals == [expected_totals[i] for i in expected_candidates]
    assert csc.functions.isElected(1).call()
    assert csc.functions.candidatesOf(1).call() == [addr[i] for i in expected_candidates]
    # hand-checked: ballot 0 ranks 1 before 3 (equal score, lower index);
    # totals 0:2, 1:3, 2:3, 3:4 -> 3 first, then 1 (beats 2 on index)
    assert expected_totals == {0: 2, 1: 3, 2: 3, 3: 4}
    assert expected_candidates == [3, 1]
    with reverts("AlreadyElected", round=1):
        csc.functions.elect(1).transact({"from": owner})


def test_election_without_ballots_breaks_ties_by_participant_index(csc, owner, keys):
    anchor_updates(csc, owner, [keys[4], keys[2], keys[3]])
    receipt = send(csc.functions.elect(1), owner)
    (event,) = csc.events.Elected().process_receipt(receipt)
    assert event.args.candidates == [keys[2].address, keys[3].address]
    assert event.args.totals == [0, 0]


def test_fewer_authors_than_candidates_and_short_ballots(w3, owner, keys):
    csc = deploy(w3, owner, RUN_ID, [k.address for k in keys], 4)
    binding = binding_of(w3, csc)
    anchor_updates(csc, owner, [keys[1], keys[0]])
    ballots = [
        signed_ballot(binding, 1, keys[2], [keys[0].address], [5]),  # k=1 < M=4
        signed_ballot(binding, 1, keys[0], [], []),  # only author is itself
    ]
    send(csc.functions.submitBallots(1, ballots), owner)
    send(csc.functions.elect(1), owner)
    assert csc.functions.candidatesOf(1).call() == [keys[0].address, keys[1].address]
    assert csc.functions.totalsOf(1).call() == [[keys[1].address, keys[0].address], [0, 4]]


def test_election_wrong_round_and_no_updates(csc, owner, keys):
    with reverts("NoUpdates", round=1):
        csc.functions.elect(1).transact({"from": owner})
    with reverts("WrongRound", round=2, expected=1):
        csc.functions.elect(2).transact({"from": owner})


def test_rounds_are_independent(csc, owner, keys, binding):
    addr = [k.address for k in keys]
    anchor_updates(csc, owner, keys[:3])
    send(
        csc.functions.submitBallots(1, [signed_ballot(binding, 1, keys[0], addr[1:3], [1, 2])]),
        owner,
    )
    complete_round(csc, owner, 1)
    assert csc.functions.candidatesOf(1).call() == [addr[2], addr[1]]
    # round 2: other authors, fresh totals and evaluators, round-1 ballots are history
    anchor_updates(csc, owner, keys[2:], round_=2)
    assert csc.functions.updateAuthors(2).call() == addr[2:]
    send(
        csc.functions.submitBallots(2, [signed_ballot(binding, 2, keys[0], addr[3:], [9, 8])]),
        owner,
    )
    assert csc.functions.evaluatorsOf(2).call() == [addr[0]]
    assert csc.functions.totalsOf(2).call() == [addr[2:], [0, 2, 1]]
    assert csc.functions.totalsOf(1).call() == [addr[:3], [0, 1, 2]]
    with reverts("WrongRound", round=1, expected=2):
        csc.functions.submitBallots(
            1, [signed_ballot(binding, 1, keys[1], addr[2:3], [1])]
        ).transact({"from": owner})


# ------------------------------------------------------------------------ gas


def test_gas_one_round_of_100_participants_fits_blocks(w3, owner):
    n = 100
    m = math.ceil(0.2 * n)
    chunk = BALLOT_CHUNK  # what the library sends per submitBallots transaction
    accounts = make_keys(n, "gas")
    addr = [a.address for a in accounts]
    csc = deploy(w3, owner, RUN_ID, addr, m)
    binding = binding_of(w3, csc)
    rng = random.Random(0)
    gas = {}

    gas["anchor 100 updates"] = anchor_updates(csc, owner, accounts).gasUsed
    ballots = []
    for i, ev in enumerate(accounts):
        peers = [a for j, a in enumerate(addr) if j != i]
        rng.shuffle(peers)
        scores = [rng.randrange(MAX_SCORE + 1) for _ in peers]
        ballots.append(signed_ballot(binding, 1, ev, peers, scores))

    one = send(csc.functions.submitBallots(1, ballots[:1]), owner, gas=BLOCK_GAS_LIMIT)
    gas["1 ballot (99 peers)"] = one.gasUsed
    chunk_gas = []
    for start in range(1, n, chunk):
        receipt = send(
            csc.functions.submitBallots(1, ballots[start : start + chunk]),
            owner,
            gas=BLOCK_GAS_LIMIT,
        )
        chunk_gas.append(receipt.gasUsed)
    gas[f"max chunk of {chunk} ballots"] = max(chunk_gas)
    gas["per ballot in full chunk"] = chunk_gas[0] // chunk
    gas["all 100 ballots"] = one.gasUsed + sum(chunk_gas)
    gas["elect"] = send(csc.functions.elect(1), owner, gas=BLOCK_GAS_LIMIT).gasUsed
    print(f"\nCSC gas, n={n}, M={m}:")
    for label, value in gas.items():
        print(f"  {label:>28}: {value:>11,}")

    assert csc.functions.ballotCount(1).call() == n
    for value in [gas["anchor 100 updates"], *chunk_gas, gas["elect"]]:
        assert value < BLOCK_GAS_LIMIT
        assert value < EIP7825_TX_GAS_CAP
    assert gas["1 ballot (99 peers)"] < 1_000_000
    # the tally matches the oracle at this size too
    table = {
        i: dict(zip((addr.index(p) for p in b[1]), b[2], strict=True))
        for i, b in enumerate(ballots)
    }
    expected, _ = borda.elect(list(range(n)), table, m)
    assert csc.functions.candidatesOf(1).call() == [addr[i] for i in expected]

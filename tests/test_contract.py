"""Behaviour of the CandidateSelection contract on the embedded EVM (eth-tester)."""

import math

import pytest
from eth_abi import encode
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3

from seccl_flwr.chain import gas
from seccl_flwr.protocol import borda
from seccl_flwr.protocol.eip712 import (
    MAX_SCORE,
    Kind,
    RunBinding,
    ballot_typed_data,
    join_hash,
    message_typed_data,
    sign_digest,
    sign_join,
    typed_digest,
)
from seccl_flwr.protocol.params import RunParams, roster_digest
from tests.conftest_contract import (
    ARTIFACT,
    binding_of,
    create,
    decode_revert,
    deploy,
    digest,
    join_signatures,
    make_keys,
    reverts,
    send,
    signed_ballot,
    table_of,
)
from tests.gas_measure import measure_round

RUN_ID = keccak(text="test-run")
N = 5
M = 2
BLOCK_GAS_LIMIT = 30_000_000
EIP7825_TX_GAS_CAP = 2**24  # per-transaction cap from Osaka on
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


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
    return deploy(w3, owner, RUN_ID, keys, M)


@pytest.fixture
def binding(w3, csc):
    return binding_of(w3, csc)


def anchor_updates(csc, owner, accounts, round_=1):
    authors = [a.address for a in accounts]
    digests = [digest(f"update/{round_}/{a}") for a in authors]
    return send(csc.functions.anchor(round_, Kind.UPDATE, authors, digests), owner)


def complete_ballot(csc, binding, account, round_=1, score=lambda peer: 1):
    """A ballot of ``account`` scoring every other update author of the round."""
    peers = [a for a in csc.functions.updateAuthors(round_).call() if a != account.address]
    return signed_ballot(binding, round_, account, peers, [score(p) for p in peers])


def complete_round(csc, owner, binding, voter, round_):
    send(csc.functions.submitBallots(round_, [complete_ballot(csc, binding, voter, round_)]), owner)
    send(csc.functions.elect(round_), owner)
    send(
        csc.functions.anchor(round_, Kind.GLOBAL_MODEL, [owner], [digest(f"g{round_}")]),
        owner,
    )


def tie_hash(seed: bytes, address: str) -> bytes:
    """``keccak256(abi.encode(seed, address))``, written out from the rule."""
    return keccak(encode(["bytes32", "address"], [seed, address]))


# ------------------------------------------------------------------- opening


def test_opening_fixes_roster_and_params(w3, owner, keys):
    addrs = [k.address for k in keys]
    params = RunParams(num_candidates=M, quorum=3, share_fraction_ppm=250_000, per_tensor=True)
    csc = create(w3, owner, RUN_ID, params)
    deployed_at = w3.eth.block_number
    assert csc.functions.openingBlock().call() == deployed_at
    assert not csc.functions.isOpen().call()
    assert csc.functions.rosterDigest().call() == b"\0" * 32
    assert RunParams.from_tuple(csc.functions.params().call()) == params
    signatures = join_signatures(RUN_ID, w3.eth.chain_id, keys)
    send(csc.functions.register(addrs[:2], signatures[:2]), owner)
    send(csc.functions.register(addrs[2:], signatures[2:]), owner)  # a second batch appends
    receipt = send(csc.functions.open(), owner)

    assert csc.functions.isOpen().call()
    assert csc.functions.owner().call() == owner
    assert csc.functions.runId().call() == RUN_ID
    assert csc.functions.participants().call() == addrs
    expected_digest = keccak(b"".join(encode(["address"], [a]) for a in addrs))
    assert csc.functions.rosterDigest().call() == expected_digest == roster_digest(addrs)
    for i, a in enumerate(addrs):
        assert csc.functions.participantIndex(a).call() == i
        assert csc.functions.isParticipant(a).call()
    assert not csc.functions.isParticipant(owner).call()
    with reverts("UnknownParticipant", account=owner):
        csc.functions.participantIndex(owner).call()
    assert csc.functions.currentRound().call() == 1
    assert csc.functions.lastCompletedRound().call() == 0

    registered = csc.events.Registered().get_logs(from_block=deployed_at)
    assert [(e.args.participant, e.args.index) for e in registered] == list(
        zip(addrs, range(N), strict=True)
    )
    (event,) = csc.events.RunOpened().process_receipt(receipt)
    assert event.args.runId == RUN_ID
    assert event.args.owner == owner
    assert event.args.chainId == w3.eth.chain_id
    assert event.args.rosterDigest == expected_digest
    assert event.args.numParticipants == N
    assert RunParams.from_tuple(event.args.params.values()) == params
    # the parameters never change
    assert RunParams.from_tuple(csc.functions.params().call()) == params


def test_opening_block_starts_every_log_query(w3, owner, keys):
    w3.provider.make_request("evm_mine", [])  # the deployment is not in block 0 or 1
    csc = deploy(w3, owner, RUN_ID, keys, M)
    start = csc.functions.openingBlock().call()
    assert start > 1
    assert w3.eth.get_code(csc.address, block_identifier=start - 1) == b""
    assert w3.eth.get_code(csc.address, block_identifier=start) != b""
    assert len(csc.events.Registered().get_logs(from_block=start)) == N


def test_runtime_code_is_the_artifact_for_every_run(w3, owner, keys):
    a = deploy(w3, owner, keccak(text="a"), keys[:1], 1)
    b = deploy(w3, owner, keccak(text="b"), keys, 3, quorum=4, per_tensor=True)
    expected = bytes.fromhex(ARTIFACT["deployedBytecode"][2:])
    assert bytes(w3.eth.get_code(a.address)) == expected
    assert bytes(w3.eth.get_code(b.address)) == expected


@pytest.mark.parametrize(
    ("params", "error", "args"),
    [
        ((0, 1, 1, False, 0), "InvalidCandidateCount", {"numCandidates": 0}),
        ((257, 1, 1, False, 0), "InvalidCandidateCount", {"numCandidates": 257}),
        ((1, 0, 1, False, 0), "InvalidQuorum", {"quorum": 0, "numParticipants": 256}),
        ((1, 257, 1, False, 0), "InvalidQuorum", {"quorum": 257}),
        ((1, 1, 0, False, 0), "InvalidShareFraction", {"shareFractionPpm": 0}),
        ((1, 1, 1_000_001, False, 0), "InvalidShareFraction", {"shareFractionPpm": 1_000_001}),
        ((1, 1, 1, False, 3), "UnsupportedElectionRule", {"electionRule": 3}),  # 2: rank-median
        ((1, 1, 1, True, 255), "UnsupportedElectionRule", {"electionRule": 255}),
    ],
)
def test_constructor_rejects_bad_params(w3, owner, params, error, args):
    with reverts(error, **args):
        create(w3, owner, RUN_ID, RunParams(*params))


def test_constructor_accepts_the_bounds(w3, owner):
    for params in [(1, 1, 1, False, 0, 0), (256, 256, 1_000_000, True, 0, 255)]:
        csc = create(w3, owner, RUN_ID, RunParams(*params))
        assert csc.functions.params().call() == params


@pytest.mark.parametrize(
    ("count", "m", "quorum", "error", "args"),
    [
        (0, 1, 1, "InvalidParticipantCount", {"count": 0}),
        (3, 4, 1, "InvalidCandidateCount", {"numCandidates": 4, "numParticipants": 3}),
        (3, 1, 4, "InvalidQuorum", {"quorum": 4, "numParticipants": 3}),
    ],
)
def test_open_checks_sizes_against_the_roster(w3, owner, keys, count, m, quorum, error, args):
    csc = deploy(w3, owner, RUN_ID, keys[:count], m, quorum=quorum, open_run=False)
    with reverts(error, **args):
        csc.functions.open().transact({"from": owner})
    assert not csc.functions.isOpen().call()


def test_registration_accepts_256_participants_and_m_equal_n(w3, owner):
    accounts = make_keys(256, "big")
    csc = deploy(w3, owner, RUN_ID, accounts, 256, quorum=256, batch=128)
    assert csc.functions.participantIndex(accounts[255].address).call() == 255
    assert csc.functions.rosterDigest().call() == roster_digest([a.address for a in accounts])
    one_more = make_keys(257, "big")[256]
    late = create(w3, owner, RUN_ID, RunParams(1, 1, 1, False))
    signatures = join_signatures(RUN_ID, w3.eth.chain_id, [*accounts, one_more])
    addresses = [a.address for a in [*accounts, one_more]]
    send(late.functions.register(addresses[:200], signatures[:200]), owner)
    with reverts("InvalidParticipantCount", count=257):
        late.functions.register(addresses[200:], signatures[200:]).transact({"from": owner})


def test_register_rejects_zero_duplicate_and_malformed_batches(w3, owner, keys):
    csc = deploy(w3, owner, RUN_ID, keys[:2], 1, open_run=False)
    chain_id = w3.eth.chain_id
    sigs = join_signatures(RUN_ID, chain_id, keys)
    a = [k.address for k in keys]
    zero = "0x" + "00" * 20

    def register(addresses, signatures):
        return csc.functions.register(addresses, signatures).transact({"from": owner})

    with reverts("ZeroAddressParticipant"):
        register([a[2], zero], [sigs[2], b"\0" * 65])
    with reverts("DuplicateParticipant", participant=a[1]):
        register([a[2], a[1]], [sigs[2], sigs[1]])  # across batches
    with reverts("DuplicateParticipant", participant=a[3]):
        register([a[3], a[3]], [sigs[3], sigs[3]])  # within a batch
    with reverts("LengthMismatch", a=2, b=1):
        register(a[2:4], sigs[2:3])
    with reverts("EmptyBatch"):
        register([], [])
    assert csc.functions.participants().call() == a[:2]


def test_register_requires_each_participants_join_signature(w3, owner, keys):
    csc = deploy(w3, owner, RUN_ID, keys[:1], 1, open_run=False)
    chain_id = w3.eth.chain_id
    victim, sybil_key = keys[1], keys[2]
    zero = "0x" + "00" * 20

    def register(signature):
        return csc.functions.register([victim.address], [signature]).transact({"from": owner})

    # joined by another key (the server registering an address it cannot sign for)
    with reverts("InvalidJoinSignature", participant=victim.address, recovered=sybil_key.address):
        register(sign_digest(sybil_key.key, join_hash(RUN_ID, chain_id, victim.address)))
    # the victim's consent to another run or another chain does not carry over
    for other_run, other_chain in [(keccak(text="other run"), chain_id), (RUN_ID, chain_id + 1)]:
        with pytest.raises(Exception) as info:  # noqa: B017 - decoded below
            register(sign_join(victim.key, other_run, other_chain))
        name, args = decode_revert(info.value)
        assert name == "InvalidJoinSignature"
        assert args["participant"] == victim.address
        assert args["recovered"] not in (victim.address, zero)
    # malformed: wrong length, bad v, high s
    good = sign_join(victim.key, RUN_ID, chain_id)
    s = int.from_bytes(good[32:64], "big")
    high_s = good[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - good[64]])
    for bad in (good[:64], good + b"\0", good[:64] + b"\x01", high_s):
        with reverts("InvalidJoinSignature", participant=victim.address, recovered=zero):
            register(bad)
    send(csc.functions.register([victim.address], [good]), owner)
    assert csc.functions.participants().call() == [keys[0].address, victim.address]


def test_join_signature_is_what_the_python_side_signs(w3, csc, keys):
    assert csc.functions.hashJoin(keys[3].address).call() == join_hash(
        RUN_ID, w3.eth.chain_id, keys[3].address
    )
    expected_domain = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256"],
            [
                keccak(text="EIP712Domain(string name,string version,uint256 chainId)"),
                keccak(text="SecCL"),
                keccak(text="1"),
                w3.eth.chain_id,
            ],
        )
    )
    assert csc.functions.joinDomainSeparator().call() == expected_domain


def test_register_and_open_only_before_opening(csc, owner, keys, w3):
    extra = make_keys(1, "late")[0]
    signature = sign_join(extra.key, RUN_ID, w3.eth.chain_id)
    with reverts("RunAlreadyOpen"):
        csc.functions.register([extra.address], [signature]).transact({"from": owner})
    with reverts("RunAlreadyOpen"):
        csc.functions.open().transact({"from": owner})
    assert csc.functions.participants().call() == [k.address for k in keys]


def test_round_functions_revert_before_open(w3, owner, keys, stranger):
    csc = deploy(w3, owner, RUN_ID, keys, M, open_run=False)
    binding = binding_of(w3, csc)
    a = keys[0].address
    with reverts("RunNotOpen"):
        csc.functions.anchor(0, Kind.GLOBAL_MODEL, [owner], [digest("g0")]).transact(
            {"from": owner}
        )
    with reverts("RunNotOpen"):
        csc.functions.anchor(1, Kind.UPDATE, [a], [digest("u")]).transact({"from": owner})
    ballot = signed_ballot(binding, 1, keys[1], [a], [1])
    with reverts("RunNotOpen"):
        csc.functions.submitBallots(1, [ballot]).transact({"from": owner})
    with reverts("RunNotOpen"):
        csc.functions.elect(1).transact({"from": owner})
    with reverts("NotOwner", caller=stranger):
        csc.functions.register([a], [b"\0" * 65]).transact({"from": stranger})
    with reverts("NotOwner", caller=stranger):
        csc.functions.open().transact({"from": stranger})


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
    other = deploy(w3, owner, RUN_ID, keys, M)
    other_binding = binding_of(w3, other)
    anchor_updates(other, owner, keys[:2])
    send(other.functions.submitBallots(1, [complete_ballot(other, other_binding, keys[0])]), owner)
    send(other.functions.elect(1), owner)
    with reverts("UpdatesSealed", round=1):
        other.functions.anchor(1, Kind.UPDATE, [keys[2].address], [digest("late")]).transact(
            {"from": owner}
        )


def test_global_model_anchoring_rules(csc, owner, keys, binding):
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
    send(csc.functions.submitBallots(1, [complete_ballot(csc, binding, keys[1])]), owner)
    send(csc.functions.elect(1), owner)
    assert csc.functions.currentRound().call() == 1
    send(csc.functions.anchor(1, Kind.GLOBAL_MODEL, [owner], [digest("g1")]), owner)
    assert csc.functions.lastCompletedRound().call() == 1
    assert csc.functions.currentRound().call() == 2
    with reverts("WrongRound", round=1, expected=2):
        csc.functions.anchor(1, Kind.GLOBAL_MODEL, [owner], [digest("g1b")]).transact(
            {"from": owner}
        )


def test_initial_global_model_only_before_first_completed_round(csc, owner, keys, binding):
    anchor_updates(csc, owner, keys[:1])
    complete_round(csc, owner, binding, keys[1], 1)
    with reverts("WrongRound", round=0, expected=2):
        csc.functions.anchor(0, Kind.GLOBAL_MODEL, [owner], [digest("g0")]).transact(
            {"from": owner}
        )


def test_evaluation_anchoring_rules(csc, owner, keys, binding):
    a = keys[0].address
    with reverts("WrongRound", round=1, expected=0):
        csc.functions.anchor(1, Kind.EVALUATION, [a], [digest("e1")]).transact({"from": owner})
    anchor_updates(csc, owner, keys[:2])
    complete_round(csc, owner, binding, keys[0], 1)
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
    send(csc.functions.submitBallots(1, [ballot]), owner)
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
    k0, k1, k2, k3, k4 = keys[0], keys[1].address, keys[2].address, keys[3].address, keys[4]

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
    with reverts("NotAnAuthor", round=1, peer=k4.address):
        submit(signed_ballot(binding, 1, k0, [k1, k4.address], [1, 2]))
    with reverts("DuplicatePeer", peer=k1):
        submit(signed_ballot(binding, 1, k0, [k1, k2, k1], [1, 2, 3]))
    with reverts("ScoreOutOfRange", score=MAX_SCORE + 1):
        submit(signed_ballot(binding, 1, k0, [k1, k2, k3], [MAX_SCORE, MAX_SCORE + 1, 0]))
    assert csc.functions.ballotCount(1).call() == 0
    # the bounds themselves are fine, and a non-author evaluator may vote on all authors
    send(
        csc.functions.submitBallots(
            1,
            [
                signed_ballot(binding, 1, k0, [k3, k1, k2], [MAX_SCORE, 0, 5]),
                signed_ballot(binding, 1, k4, [k1, keys[0].address, k3, k2], [3, 2, 1, 0]),
            ],
        ),
        owner,
    )
    assert csc.functions.ballotCount(1).call() == 2


def test_ballots_must_score_every_other_author(open_round, owner, keys, binding):
    csc = open_round  # authors: participants 0..3
    a = [k.address for k in keys]
    cases = [
        (keys[0], a[1:3], 2, 3),  # an author's ballot lacks one peer
        (keys[0], [], 0, 3),
        (keys[4], a[:3], 3, 4),  # a non-author evaluator must score all four authors
    ]
    for evaluator, peers, count, expected in cases:
        ballot = signed_ballot(binding, 1, evaluator, peers, [7] * len(peers))
        with reverts(
            "IncompleteBallot", round=1, evaluator=evaluator.address, peers=count, expected=expected
        ):
            csc.functions.submitBallots(1, [ballot]).transact({"from": owner})
    assert csc.functions.ballotCount(1).call() == 0
    # a one-author round: the author's only complete ballot is empty
    single = deploy(csc.w3, owner, RUN_ID, keys, M)
    anchor_updates(single, owner, keys[:1])
    send(
        single.functions.submitBallots(
            1, [complete_ballot(single, binding_of(csc.w3, single), keys[0])]
        ),
        owner,
    )
    assert single.functions.ballotCount(1).call() == 1


def test_duplicate_ballots_rejected_within_and_across_calls(open_round, owner, keys, binding):
    csc = open_round
    b = complete_ballot(csc, binding, keys[0])
    b2 = complete_ballot(csc, binding, keys[0], score=lambda peer: 2)
    with reverts("DuplicateBallot", round=1, evaluator=keys[0].address):
        csc.functions.submitBallots(1, [b, b2]).transact({"from": owner})
    send(csc.functions.submitBallots(1, [b]), owner)
    with reverts("DuplicateBallot", round=1, evaluator=keys[0].address):
        csc.functions.submitBallots(1, [b2]).transact({"from": owner})


def test_one_bad_ballot_reverts_the_whole_call(open_round, owner, keys, binding):
    csc = open_round
    good = complete_ballot(csc, binding, keys[0])
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


def test_signature_forgery_and_malformed_signatures(open_round, owner, keys, binding):
    csc = open_round
    ev, peers = keys[0], [keys[1].address, keys[2].address, keys[3].address]
    good = signed_ballot(binding, 1, ev, peers, [10, 20, 30])
    sig = good[3]
    # tampered content: the signature recovers to some unrelated address
    tampered = (ev.address, peers, [20, 10, 30], sig)
    recovered = _invalid_signature(csc, owner, tampered, ev.address)
    assert recovered not in {k.address for k in keys} | {"0x" + "00" * 20}
    # signed by another participant
    forged = signed_ballot(binding, 1, ev, peers, [10, 20, 30], key=keys[3])
    assert _invalid_signature(csc, owner, forged, ev.address) == keys[3].address
    zero = "0x0000000000000000000000000000000000000000"
    # malformed: wrong length, high-s (malleated twin), bad v
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    high_s = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    for bad in (sig[:64], sig + b"\0", b"", high_s, sig[:64] + b"\x00", sig[:64] + b"\x01"):
        ballot = (ev.address, peers, [10, 20, 30], bad)
        assert _invalid_signature(csc, owner, ballot, ev.address) == zero
    send(csc.functions.submitBallots(1, [good]), owner)


def test_replayed_ballots_are_rejected(w3, open_round, owner, keys, binding):
    csc = open_round
    ev, peers, scores = keys[0], [k.address for k in keys[1:4]], [7, 8, 9]
    other = deploy(w3, owner, RUN_ID, keys, M)
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
    # participant index -> {peer index: score}; authors are 0..3, M = 2; no ties
    scores = {
        0: {1: 900, 2: 500, 3: 800},  # 1: 2 points, 3: 1
        1: {0: 100, 2: 800, 3: 700},  # 2: 2, 3: 1
        2: {0: 300, 1: 200, 3: 100},  # 0: 2, 1: 1
        4: {0: 10, 1: 20, 2: 30, 3: 40},  # 3: 2, 2: 1
    }
    ballots = [
        signed_ballot(binding, 1, keys[ev], [addr[p] for p in row], list(row.values()))
        for ev, row in scores.items()
    ]
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

    authors, points = csc.functions.totalsOf(1).call()
    assert authors == addr[:4]
    # hand-checked: totals 0: 2, 1: 3, 2: 3, 3: 4 -> 3 first, then 1 or 2 (tie order)
    assert points == [2, 3, 3, 4]
    updates = {a: csc.functions.anchorOf(1, Kind.UPDATE, a).call() for a in authors}
    expected_candidates, expected_totals = borda.elect(updates, table_of(ballots), M, 1)
    assert expected_totals == dict(zip(authors, points, strict=True))

    receipt = send(csc.functions.elect(1), owner)
    (event,) = csc.events.Elected().process_receipt(receipt)
    assert event.args.round == 1
    assert event.args.candidates == expected_candidates
    assert event.args.candidates[0] == addr[3]
    assert event.args.totals == [4, 3]
    assert csc.functions.isElected(1).call()
    assert csc.functions.candidatesOf(1).call() == expected_candidates
    with reverts("AlreadyElected", round=1):
        csc.functions.elect(1).transact({"from": owner})


def tie_run(w3, owner, label, n, m, authors):
    """A run of ``n`` participants whose first ``authors`` anchored an update in round 1."""
    accounts = make_keys(n, label)
    addr = [a.address for a in accounts]
    csc = deploy(w3, owner, RUN_ID, accounts, m)
    digests = [digest(f"{label}/{a}") for a in addr[:authors]]
    send(csc.functions.anchor(1, Kind.UPDATE, addr[:authors], digests), owner)
    return accounts, addr, csc, binding_of(w3, csc), digests


def test_ties_follow_the_seed_order_in_ballots_and_election(w3, owner):
    accounts, addr, csc, binding, digests = tie_run(w3, owner, "ties", 12, 4, 12)
    seed = bytes(32)
    for d in digests:
        seed = bytes(x ^ y for x, y in zip(seed, d, strict=True))
    assert csc.functions.roundSeed(1).call() == seed
    order = sorted(addr, key=lambda a: tie_hash(seed, a))
    assert order != addr  # the registration order does not decide

    # evaluator 0 gives every peer the same score: its top 4 in the tie order get 4..1
    voter = accounts[0]
    peers = [a for a in addr if a != voter.address]
    send(csc.functions.submitBallots(1, [signed_ballot(binding, 1, voter, peers, [5] * 11)]), owner)
    top = [a for a in order if a != voter.address][:4]
    _, points = csc.functions.totalsOf(1).call()
    assert {a: p for a, p in zip(addr, points, strict=True) if p} == dict(
        zip(top, [4, 3, 2, 1], strict=True)
    )
    assert (
        borda.elect(
            dict(zip(addr, digests, strict=True)),
            table_of([(voter.address, peers, [5] * 11)]),
            4,
            1,
        )[0]
        == top
    )

    receipt = send(csc.functions.elect(1), owner)
    (event,) = csc.events.Elected().process_receipt(receipt)
    assert event.args.candidates == top
    assert event.args.totals == [4, 3, 2, 1]


def test_election_ties_at_the_cut_follow_the_seed_order(w3, owner):
    accounts, addr, csc, binding, _ = tie_run(w3, owner, "cut", 6, 2, 5)
    seed = csc.functions.roundSeed(1).call()
    # participant 5 (no update) ranks 0 and 1 first, 2 and 3 next: totals 0: 2, 1: 1,
    # 2: 2, 3: 1 -> a tie of 2 at the cut between 0 and 2
    ballot = signed_ballot(binding, 1, accounts[5], addr[:5], [9, 5, 0, 0, 0])
    ballot2 = signed_ballot(binding, 1, accounts[4], addr[:4], [0, 0, 9, 5])
    send(csc.functions.submitBallots(1, [ballot, ballot2]), owner)
    assert csc.functions.totalsOf(1).call()[1] == [2, 1, 2, 1, 0]
    winner_of_tie = min(addr[0], addr[2], key=lambda a: tie_hash(seed, a))
    second = addr[2] if winner_of_tie == addr[0] else addr[0]
    send(csc.functions.elect(1), owner)
    assert csc.functions.candidatesOf(1).call() == [winner_of_tie, second]


def test_election_needs_the_quorum(w3, owner, keys):
    csc = deploy(w3, owner, RUN_ID, keys, M, quorum=2)
    binding = binding_of(w3, csc)
    anchor_updates(csc, owner, keys[:3])
    with reverts("QuorumNotReached", round=1, ballots=0, quorum=2):
        csc.functions.elect(1).transact({"from": owner})
    send(csc.functions.submitBallots(1, [complete_ballot(csc, binding, keys[0])]), owner)
    with reverts("QuorumNotReached", round=1, ballots=1, quorum=2):
        csc.functions.elect(1).transact({"from": owner})
    send(csc.functions.submitBallots(1, [complete_ballot(csc, binding, keys[3])]), owner)
    send(csc.functions.elect(1), owner)
    assert csc.functions.isElected(1).call()


def test_fewer_authors_than_candidates_and_short_ballots(w3, owner, keys):
    csc = deploy(w3, owner, RUN_ID, keys, 4)
    binding = binding_of(w3, csc)
    anchor_updates(csc, owner, [keys[1], keys[0]])
    ballots = [
        signed_ballot(binding, 1, keys[2], [keys[0].address, keys[1].address], [5, 3]),  # k=2 < M
        signed_ballot(binding, 1, keys[0], [keys[1].address], [0]),  # its only peer
    ]
    send(csc.functions.submitBallots(1, ballots), owner)
    send(csc.functions.elect(1), owner)
    # keys[0]: 4; keys[1]: 3 + 4 = 7
    assert csc.functions.candidatesOf(1).call() == [keys[1].address, keys[0].address]
    assert csc.functions.totalsOf(1).call() == [[keys[1].address, keys[0].address], [7, 4]]


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
    send(csc.functions.elect(1), owner)
    send(csc.functions.anchor(1, Kind.GLOBAL_MODEL, [owner], [digest("g1")]), owner)
    assert csc.functions.candidatesOf(1).call() == [addr[2], addr[1]]
    # round 2: other authors, fresh totals, seed and evaluators; round-1 ballots are history
    anchor_updates(csc, owner, keys[2:], round_=2)
    assert csc.functions.updateAuthors(2).call() == addr[2:]
    assert csc.functions.roundSeed(2).call() != csc.functions.roundSeed(1).call()
    send(
        csc.functions.submitBallots(2, [signed_ballot(binding, 2, keys[0], addr[2:], [7, 9, 8])]),
        owner,
    )
    assert csc.functions.evaluatorsOf(2).call() == [addr[0]]
    assert csc.functions.totalsOf(2).call() == [addr[2:], [0, 2, 1]]
    assert csc.functions.totalsOf(1).call() == [addr[:3], [0, 1, 2]]
    with reverts("WrongRound", round=1, expected=2):
        csc.functions.submitBallots(
            1, [signed_ballot(binding, 1, keys[1], [addr[0], addr[2]], [1, 1])]
        ).transact({"from": owner})


# ------------------------------------------------------------------------ gas


@pytest.mark.parametrize(("n", "fraction"), [(20, 0.4), (50, 0.4), (50, 1.0), (100, 0.4)])
def test_gas_of_a_round_in_model_sized_batches(w3, owner, n, fraction):
    """Every transaction of an opening and a round, in the batches seccl_flwr.chain.gas
    sizes, stays under the EIP-7825 cap and under the model's estimate."""
    m = math.ceil(fraction * n)
    sizes = {
        "register": gas.register_batch_size(),
        "anchor": gas.anchor_batch_size(Kind.UPDATE),
        "ballots": gas.ballot_batch_size(n - 1, m),
    }
    r = measure_round(
        w3,
        owner,
        n,
        m,
        register_batch=sizes["register"],
        anchor_batch=sizes["anchor"],
        ballot_batches=sizes["ballots"],
        gas=BLOCK_GAS_LIMIT,  # skip estimation: py-evm is slow at it
    )
    assert r.contract.functions.ballotCount(1).call() == n
    for b, g in r.register:
        assert g <= gas.register_gas(b)
    for b, g in r.anchor:
        assert g <= gas.anchor_gas(b, Kind.UPDATE)
    for b, g in r.evaluation:
        assert g <= gas.anchor_gas(b, Kind.EVALUATION)
    for b, k, mm, g in r.ballots:
        assert g <= gas.ballot_batch_gas(b, k, mm)
    assert r.elect < gas.ELECT_GAS_AT_256
    assert max(r.all_gas()) < gas.DEFAULT_BUDGET < EIP7825_TX_GAS_CAP
    ballots = [g for *_, g in r.ballots]
    print(
        f"\nCSC gas, n={n}, M={m} (batches {sizes}): register {[g for _, g in r.register]}, "
        f"open {r.open:,}, anchor {[g for _, g in r.anchor]}, {len(ballots)} ballot "
        f"batches (largest {max(ballots):,}, per ballot {sum(ballots) // n:,}), "
        f"elect {r.elect:,}, evaluation anchors {[g for _, g in r.evaluation]}"
    )


def test_open_refuses_a_median_run_above_its_participant_limit(w3, owner):
    """The median rule's election must fit a transaction: at most 104 participants."""
    accounts = make_keys(105, "median-limit")
    csc = deploy(
        w3, owner, keccak(text="limit"), accounts, 1, election_rule=1, batch=60, open_run=False
    )
    with reverts("TooManyParticipantsForRule", electionRule=1, numParticipants=105, maximum=104):
        csc.functions.open().call({"from": owner})

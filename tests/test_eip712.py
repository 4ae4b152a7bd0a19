"""EIP-712 typed data of SecCL: digests, signing, verification and replay protection."""

import dataclasses

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.constants import SECPK1_N
from eth_utils import keccak, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from seccl_flwr.protocol.eip712 import (
    Kind,
    RunBinding,
    SignatureError,
    address_bytes,
    address_of_key,
    ballot_hash,
    ballot_typed_data,
    join_hash,
    join_typed_data,
    message_hash,
    message_typed_data,
    recover_digest,
    recover_typed,
    run_id_from_label,
    sign_join,
    sign_typed,
    typed_digest,
    verify_digest,
    verify_join,
    verify_typed,
)

ALICE = Account.from_key(b"\x01" * 32)
BOB = Account.from_key(b"\x02" * 32)
CAROL = Account.from_key(b"\x03" * 32)
CONTRACT = "0x" + "5a" * 20
BINDING = RunBinding(chain_id=31337, contract=CONTRACT, run_id=run_id_from_label("test-run"))
PAYLOAD = keccak(b"payload")


def message(binding=BINDING, round_=3, kind=Kind.UPDATE, author=ALICE.address, payload=PAYLOAD):
    return message_typed_data(binding, round_, kind, author, payload)


def ballot(binding=BINDING, round_=3, evaluator=ALICE.address, peers=None, scores=(900_000, 7)):
    peers = [BOB.address, CAROL.address] if peers is None else peers
    return ballot_typed_data(binding, round_, evaluator, peers, scores)


# ------------------------------------------------------------------- round trips
@pytest.mark.parametrize("make", [message, ballot], ids=["Message", "Ballot"])
def test_sign_verify_round_trip(make):
    typed = make()
    signature = sign_typed(ALICE.key, typed)
    assert isinstance(signature, bytes) and len(signature) == 65
    assert recover_typed(typed, signature) == ALICE.address
    assert recover_digest(typed_digest(typed), signature) == bytes.fromhex(ALICE.address[2:])
    verify_typed(typed, signature, ALICE.address)
    verify_typed(typed, signature, ALICE.address.lower())  # any address spelling
    verify_digest(typed_digest(typed), signature, ALICE.address.lower())


@pytest.mark.parametrize("make", [message, ballot], ids=["Message", "Ballot"])
def test_wrong_signer_is_rejected(make):
    typed = make()
    with pytest.raises(
        SignatureError, match=f"recovers to {BOB.address}, expected {ALICE.address}"
    ):
        verify_typed(typed, sign_typed(BOB.key, typed), ALICE.address)
    with pytest.raises(SignatureError, match="recovers to"):
        verify_digest(typed_digest(typed), sign_typed(BOB.key, typed), ALICE.address)


def test_signing_is_deterministic():
    assert sign_typed(ALICE.key, message()) == sign_typed(ALICE.key, message())


# ----------------------------------------------------------------------- replays
OTHER_BINDINGS = {
    "run_id": dataclasses.replace(BINDING, run_id=run_id_from_label("other-run")),
    "contract": dataclasses.replace(BINDING, contract="0x" + "5b" * 20),
    "chain_id": dataclasses.replace(BINDING, chain_id=1),
}


@pytest.mark.parametrize(
    "replayed",
    [
        message(round_=4),
        message(round_=0),
        message(kind=Kind.EVALUATION),
        message(kind=Kind.GLOBAL_MODEL),
        message(author=BOB.address),
        message(payload=keccak(b"other payload")),
        *(message(binding=b) for b in OTHER_BINDINGS.values()),
    ],
    ids=[
        "round+1",
        "round0",
        "kind-eval",
        "kind-global",
        "author",
        "payload",
        *OTHER_BINDINGS,
    ],
)
def test_message_signature_does_not_verify_in_another_context(replayed):
    signature = sign_typed(ALICE.key, message())
    assert typed_digest(replayed) != typed_digest(message())
    with pytest.raises(SignatureError):
        verify_typed(replayed, signature, ALICE.address)


@pytest.mark.parametrize(
    "replayed",
    [
        ballot(round_=4),
        ballot(evaluator=BOB.address),
        ballot(scores=(900_000, 8)),
        ballot(peers=[CAROL.address, BOB.address]),
        ballot(peers=[BOB.address], scores=(900_000,)),
        *(ballot(binding=b) for b in OTHER_BINDINGS.values()),
    ],
    ids=["round", "evaluator", "scores", "peer-order", "fewer-peers", *OTHER_BINDINGS],
)
def test_ballot_signature_does_not_verify_in_another_context(replayed):
    signature = sign_typed(ALICE.key, ballot())
    with pytest.raises(SignatureError):
        verify_typed(replayed, signature, ALICE.address)


def test_message_and_ballot_digests_differ_for_same_fields():
    assert typed_digest(message(kind=Kind.BALLOT)) != typed_digest(ballot(peers=[], scores=[]))


# ------------------------------------------------------------ malformed signatures
def _signature() -> bytes:
    return sign_typed(ALICE.key, message())


def _high_s(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:64], "big")
    return signature[:32] + (SECPK1_N - s).to_bytes(32, "big") + bytes([55 - signature[64]])


@pytest.mark.parametrize(
    "signature",
    [
        b"",
        b"\x00" * 64,
        b"\x00" * 66,
        b"\x00" * 65,
        b"\xff" * 65,
        b"\x01" * 64 + b"\x1b",
        pytest.param(_signature()[:64], id="truncated"),
        pytest.param(_signature() + b"\x00", id="extended"),
        pytest.param(_signature()[:64] + bytes([_signature()[64] - 27]), id="v-0-1"),
        pytest.param(_signature()[:64] + bytes([_signature()[64] + 10]), id="v-37-38"),
        pytest.param(_high_s(_signature()), id="high-s"),
    ],
)
def test_malformed_or_non_canonical_signatures_raise_signature_error(signature):
    with pytest.raises(SignatureError):
        verify_typed(message(), signature, ALICE.address)


def test_high_s_form_is_rejected_although_it_recovers_to_the_signer():
    # The contract rejects s > n/2 with InvalidSignature; off-chain checks must agree,
    # otherwise one evaluator's malleated ballot would make a whole batch revert.
    typed = message()
    malleated = _high_s(sign_typed(ALICE.key, typed))
    assert Account.recover_message(encode_typed_data(full_message=typed), signature=malleated) == (
        ALICE.address
    )
    with pytest.raises(SignatureError, match="high s"):
        recover_typed(typed, malleated)


# -------------------------------------------------------------------- the binding
@pytest.mark.parametrize(
    "run_id", [b"", b"\x00" * 31, b"\x00" * 33, "a" * 32, "0x" + "00" * 32, None, 5]
)
def test_run_binding_requires_a_32_byte_run_id(run_id):
    with pytest.raises(ValueError, match="32 bytes"):
        RunBinding(1, CONTRACT, run_id)


def test_run_binding_normalises_contract_and_run_id():
    binding = RunBinding(1, CONTRACT.lower(), bytearray(32))
    assert binding.contract == to_checksum_address(CONTRACT) != CONTRACT.lower()
    assert type(binding.run_id) is bytes
    assert binding.domain() == {
        "name": "SecCL",
        "version": "1",
        "chainId": 1,
        "verifyingContract": binding.contract,
    }
    with pytest.raises(ValueError):
        RunBinding(1, "0x1234", bytes(32))


def test_run_id_from_label_is_keccak_of_label():
    assert run_id_from_label("abc") == keccak(b"abc")
    assert len(run_id_from_label("")) == 32


# ---------------------------------------------------------------------- digests
@pytest.mark.parametrize("make", [message, ballot], ids=["Message", "Ballot"])
def test_typed_digest_is_what_eth_account_signs(make):
    typed = make()
    signed = Account.sign_message(encode_typed_data(full_message=typed), ALICE.key)
    assert typed_digest(typed) == bytes(signed.message_hash)
    assert len(typed_digest(typed)) == 32


def _domain_separator(binding: RunBinding) -> bytes:
    typehash = keccak(
        b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [typehash, keccak(b"SecCL"), keccak(b"1"), binding.chain_id, binding.contract],
        )
    )


def test_message_digest_matches_the_eip712_definition():
    typehash = keccak(
        b"Message(bytes32 runId,uint32 round,uint8 kind,address author,bytes32 payloadHash)"
    )
    struct_hash = keccak(
        abi_encode(
            ["bytes32", "bytes32", "uint32", "uint8", "address", "bytes32"],
            [typehash, BINDING.run_id, 3, 1, ALICE.address, PAYLOAD],
        )
    )
    expected = keccak(b"\x19\x01" + _domain_separator(BINDING) + struct_hash)
    assert typed_digest(message()) == expected


def test_ballot_digest_matches_the_eip712_definition():
    typehash = keccak(
        b"Ballot(bytes32 runId,uint32 round,address evaluator,address[] peers,uint32[] scores)"
    )
    peers = [BOB.address, CAROL.address]
    scores = [900_000, 7]
    peers_hash = keccak(b"".join(abi_encode(["address"], [p]) for p in peers))
    scores_hash = keccak(b"".join(abi_encode(["uint32"], [s]) for s in scores))
    struct_hash = keccak(
        abi_encode(
            ["bytes32", "bytes32", "uint32", "address", "bytes32", "bytes32"],
            [typehash, BINDING.run_id, 3, ALICE.address, peers_hash, scores_hash],
        )
    )
    expected = keccak(b"\x19\x01" + _domain_separator(BINDING) + struct_hash)
    assert typed_digest(ballot()) == expected


# ------------------------------------- the direct encoder against eth-account's
ADDRESSES = st.binary(min_size=20, max_size=20).map(to_checksum_address)
BINDINGS = st.builds(
    RunBinding,
    chain_id=st.integers(0, 2**256 - 1),
    contract=ADDRESSES,
    run_id=st.binary(min_size=32, max_size=32),
)
KEYS = st.integers(1, SECPK1_N - 1).map(lambda k: k.to_bytes(32, "big"))
RUN_IDS = st.binary(min_size=32, max_size=32)
CHAIN_IDS = st.integers(0, 2**256 - 1)
TYPED = st.one_of(
    st.builds(join_typed_data, RUN_IDS, CHAIN_IDS, ADDRESSES),
    st.builds(
        message_typed_data,
        BINDINGS,
        st.integers(0, 2**32 - 1),
        st.sampled_from(Kind),
        ADDRESSES,
        st.binary(min_size=32, max_size=32),
    ),
    st.builds(
        ballot_typed_data,
        BINDINGS,
        st.integers(0, 2**32 - 1),
        ADDRESSES,
        st.lists(ADDRESSES, max_size=8),
        st.lists(st.integers(0, 2**32 - 1), max_size=8),
    ),
)


@settings(max_examples=150, deadline=None)
@given(TYPED, KEYS)
def test_digest_and_signature_equal_eth_accounts_for_any_typed_data(typed, key):
    """typed_digest/sign_typed/recover_typed are a direct encoder plus coincurve:
    they must give eth-account's digest and signature for every Message, Ballot and Join."""
    signed = Account.sign_message(encode_typed_data(full_message=typed), key)
    assert typed_digest(typed) == bytes(signed.message_hash)
    assert sign_typed(key, typed) == bytes(signed.signature)
    assert recover_typed(typed, bytes(signed.signature)) == Account.from_key(key).address


@settings(max_examples=100, deadline=None)
@given(
    BINDINGS,
    st.integers(0, 2**32 - 1),
    st.sampled_from(Kind),
    ADDRESSES,
    st.binary(min_size=32, max_size=32),
    st.lists(ADDRESSES, max_size=8),
    st.lists(st.integers(0, 2**32 - 1), max_size=8),
    st.booleans(),
)
def test_direct_hashes_equal_the_typed_data_digests(
    binding, round_, kind, address, payload, peers, scores, lower
):
    """message_hash/ballot_hash skip building typed data; any address case binds
    the same 20 bytes."""
    spell = str.lower if lower else str
    assert message_hash(binding, round_, kind, spell(address), payload) == typed_digest(
        message_typed_data(binding, round_, kind, address, payload)
    )
    assert ballot_hash(
        binding, round_, spell(address), [spell(p) for p in peers], scores
    ) == typed_digest(ballot_typed_data(binding, round_, address, peers, scores))


@pytest.mark.parametrize(
    "value", ["0x12", "12" * 21, "0x" + "zz" * 20, b"\x01" * 19, None, 7, "0x" + "ab" * 21]
)
def test_address_bytes_names_what_is_not_an_address(value):
    with pytest.raises(ValueError, match="not an address"):
        address_bytes(value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("round", 2**32),
        ("round", -1),
        ("round", "3"),
        ("kind", 256),
        ("author", "0x12"),
        ("payloadHash", b"short"),
    ],
)
def test_values_that_do_not_fit_their_type_are_rejected(field, value):
    typed = message()
    typed["message"][field] = value
    with pytest.raises(ValueError, match="range|integer|address|32 bytes"):
        typed_digest(typed)


# -------------------------------------------------------------------------- join
def test_join_round_trip_and_what_it_binds():
    run_id = BINDING.run_id
    signature = sign_join(ALICE.key, run_id, 31337)
    verify_join(run_id, 31337, ALICE.address, signature)
    verify_join(run_id, 31337, ALICE.address.lower(), signature)
    assert address_of_key(ALICE.key) == ALICE.address
    assert address_of_key(ALICE.key.hex()) == ALICE.address
    with pytest.raises(SignatureError, match=f"expected {BOB.address}"):
        verify_join(run_id, 31337, BOB.address, signature)  # BOB never joined
    with pytest.raises(SignatureError, match="recovers to"):
        verify_join(run_id_from_label("other-run"), 31337, ALICE.address, signature)
    with pytest.raises(SignatureError, match="recovers to"):
        verify_join(run_id, 1, ALICE.address, signature)
    with pytest.raises(SignatureError, match="65 bytes"):
        verify_join(run_id, 31337, ALICE.address, signature[:64])


def test_join_domain_has_no_verifying_contract():
    typed = join_typed_data(BINDING.run_id, 5, ALICE.address)
    assert typed["domain"] == {"name": "SecCL", "version": "1", "chainId": 5}
    assert [f["name"] for f in typed["types"]["EIP712Domain"]] == ["name", "version", "chainId"]
    assert typed["primaryType"] == "Join"
    assert typed["message"] == {"runId": BINDING.run_id, "participant": ALICE.address}


def test_join_digest_matches_the_eip712_definition():
    domain = keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256"],
            [
                keccak(b"EIP712Domain(string name,string version,uint256 chainId)"),
                keccak(b"SecCL"),
                keccak(b"1"),
                31337,
            ],
        )
    )
    struct_hash = keccak(
        abi_encode(
            ["bytes32", "bytes32", "address"],
            [keccak(b"Join(bytes32 runId,address participant)"), BINDING.run_id, ALICE.address],
        )
    )
    expected = keccak(b"\x19\x01" + domain + struct_hash)
    assert join_hash(BINDING.run_id, 31337, ALICE.address) == expected
    assert typed_digest(join_typed_data(BINDING.run_id, 31337, ALICE.address)) == expected


@settings(max_examples=100, deadline=None)
@given(RUN_IDS, CHAIN_IDS, KEYS, st.booleans())
def test_sign_join_equals_eth_account_typed_data_signing(run_id, chain_id, key, lower):
    """sign_join/join_hash are the direct encoder: eth-account signs the same digest
    with the same signature, and verify_join accepts any spelling of the address."""
    address = Account.from_key(key).address
    typed = join_typed_data(run_id, chain_id, address)
    signed = Account.sign_message(encode_typed_data(full_message=typed), key)
    spell = str.lower if lower else str
    assert join_hash(run_id, chain_id, spell(address)) == bytes(signed.message_hash)
    assert sign_join(key, run_id, chain_id) == bytes(signed.signature)
    verify_join(run_id, chain_id, spell(address), bytes(signed.signature))


def test_join_rejects_a_run_id_that_is_not_32_bytes():
    with pytest.raises(ValueError, match="32 bytes"):
        join_hash(b"short", 1, ALICE.address)

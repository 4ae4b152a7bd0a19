"""Published-message store: stored form, content addressing, atomic idempotent writes."""

import struct
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from seccl_flwr.protocol.eip712 import (
    Kind,
    RunBinding,
    ballot_typed_data,
    sign_typed,
    typed_digest,
)
from seccl_flwr.protocol.encoding import ALLOWED_DTYPES
from seccl_flwr.protocol.signed import SignedMessage, message_digest
from seccl_flwr.store import (
    MAGIC,
    DirectoryStore,
    MessageNotFoundError,
    MessageStore,
    StoreConflictError,
    StoredMessageFormatError,
    decode_message,
    digest_hex,
    encode_message,
    open_store,
    parse_digest,
)

BINDING = RunBinding(1337, "0x" + "ab" * 20, b"\x07" * 32)
ALICE = Account.from_key(b"\x11" * 32)
BOB = Account.from_key(b"\x22" * 32)
CAROL = Account.from_key(b"\x33" * 32)

named_arrays = st.dictionaries(
    st.text(min_size=0, max_size=8),
    st.sampled_from(sorted(ALLOWED_DTYPES)).flatmap(
        lambda dt: hnp.arrays(
            np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
        )
    ),
    max_size=4,
)


def update_message(round_: int = 1, value: float = 0.5, author=ALICE) -> SignedMessage:
    payload = {
        "indices": np.array([1, 4], dtype="<u4"),
        "values": np.array([value, -value], dtype="<f4"),
    }
    return SignedMessage.sign(author, BINDING, round_, Kind.UPDATE, payload)


def ballot_message(scores=(900_000, 10)) -> SignedMessage:
    peers = (BOB.address, CAROL.address)
    typed = ballot_typed_data(BINDING, 1, ALICE.address, peers, scores)
    return SignedMessage(
        BINDING,
        1,
        Kind.BALLOT,
        ALICE.address,
        signature=sign_typed(ALICE.key, typed),
        peers=peers,
        scores=scores,
    )


def same_message(a: SignedMessage, b: SignedMessage) -> bool:
    return (
        a.binding == b.binding
        and (a.round, a.kind, a.author, a.signature, a.peers, a.scores)
        == (b.round, b.kind, b.author, b.signature, b.peers, b.scores)
        and list(a.payload) == list(b.payload)
        and all(
            a.payload[k].dtype == b.payload[k].dtype
            and a.payload[k].shape == b.payload[k].shape
            and a.payload[k].tobytes() == b.payload[k].tobytes()
            for k in a.payload
        )
    )


# ---------------------------------------------------------------- stored form
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=named_arrays,
    round_=st.integers(0, 2**32 - 1),
    kind=st.sampled_from([Kind.UPDATE, Kind.GLOBAL_MODEL, Kind.EVALUATION]),
    signature=st.binary(max_size=70),
)
def test_messages_round_trip_bit_exactly_and_keep_their_digest(payload, round_, kind, signature):
    message = SignedMessage(BINDING, round_, kind, ALICE.address, payload, signature)
    back = decode_message(encode_message(message))
    assert same_message(back, message)
    assert back.digest() == message.digest()
    assert encode_message(back) == encode_message(message)


@settings(max_examples=40, deadline=None)
@given(
    scores=st.lists(st.integers(0, 1_000_000), min_size=0, max_size=6),
    round_=st.integers(1, 2**32 - 1),
)
def test_ballots_round_trip_and_are_addressed_by_their_eip712_digest(scores, round_):
    peers = tuple(Account.from_key(bytes([i + 1]) * 32).address for i in range(len(scores)))
    message = SignedMessage(
        BINDING, round_, Kind.BALLOT, ALICE.address, peers=peers, scores=tuple(scores)
    )
    back = decode_message(encode_message(message))
    assert same_message(back, message)
    expected = typed_digest(ballot_typed_data(BINDING, round_, ALICE.address, peers, scores))
    assert back.digest() == expected


def test_digest_is_the_anchored_message_digest():
    message = update_message()
    assert message.digest() == message_digest(
        BINDING, 1, Kind.UPDATE, ALICE.address, message.payload
    )


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_the_format_error(data):
    try:
        decode_message(data)
    except StoredMessageFormatError:
        pass


@settings(max_examples=100, deadline=None)
@given(position=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_a_flipped_byte_never_passes_for_the_original(position, flip):
    original = update_message()
    data = bytearray(encode_message(original))
    position %= len(data)
    data[position] ^= flip
    try:
        changed = decode_message(bytes(data))
    except StoredMessageFormatError:
        return
    # decodable (canonical form only): the digest or the signature differs
    assert changed.digest() != original.digest() or changed.signature != original.signature


def test_only_the_canonical_form_decodes():
    data = encode_message(update_message())
    lower = patch_header(data, ALICE.address.encode(), ALICE.address.lower().encode())
    spaced = patch_header(data, b'"round":1', b'"round": 1')
    for variant in (lower, spaced):
        assert variant != data
        with pytest.raises(StoredMessageFormatError, match="canonical form"):
            decode_message(variant)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "magic"),
        (b"SECCL\x01", "magic"),
        (MAGIC + struct.pack("<I", 100) + b"{}", "truncated"),
        (MAGIC + struct.pack("<I", 2) + b"{}", "header"),
        (MAGIC + struct.pack("<I", 3) + b"[1]", "header"),
    ],
)
def test_malformed_stored_messages_are_named(data, match):
    with pytest.raises(StoredMessageFormatError, match=match):
        decode_message(data)


def test_unknown_kind_and_bad_payload_are_format_errors():
    data = encode_message(update_message())
    with pytest.raises(StoredMessageFormatError, match="unknown message kind"):
        decode_message(data.replace(b'"update"', b'"upd8te"'))
    with pytest.raises(StoredMessageFormatError, match="payload"):
        decode_message(data[:-1])


def test_inconsistent_messages_are_refused():
    with pytest.raises(ValueError, match="peers"):
        SignedMessage(BINDING, 1, Kind.BALLOT, ALICE.address, peers=(BOB.address,), scores=())
    with pytest.raises(ValueError, match="not arrays"):
        SignedMessage(BINDING, 1, Kind.BALLOT, ALICE.address, {"x": np.zeros(1)})
    with pytest.raises(ValueError, match="only ballots"):
        SignedMessage(BINDING, 1, Kind.UPDATE, ALICE.address, peers=(BOB.address,), scores=(1,))
    with pytest.raises(ValueError, match="uint32"):
        SignedMessage(BINDING, -1, Kind.UPDATE, ALICE.address)
    with pytest.raises(ValueError, match="uint32"):
        SignedMessage(BINDING, 2**32, Kind.UPDATE, ALICE.address)
    with pytest.raises(ValueError, match="scores must be uint32"):
        SignedMessage(BINDING, 1, Kind.BALLOT, ALICE.address, peers=(BOB.address,), scores=(-1,))


def test_out_of_range_header_values_are_format_errors():
    data = encode_message(ballot_message(scores=(7, 8)))
    for old, new in ((b'"scores":[7,8]', b'"scores":[-7,8]'), (b'"round":1', b'"round":-1')):
        assert old in data
        with pytest.raises(StoredMessageFormatError):
            decode_message(patch_header(data, old, new))


def patch_header(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replace bytes in the header of a stored message, fixing the header length."""
    start = len(MAGIC) + 4
    (size,) = struct.unpack("<I", data[len(MAGIC) : start])
    header = data[start : start + size].replace(old, new)
    return MAGIC + struct.pack("<I", len(header)) + header + data[start + size :]


# ------------------------------------------------------------ directory store
def test_directory_store_puts_gets_and_lists_by_digest(tmp_path):
    store = DirectoryStore(tmp_path / "run")
    assert isinstance(store, MessageStore)
    update, ballot = update_message(), ballot_message()
    for message in (update, ballot):
        digest = store.put(message)
        assert digest == message.digest()
        assert store.has(digest)
        assert (store.path / digest_hex(digest)).is_file()
        assert same_message(store.get(digest), message)
    assert sorted(store.digests()) == sorted([update.digest(), ballot.digest()])
    assert not store.has(b"\x00" * 32)
    with pytest.raises(MessageNotFoundError, match=digest_hex(b"\x00" * 32)):
        store.get(b"\x00" * 32)
    with pytest.raises(KeyError):  # a missing message is also a KeyError
        store.get(b"\x01" * 32)


def test_put_is_idempotent_and_refuses_another_content_under_a_digest(tmp_path):
    store = DirectoryStore(tmp_path)
    message = update_message()
    digest = store.put(message)
    before = (tmp_path / digest_hex(digest)).stat().st_mtime_ns
    assert store.put(update_message()) == digest  # same content: nothing rewritten
    assert (tmp_path / digest_hex(digest)).stat().st_mtime_ns == before
    # same digest (signature is not part of it), different bytes
    other = SignedMessage(BINDING, 1, Kind.UPDATE, ALICE.address, message.payload, b"\x01" * 65)
    assert other.digest() == digest
    with pytest.raises(StoreConflictError, match=digest_hex(digest)):
        store.put(other)
    assert same_message(store.get(digest), message)


def test_writes_leave_no_temporary_files_and_other_files_are_ignored(tmp_path):
    store = DirectoryStore(tmp_path)
    for value in (0.1, 0.2, 0.3):
        store.put(update_message(value=value))
    (tmp_path / "README").write_text("not a message")
    (tmp_path / ("0x" + "ab" * 31)).write_bytes(b"too short a name")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.startswith(".tmp-")]
    assert len(list(store.digests())) == 3


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    store = DirectoryStore(tmp_path)

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("seccl_flwr.store.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        store.put(update_message())
    assert list(tmp_path.iterdir()) == []


def test_a_garbled_file_is_reported_with_its_path(tmp_path):
    store = DirectoryStore(tmp_path)
    digest = store.put(update_message())
    (tmp_path / digest_hex(digest)).write_bytes(b"garbage")
    with pytest.raises(StoredMessageFormatError, match=digest_hex(digest)):
        store.get(digest)


def test_open_store_and_digest_names(tmp_path):
    assert open_store(None) is None
    store = DirectoryStore(tmp_path)
    assert open_store(store) is store
    assert isinstance(open_store(tmp_path / "a"), DirectoryStore)
    assert open_store(str(tmp_path / "b")).path == Path(tmp_path / "b")
    with pytest.raises(TypeError, match="store must be"):
        open_store(42)
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        DirectoryStore(tmp_path / "file")
    digest = b"\x5a" * 32
    assert parse_digest(digest_hex(digest)) == digest
    assert parse_digest(digest_hex(digest).upper().replace("0X", "0x")) == digest
    with pytest.raises(ValueError, match="32-byte hex digest"):
        parse_digest("0x1234")
    with pytest.raises(ValueError, match="32 bytes"):
        store.file_of(b"\x00")

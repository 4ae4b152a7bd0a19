"""Bad input, tried as a hostile participant (or a hostile server) would send it.

Every decoder and verifier on a trust boundary is fed arbitrary, truncated, mistyped,
non-finite, oversized and replayed input. Each case must end in the project's named
error (``EncodingError``, ``SparseUpdateError``, ``SignatureError`` or a
``VerificationError`` naming round and node), never in a bare ``IndexError``,
``struct.error``, ``EOFError``, ``MemoryError`` or ``KeyError``, and never in a silent
accept. On the server, a bad reply is dropped with its reason while the honest
replies of the same round are kept, and only those are anchored.
"""

import io
import itertools
import math
import struct
from functools import partial

import numpy as np
import pytest
from eth_account import Account
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.supercore.task_identity import TaskIdentity
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.lib import format as npy_format

from seccl_flwr.chain.connection import ensure_funded
from seccl_flwr.chain.csc import TxInfo
from seccl_flwr.chain.rpc_server import LoopbackRPCServer
from seccl_flwr.client import VerifiedRound, trusted_contract, verify_peer_update
from seccl_flwr.errors import (
    BallotSignatureError,
    MalformedMessageError,
    UntrustedContractError,
    UpdateDigestMismatchError,
    UpdateSignatureError,
)
from seccl_flwr.identity import CHAIN_URL, CONTRACT, simulation_key
from seccl_flwr.inprocess import InProcessGrid, new_run_id
from seccl_flwr.protocol.eip712 import (
    MAX_SCORE,
    Kind,
    RunBinding,
    SignatureError,
    ballot_typed_data,
    message_typed_data,
    run_id_from_label,
    sign_typed,
    verify_typed,
)
from seccl_flwr.protocol.encoding import (
    ALLOWED_DTYPES,
    MAGIC,
    EncodingError,
    decode_arrays,
    encode_arrays,
    metrics_to_arrays,
)
from seccl_flwr.protocol.params import RunParams, roster_digest, share_fraction_ppm
from seccl_flwr.protocol.signed import SignedMessage, message_digest
from seccl_flwr.protocol.sparse import (
    ModelLayout,
    SparseUpdate,
    SparseUpdateError,
    entry_limit,
)
from seccl_flwr.records import arrays_of, record_of
from seccl_flwr.strategy import PHASES, RoundRecord, RoundState, RunContext, SecCL, SecCLResult
from seccl_flwr.verify import (
    ReplyRules,
    accept_replies,
    verify_ballot,
    verify_evaluation,
    verify_update,
)
from seccl_flwr.wire import CROSS_EVALUATE, MESSAGE_TYPE, SECCL_KEY
from tests.csc_helpers import open_csc

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DTYPES = sorted(ALLOWED_DTYPES)
DISALLOWED_DESCRS = ["<c8", "<c16", "|O", "<U3", "|S4", "|V4", "<M8[s]", "<m8[s]", "<f16"]


# ============================================================ canonical encoding
allowed_arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
)
named_arrays = st.dictionaries(st.text(max_size=8), allowed_arrays, min_size=1, max_size=4)


@FAST
@given(named_arrays, st.data())
def test_decode_arrays_rejects_every_truncation_and_every_extension(arrays, data):
    encoded = encode_arrays(arrays)
    cut = data.draw(st.integers(0, len(encoded) - 1), label="cut")
    with pytest.raises(EncodingError, match="truncated|magic"):
        decode_arrays(encoded[:cut])
    extra = data.draw(st.binary(min_size=1, max_size=16), label="extra")
    with pytest.raises(EncodingError, match="trailing bytes"):
        decode_arrays(encoded + extra)


@FAST
@given(
    st.sampled_from(DTYPES),
    st.lists(st.integers(0, 2**64 - 1), max_size=6),
    st.binary(max_size=64),
)
def test_decode_arrays_shape_headers_cannot_force_an_allocation(dtype, shape, data):
    """A header may claim any shape; only a payload carrying exactly its bytes decodes."""
    name = b"x"
    encoded = (
        MAGIC
        + struct.pack("<I", 1)
        + struct.pack("<H", len(name))
        + name
        + struct.pack("<B", len(dtype))
        + dtype.encode()
        + struct.pack("<B", len(shape))
        + struct.pack(f"<{len(shape)}Q", *shape)
        + data
    )
    try:
        decoded = decode_arrays(encoded)
    except EncodingError:
        return
    assert math.prod(shape) * np.dtype(dtype).itemsize == len(data)
    assert decoded["x"].shape == tuple(shape)


@FAST
@given(named_arrays, st.integers(0, 64))
def test_decode_arrays_refuses_oversized_payloads_before_parsing(arrays, slack):
    encoded = encode_arrays(arrays)
    assert decode_arrays(encoded, max_bytes=len(encoded) + slack).keys() == arrays.keys()
    if len(encoded) > slack:
        with pytest.raises(EncodingError, match="exceeds the limit"):
            decode_arrays(encoded, max_bytes=len(encoded) - 1 - slack)


@FAST
@given(st.binary(max_size=200))
def test_decode_arrays_on_arbitrary_bytes_after_the_magic(tail):
    """Past the magic, arbitrary bytes either decode or raise EncodingError."""
    try:
        decode_arrays(MAGIC + tail)
    except EncodingError:
        pass


# ==================================================== Flower ArrayRecord decoding
def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_header(descr, shape, fortran: bool = False) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}
    )
    return buffer.getvalue()


def raw_array(data: bytes, dtype: str = "float32", shape=(4,), stype="numpy.ndarray") -> Array:
    return Array(dtype=dtype, shape=tuple(shape), stype=stype, data=data)


def decode_one(array: Array) -> np.ndarray:
    return arrays_of(ArrayRecord({"x": array}))["x"]


byte_orders = st.sampled_from(["<", ">"])
layouts = st.sampled_from(["C", "F"])


@FAST
@given(named_arrays, byte_orders, layouts)
def test_arrays_of_round_trips_record_of(arrays, order, layout):
    sent = {
        name: np.asarray(a, dtype=a.dtype.newbyteorder(order), order=layout)
        for name, a in arrays.items()
    }
    received = arrays_of(record_of(sent))
    assert list(received) == list(sent)
    for name, array in sent.items():
        assert received[name].dtype == array.dtype and received[name].shape == array.shape
        assert np.array_equal(received[name], array, equal_nan=array.dtype.kind == "f")
        assert received[name].flags.writeable
    assert encode_arrays(received) == encode_arrays(sent)


@FAST
@given(st.binary(max_size=300))
def test_arrays_of_arbitrary_bytes_raise_encoding_error(data):
    with pytest.raises(EncodingError, match="'x'"):
        decode_one(raw_array(data))


@FAST
@given(allowed_arrays, st.data())
def test_arrays_of_rejects_every_truncation_and_extension(array, data):
    encoded = npy(array)
    declared = dict(dtype=str(array.dtype), shape=array.shape)
    cut = data.draw(st.integers(0, len(encoded) - 1), label="cut")
    with pytest.raises(EncodingError, match="'x'"):
        decode_one(raw_array(encoded[:cut], **declared))
    extra = data.draw(st.binary(min_size=1, max_size=16), label="extra")
    with pytest.raises(EncodingError, match="data bytes"):
        decode_one(raw_array(encoded + extra, **declared))


@FAST
@given(allowed_arrays, st.data())
def test_arrays_of_mutated_bytes_decode_or_raise_encoding_error(array, data):
    encoded = bytearray(npy(array))
    position = data.draw(st.integers(0, len(encoded) - 1), label="position")
    encoded[position] = data.draw(st.integers(0, 255), label="value")
    try:
        decoded = decode_one(raw_array(bytes(encoded), str(array.dtype), array.shape))
    except EncodingError:
        return
    assert decoded.shape == array.shape and decoded.dtype == array.dtype


@FAST
@given(
    st.sampled_from(DTYPES + DISALLOWED_DESCRS),
    st.lists(st.integers(-3, 2**62), max_size=5),
    st.booleans(),
    st.binary(max_size=64),
)
def test_arrays_of_headers_cannot_force_an_allocation(descr, shape, fortran, data):
    """Whatever shape and dtype a header claims, only exactly matching data decodes."""
    array = raw_array(npy_header(descr, shape, fortran) + data, dtype=descr, shape=shape)
    try:
        decoded = decode_one(array)
    except EncodingError:
        return
    assert descr in DTYPES and min(shape, default=0) >= 0
    assert math.prod(shape) * np.dtype(descr).itemsize == len(data)
    assert decoded.shape == tuple(shape)


@pytest.mark.parametrize("descr", DISALLOWED_DESCRS)
def test_arrays_of_rejects_disallowed_dtypes(descr):
    with pytest.raises(EncodingError, match="disallowed dtype"):
        decode_one(raw_array(npy_header(descr, (0,)), dtype=descr, shape=(0,)))


def test_arrays_of_rejects_a_header_claiming_terabytes():
    # numpy's own loader allocates the claimed size first (MemoryError)
    array = raw_array(npy_header("<f4", (2**45,)) + bytes(16), shape=(2**45,))
    with pytest.raises(EncodingError, match="needs 140737488355328 data bytes, has 16"):
        decode_one(array)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        pytest.param(raw_array(npy(np.zeros(4, np.float32)), stype="torch"), "serialization type"),
        pytest.param(raw_array(b"PK\x03\x04" + bytes(60)), "malformed .npy header", id="npz"),
        pytest.param(raw_array(b""), "malformed .npy header", id="empty"),
        pytest.param(
            raw_array(npy(np.zeros(4, np.float32)), dtype="int8"), "declares int8", id="dtype"
        ),
        pytest.param(
            raw_array(npy(np.zeros(4, np.float32)), shape=(2, 2)), "declares float32", id="shape"
        ),
        pytest.param(
            raw_array(npy(np.zeros(4, np.float32)), dtype="no-such-type"), "invalid dtype"
        ),
        pytest.param(
            raw_array(npy_header("|b1", (2,)) + b"\x00\x02", dtype="bool", shape=(2,)),
            "boolean",
            id="bool",
        ),
        pytest.param(
            raw_array(npy(np.zeros(4, np.float32)).replace(b"\x01\x00", b"\x09\x00", 1)),
            "version",
            id="npy-version",
        ),
    ],
)
def test_arrays_of_names_what_is_wrong(array, match):
    with pytest.raises(EncodingError, match=match):
        decode_one(array)


def test_arrays_of_needs_an_array_record():
    with pytest.raises(EncodingError, match="expected an ArrayRecord, got ConfigRecord"):
        arrays_of(ConfigRecord({"x": 1}))


# ========================================================== sparse update checks
@st.composite
def valid_updates(draw, max_size: int = 200):
    size = draw(st.integers(1, max_size))
    count = draw(st.integers(0, min(size, 30)))
    indices = sorted(draw(st.sets(st.integers(0, size - 1), min_size=count, max_size=count)))
    values = draw(
        hnp.arrays(
            np.float32,
            count,
            elements=st.floats(-1e6, 1e6, allow_nan=False, width=32),
        )
    )
    return size, np.array(indices, dtype="<u4"), values.astype("<f4")


def _insert(array: np.ndarray, value) -> np.ndarray:
    out = array.copy()
    out[len(out) // 2] = value
    return out


SPARSE_CORRUPTIONS = {
    "nan": lambda s, i, v: (i, _insert(v, np.nan)),
    "inf": lambda s, i, v: (i, _insert(v, np.inf)),
    "-inf": lambda s, i, v: (i, _insert(v, -np.inf)),
    "out-of-range": lambda s, i, v: (np.append(i, np.uint32(s)).astype("<u4"), np.append(v, 1)),
    "max-index": lambda s, i, v: (np.append(i, np.uint32(2**32 - 1)), np.append(v, 1)),
    "duplicate": lambda s, i, v: (np.append(i, i[-1:]), np.append(v, v[-1:])),
    "unsorted": lambda s, i, v: (i[::-1].copy(), v[::-1].copy()),
    "indices-int64": lambda s, i, v: (i.astype(np.int64), v),
    "indices-big-endian": lambda s, i, v: (i.astype(">u4"), v),
    "values-float64": lambda s, i, v: (i, v.astype(np.float64)),
    "values-float16": lambda s, i, v: (i, np.clip(v, -1, 1).astype(np.float16)),
    "values-2d": lambda s, i, v: (i, v.reshape(-1, 1)),
    "indices-0d": lambda s, i, v: (np.asarray(i[0]), np.asarray(v[0])),
    "length-mismatch": lambda s, i, v: (i, v[:-1]),
}


@FAST
@given(valid_updates())
def test_from_arrays_accepts_valid_updates_up_to_the_entry_limit(update):
    size, indices, values = update
    parsed = SparseUpdate.from_arrays(
        {"indices": indices, "values": values}, size, max_entries=len(indices)
    )
    assert np.array_equal(parsed.indices, indices) and np.array_equal(parsed.values, values)
    if len(indices):
        with pytest.raises(SparseUpdateError, match="more than the allowed"):
            SparseUpdate.from_arrays(
                {"indices": indices, "values": values}, size, max_entries=len(indices) - 1
            )


@FAST
@given(
    valid_updates().filter(lambda u: len(u[1]) >= 2),
    st.sampled_from(sorted(SPARSE_CORRUPTIONS)),
)
def test_from_arrays_rejects_every_corruption(update, corruption):
    size, indices, values = update
    indices, values = SPARSE_CORRUPTIONS[corruption](size, indices, values)
    with pytest.raises(SparseUpdateError):
        SparseUpdate.from_arrays({"indices": indices, "values": values}, size)


@FAST
@given(
    st.dictionaries(st.sampled_from(["indices", "values", "extra", ""]), allowed_arrays),
    st.integers(0, 50),
    st.none() | st.integers(0, 10),
)
def test_from_arrays_on_arbitrary_arrays_accepts_only_well_formed_updates(
    arrays, size, max_entries
):
    try:
        update = SparseUpdate.from_arrays(arrays, size, max_entries)
    except SparseUpdateError:
        return
    assert update.indices.dtype == np.dtype("<u4") and update.values.dtype == np.dtype("<f4")
    assert update.indices.ndim == 1 and update.indices.shape == update.values.shape
    assert np.all(np.diff(update.indices.astype(np.int64)) > 0)
    assert np.all(update.indices < size) and np.all(np.isfinite(update.values))
    assert max_entries is None or len(update.indices) <= max_entries


# ================================================================== signatures
ALICE = Account.from_key(simulation_key("hostile", 0))
BINDING = RunBinding(
    chain_id=131277322940537,
    contract="0x" + "ab" * 20,
    run_id=run_id_from_label("hostile-input"),
)


@FAST
@given(st.binary(min_size=65, max_size=65), st.integers(0, 2**32 - 1))
def test_arbitrary_signatures_never_verify(signature, round_):
    typed = message_typed_data(BINDING, round_, Kind.UPDATE, ALICE.address, bytes(32))
    with pytest.raises(SignatureError):
        verify_typed(typed, signature, ALICE.address)


# ================================================== the server's reply checks
TaskIdentity.run_id = TaskIdentity._run_id or 1
TaskIdentity.task_id = TaskIdentity._task_id or 1
TaskIdentity.node_id = TaskIdentity._node_id or 0

MODEL = {
    "w": np.linspace(-1, 1, 48, dtype=np.float32).reshape(6, 8),
    "b": np.zeros(6, np.float32),
    "steps": np.array(3, dtype=np.int64),
}
LAYOUT = ModelLayout.of(MODEL)
SHARE = 0.1
LIMIT = entry_limit(LAYOUT, SHARE)  # 6 of 54 parameters
NODES = {node: Account.from_key(simulation_key("hostile", node)) for node in (1, 2, 3, 4)}
HOSTILE = 3
OUTSIDER = Account.from_key(simulation_key("hostile", 99))  # signs, but is no participant
OTHER_BINDINGS = {
    "other-run": RunBinding(BINDING.chain_id, BINDING.contract, run_id_from_label("other")),
    "other-contract": RunBinding(BINDING.chain_id, "0x" + "cd" * 20, BINDING.run_id),
    "other-chain": RunBinding(1, BINDING.contract, BINDING.run_id),
}
_ids = itertools.count(1)


class FakeCSC:
    """The parts of the contract client the checks use; records what is anchored."""

    def __init__(self, binding: RunBinding = BINDING, anchors: dict | None = None) -> None:
        self.binding = binding
        self.address = binding.contract
        self.anchors = dict(anchors or {})
        self.anchored: list[tuple[int, Kind, list[str]]] = []

    def anchor(self, round_, kind, authors, digests) -> list[TxInfo]:
        self.anchored.append((round_, kind, list(authors)))
        for author, digest in zip(authors, digests, strict=True):
            self.anchors[(round_, kind, author)] = digest
        return [TxInfo("anchor", "0x" + "00" * 32, 1, 1)]

    def anchor_of(self, round_, kind, author) -> bytes:
        return self.anchors.get((round_, kind, author), bytes(32))


PARTICIPANTS = {node: account.address for node, account in NODES.items()}
RULES = ReplyRules(BINDING, 1, PARTICIPANTS, LAYOUT, SHARE)
AUTHORS = [NODES[node].address for node in (1, 2, 3, 4)]


def make_strategy() -> SecCL:
    strategy = SecCL(candidate_fraction=0.5, share_fraction=SHARE)
    strategy.csc = FakeCSC()
    strategy.params = RunParams(2, 3, share_fraction_ppm(SHARE), False)
    strategy.participants = dict(PARTICIPANTS)
    return strategy


def accept(verify, replies: list[Message], phase: str) -> tuple[dict, dict, list[Message]]:
    """Verify ``replies`` as the server does; return the kept messages, the drops, the replies."""
    dropped: dict[str, str] = {}
    accepted = accept_replies(replies, verify, phase, PARTICIPANTS, dropped)
    kept = {author: message for author, (message, _) in accepted.items()}
    return kept, dropped, [reply for _, reply in accepted.values()]


class ReplayGrid:
    """A grid whose nodes answer with prepared replies, whatever they are sent."""

    def __init__(self, node_ids: list[int], replies: list[Message]) -> None:
        self.node_ids, self.replies = node_ids, replies

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)

    def send_and_receive(self, messages, *, timeout=None) -> list[Message]:
        return list(self.replies)


def play_only(phase: str, strategy: SecCL, grid, updates: dict | None = None) -> RoundState:
    """Run one phase of round 1, as a round does when the chain shows the others done."""
    run = RunContext(grid, 5, ConfigRecord(), ConfigRecord(), None, SecCLResult(), LAYOUT)
    model = record_of(MODEL)
    state = RoundState(
        RULES,
        RoundRecord(1),
        model,
        model,
        updates=dict(updates or {}),
        done=frozenset(PHASES) - {phase},
    )
    strategy.play_round(run, state)
    return state


def reply(node: int, content: RecordDict | Error, message_type: str = "train") -> Message:
    """Return ``content`` as ``node``'s reply to a server message."""
    instruction = Message(RecordDict(), message_type=message_type, dst_node_id=node)
    instruction.metadata.__dict__["_message_id"] = f"i{next(_ids)}"
    return Message(content, reply_to=instruction)


def valid_update(seed: int) -> SparseUpdate:
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(LAYOUT.size, size=LIMIT, replace=False)).astype("<u4")
    return SparseUpdate(indices, rng.normal(size=LIMIT).astype("<f4"))


def train_content(
    account,
    update_arrays: dict | None = None,
    *,
    round_: int = 1,
    binding: RunBinding = BINDING,
    signer=None,
    author: str | None = None,
    metrics: dict | None = None,
    update_record: ArrayRecord | None = None,
    seccl_extra: dict | None = None,
) -> RecordDict:
    """A train reply as the honest client builds it, with any part replaceable."""
    arrays = update_arrays if update_arrays is not None else valid_update(0).to_arrays()
    signed = SignedMessage.sign(signer or account, binding, round_, Kind.UPDATE, arrays)
    fields = {"author": author or account.address, "signature": signed.signature}
    fields.update(seccl_extra or {})
    return RecordDict(
        {
            "update": update_record if update_record is not None else record_of(arrays),
            "metrics": MetricRecord(metrics or {"loss": 9.0, "num-examples": 10}),
            SECCL_KEY: ConfigRecord(fields),
        }
    )


def _bad_values(value):
    update = valid_update(7)
    values = update.values.copy()
    values[2] = value
    return {"indices": update.indices, "values": values}


def _oversized(extra: int):
    count = min(LIMIT + extra, LAYOUT.size)
    return {
        "indices": np.arange(count, dtype="<u4"),
        "values": np.ones(count, dtype="<f4"),
    }


# name -> (draw(data) -> (node, content), expected fragment of the drop reason)
def _train_case(name: str, data) -> tuple[int, RecordDict | Error, str]:  # noqa: PLR0911
    me = NODES[HOSTILE]
    if name == "garbage-bytes":
        garbage = data.draw(st.binary(max_size=100), label="garbage")
        record = ArrayRecord(
            {"indices": raw_array(garbage, "uint32", (LIMIT,)), "values": Array(np.ones(LIMIT))}
        )
        return HOSTILE, train_content(me, update_record=record), ".npy header"
    if name == "huge-header":
        dim = data.draw(st.integers(2**30, 2**62), label="dim")
        header = npy_header("<u4", (dim,)) + bytes(8)
        record = ArrayRecord(
            {"indices": raw_array(header, "uint32", (dim,)), "values": Array(np.ones(2))}
        )
        return HOSTILE, train_content(me, update_record=record), "data bytes"
    if name == "non-finite":
        value = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="value")
        return HOSTILE, train_content(me, _bad_values(value)), "NaN or infinite"
    if name == "oversized":
        extra = data.draw(st.integers(1, LAYOUT.size), label="extra")
        return HOSTILE, train_content(me, _oversized(extra)), "more than the allowed"
    if name == "out-of-range":
        index = data.draw(st.integers(LAYOUT.size, 2**32 - 1), label="index")
        arrays = {"indices": np.array([0, index], "<u4"), "values": np.ones(2, "<f4")}
        return HOSTILE, train_content(me, arrays), "out of range"
    if name == "duplicate-index":
        arrays = {"indices": np.array([4, 4], "<u4"), "values": np.ones(2, "<f4")}
        return HOSTILE, train_content(me, arrays), "strictly increasing"
    if name == "wrong-dtype":
        arrays = {"indices": np.arange(3, dtype=np.int64), "values": np.ones(3)}
        return HOSTILE, train_content(me, arrays), "dtypes"
    if name == "wrong-shape":
        arrays = {"indices": np.arange(4, dtype="<u4"), "values": np.ones((2, 2), "<f4")}
        return HOSTILE, train_content(me, arrays), "1-D"
    if name == "other-round":
        other = data.draw(st.integers(0, 2**32 - 1).filter(lambda r: r != 1), label="round")
        return HOSTILE, train_content(me, round_=other), "signature recovers to"
    if name in OTHER_BINDINGS:
        return HOSTILE, train_content(me, binding=OTHER_BINDINGS[name]), "signature recovers to"
    if name == "unknown-signer":
        return HOSTILE, train_content(me, signer=OUTSIDER), "signature recovers to"
    if name == "claims-another-author":
        return HOSTILE, train_content(me, author=NODES[1].address), "claims to be"
    if name == "unknown-node":
        return 99, train_content(OUTSIDER), "unknown node"
    if name == "signature-not-bytes":
        value = data.draw(st.sampled_from([10**12, "0x" + "11" * 65, [1, 2]]), label="sig")
        content = train_content(me, seccl_extra={"signature": value})
        return HOSTILE, content, "field 'signature' must be bytes"
    if name == "no-signature":
        content = train_content(me)
        del content[SECCL_KEY]["signature"]
        return HOSTILE, content, "field 'signature' is missing"
    if name == "no-update":
        content = train_content(me)
        del content["update"]
        return HOSTILE, content, "no 'update' ArrayRecord"
    if name == "no-seccl":
        content = train_content(me)
        del content[SECCL_KEY]
        return HOSTILE, content, "no 'seccl' ConfigRecord"
    if name == "metrics-non-finite":
        value = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="metric")
        return HOSTILE, train_content(me, metrics={"loss": value, "num-examples": 5}), "finite"
    if name == "metrics-negative-weight":
        return HOSTILE, train_content(me, metrics={"loss": 1.0, "num-examples": -10}), "negative"
    if name == "metrics-no-weight":
        return HOSTILE, train_content(me, metrics={"loss": 1.0}), "missing"
    if name == "metrics-list":
        metrics = {"loss": [1.0, 2.0], "num-examples": 5}
        return HOSTILE, train_content(me, metrics=metrics), "finite number"
    if name == "node-error":
        return HOSTILE, Error(code=0, reason="ValueError: boom"), "node error"
    raise AssertionError(name)


TRAIN_CASES = [
    "garbage-bytes",
    "huge-header",
    "non-finite",
    "oversized",
    "out-of-range",
    "duplicate-index",
    "wrong-dtype",
    "wrong-shape",
    "other-round",
    *OTHER_BINDINGS,
    "unknown-signer",
    "claims-another-author",
    "unknown-node",
    "signature-not-bytes",
    "no-signature",
    "no-update",
    "no-seccl",
    "metrics-non-finite",
    "metrics-negative-weight",
    "metrics-no-weight",
    "metrics-list",
    "node-error",
]
TRAIN_ERRORS = {
    "node-error": "VerificationError",
    "other-round": "UpdateSignatureError",
    **dict.fromkeys(OTHER_BINDINGS, "UpdateSignatureError"),
    "unknown-signer": "UpdateSignatureError",
}
"""The error of each case that is not a ``MalformedMessageError``."""
HONEST_TRAIN = {
    node: train_content(
        NODES[node], valid_update(node).to_arrays(), metrics={"loss": 1.0, "num-examples": 10}
    )
    for node in (1, 2)
}


@FAST
@given(st.sampled_from(TRAIN_CASES), st.data())
def test_hostile_train_reply_is_dropped_and_honest_updates_are_kept(case, data):
    node, content, reason = _train_case(case, data)
    replies = [reply(1, HONEST_TRAIN[1]), reply(node, content), reply(2, HONEST_TRAIN[2])]
    updates, dropped_by, verified = accept(partial(verify_update, RULES), replies, "train")
    _, metrics = make_strategy().aggregate_train(1, verified)
    honest = [NODES[1].address, NODES[2].address]
    assert list(updates) == honest
    key = f"train:{PARTICIPANTS.get(node, node)}"
    assert list(dropped_by) == [key]
    dropped = dropped_by[key]
    error = TRAIN_ERRORS.get(case, "MalformedMessageError")
    assert dropped.startswith(f"{error}: round 1, node "), dropped
    assert reason in dropped, dropped
    assert dict(metrics) == {"loss": 1.0}  # the hostile node's metrics were not averaged


def test_second_update_of_one_author_is_dropped():
    second = train_content(NODES[1], valid_update(5).to_arrays())
    replies = [reply(1, HONEST_TRAIN[1]), reply(1, second), reply(2, HONEST_TRAIN[2])]
    updates, dropped, _ = accept(partial(verify_update, RULES), replies, "train")
    kept = updates[NODES[1].address].payload
    assert np.array_equal(kept["indices"], valid_update(1).indices)
    assert "second update" in dropped[f"train:{NODES[1].address}"]


def test_only_hostile_train_replies_leave_no_update_and_no_metrics():
    replies = [reply(HOSTILE, train_content(NODES[HOSTILE], _bad_values(np.nan)))]
    updates, _, verified = accept(partial(verify_update, RULES), replies, "train")
    _, metrics = make_strategy().aggregate_train(1, verified)
    assert updates == {} and metrics is None


# ---------------------------------------------------------------- ballots
def round_updates(nodes=(1, 2, 3, 4)) -> dict[str, SignedMessage]:
    """The round's anchored updates (their signatures are not checked again)."""
    return {
        NODES[node].address: SignedMessage(
            BINDING, 1, Kind.UPDATE, NODES[node].address, valid_update(node).to_arrays()
        )
        for node in nodes
    }


def ballot_fields(
    account,
    peers: list[str],
    scores: list[int],
    *,
    round_: int = 1,
    binding: RunBinding = BINDING,
    signer=None,
    extra: dict | None = None,
) -> dict:
    typed = ballot_typed_data(binding, round_, account.address, peers, scores)
    fields = {
        "evaluator": account.address,
        "peers": peers,
        "scores": scores,
        "signature": sign_typed((signer or account).key, typed),
    }
    fields.update(extra or {})
    return fields


def _others(node: int) -> list[str]:
    return [NODES[n].address for n in NODES if n != node]


def _ballot_case(name: str, data) -> tuple[int, dict, str]:  # noqa: PLR0911
    me = NODES[HOSTILE]
    peers = _others(HOSTILE)
    scores = [500_000, 400_000, 300_000]
    if name == "negative-score":
        bad = data.draw(st.integers(-(2**63), -1), label="score")  # not even signable
        fields = ballot_fields(me, peers, scores, extra={"scores": [bad, *scores[1:]]})
        return HOSTILE, fields, "score out of range"
    if name == "score-too-high":
        bad = data.draw(st.integers(MAX_SCORE + 1, 2**32 - 1), label="score")
        return HOSTILE, ballot_fields(me, peers, [bad, *scores[1:]]), "score out of range"
    if name == "bool-scores":
        fields = ballot_fields(me, peers, [1, 1, 0], extra={"scores": [True, True, False]})
        return HOSTILE, fields, "field 'scores' must be a list of int"
    if name == "float-scores":
        fields = ballot_fields(me, peers, scores, extra={"scores": [0.5, 0.4, 0.3]})
        return HOSTILE, fields, "field 'scores' must be a list of int"
    if name == "scores-not-a-list":
        fields = ballot_fields(me, peers, scores, extra={"scores": 5})
        return HOSTILE, fields, "field 'scores' must be a list of int"
    if name == "peers-a-string":
        fields = ballot_fields(me, peers, scores, extra={"peers": peers[0]})
        return HOSTILE, fields, "field 'peers' must be a list of str"
    if name == "self-score":
        return HOSTILE, ballot_fields(me, [me.address, *peers[1:]], scores), "scores itself"
    if name == "unknown-peer":
        bad = [OUTSIDER.address, *peers[1:]]
        return HOSTILE, ballot_fields(me, bad, scores), "non-author"
    if name == "duplicate-peer":
        return HOSTILE, ballot_fields(me, [peers[0]] * 3, scores), "do not match"
    if name == "length-mismatch":
        return HOSTILE, ballot_fields(me, peers, scores[:2]), "do not match"
    if name == "other-round":
        other = data.draw(st.integers(0, 2**32 - 1).filter(lambda r: r != 1), label="round")
        return HOSTILE, ballot_fields(me, peers, scores, round_=other), "signature recovers to"
    if name in OTHER_BINDINGS:
        fields = ballot_fields(me, peers, scores, binding=OTHER_BINDINGS[name])
        return HOSTILE, fields, "signature recovers to"
    if name == "unknown-signer":
        fields = ballot_fields(me, peers, scores, signer=OUTSIDER)
        return HOSTILE, fields, "signature recovers to"
    if name == "truncated-signature":
        fields = ballot_fields(me, peers, scores)
        cut = data.draw(st.integers(0, 64), label="cut")
        fields["signature"] = fields["signature"][:cut]
        return HOSTILE, fields, "signature must be 65 bytes"
    if name == "signature-not-bytes":
        fields = ballot_fields(me, peers, scores, extra={"signature": 10**12})
        return HOSTILE, fields, "field 'signature' must be bytes"
    if name == "claims-another-evaluator":
        fields = ballot_fields(me, peers, scores, extra={"evaluator": NODES[1].address})
        return HOSTILE, fields, "claims to be"
    if name == "unknown-node":
        return 99, ballot_fields(OUTSIDER, peers, scores), "unknown node"
    raise AssertionError(name)


BALLOT_CASES = [
    "negative-score",
    "score-too-high",
    "bool-scores",
    "float-scores",
    "scores-not-a-list",
    "peers-a-string",
    "self-score",
    "unknown-peer",
    "duplicate-peer",
    "length-mismatch",
    "other-round",
    *OTHER_BINDINGS,
    "unknown-signer",
    "truncated-signature",
    "signature-not-bytes",
    "claims-another-evaluator",
    "unknown-node",
]


@FAST
@given(st.sampled_from(BALLOT_CASES), st.data())
def test_hostile_ballot_is_rejected_with_a_named_error(case, data):
    node, fields, reason = _ballot_case(case, data)
    evaluator = PARTICIPANTS.get(node, str(node))
    message = reply(
        node, RecordDict({SECCL_KEY: ConfigRecord(fields)}), MESSAGE_TYPE[CROSS_EVALUATE]
    )
    with pytest.raises((MalformedMessageError, BallotSignatureError)) as info:
        verify_ballot(RULES, message, AUTHORS)
    assert str(info.value).startswith(f"{type(info.value).__name__}: round 1, node {evaluator}: ")
    assert reason in str(info.value)


@FEW
@given(st.lists(st.integers(0, MAX_SCORE), min_size=3, max_size=3))
def test_valid_ballots_in_range_are_accepted(scores):
    fields = ballot_fields(NODES[HOSTILE], _others(HOSTILE), scores)
    message = reply(
        HOSTILE, RecordDict({SECCL_KEY: ConfigRecord(fields)}), MESSAGE_TYPE[CROSS_EVALUATE]
    )
    ballot = verify_ballot(RULES, message, AUTHORS)
    assert ballot.scores == tuple(scores)


class ScriptedApp:
    """A stand-in ClientApp that answers with prepared ballots (node -> fields)."""

    def __init__(self, ballots: dict[int, dict]) -> None:
        self.ballots = ballots

    def __call__(self, message: Message, context) -> Message:
        fields = self.ballots[context.node_id]
        return Message(RecordDict({SECCL_KEY: ConfigRecord(fields)}), reply_to=message)


@FEW
@given(st.sampled_from([c for c in BALLOT_CASES if c != "unknown-node"]), st.data())
def test_cross_evaluation_goes_on_without_the_hostile_ballot(case, data):
    _, hostile, _ = _ballot_case(case, data)
    ballots = {node: ballot_fields(NODES[node], _others(node), [1, 2, 3]) for node in (1, 2, 4)}
    ballots[HOSTILE] = hostile
    grid = InProcessGrid(ScriptedApp(ballots), num_nodes=4)
    state = play_only("cross_evaluate", make_strategy(), grid, round_updates())
    accepted = state.ballots
    assert [b.evaluator for b in accepted] == [NODES[n].address for n in (1, 2, 4)]
    assert list(state.record.dropped) == [f"ballot:{NODES[HOSTILE].address}"]
    assert state.record.rejections == []  # a malformed ballot is no refusal to vote


# ---------------------------------------------------------- evaluation replies
def evaluate_content(
    account,
    metrics: dict | None = None,
    *,
    round_: int = 1,
    binding: RunBinding = BINDING,
    signer=None,
    extra: dict | None = None,
    records: dict | None = None,
) -> RecordDict:
    metrics = metrics if metrics is not None else {"accuracy": 0.5, "num-examples": 10}
    signed = SignedMessage.sign(
        signer or account, binding, round_, Kind.EVALUATION, metrics_to_arrays(metrics)
    )
    fields = {"author": account.address, "signature": signed.signature}
    fields.update(extra or {})
    return RecordDict(
        {"metrics": MetricRecord(metrics), SECCL_KEY: ConfigRecord(fields), **(records or {})}
    )


def _evaluate_case(name: str, data) -> tuple[int, RecordDict, str]:  # noqa: PLR0911
    me = NODES[HOSTILE]
    if name == "non-finite":
        value = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="value")
        metrics = {"accuracy": value, "num-examples": 10}
        return HOSTILE, evaluate_content(me, metrics), "finite number"
    if name == "negative-weight":
        weight = data.draw(st.floats(max_value=-1e-9, allow_infinity=False), label="weight")
        metrics = {"accuracy": 1.0, "num-examples": weight}
        return HOSTILE, evaluate_content(me, metrics), "negative"
    if name == "no-weight":
        return HOSTILE, evaluate_content(me, {"accuracy": 1.0}), "missing"
    if name == "two-metric-records":
        extra = {"more": MetricRecord({"accuracy": 1.0})}
        return HOSTILE, evaluate_content(me, records=extra), "expected one MetricRecord"
    if name == "other-round":
        other = data.draw(st.integers(0, 2**32 - 1).filter(lambda r: r != 1), label="round")
        return HOSTILE, evaluate_content(me, round_=other), "signature recovers to"
    if name in OTHER_BINDINGS:
        return HOSTILE, evaluate_content(me, binding=OTHER_BINDINGS[name]), "recovers to"
    if name == "unknown-signer":
        return HOSTILE, evaluate_content(me, signer=OUTSIDER), "signature recovers to"
    if name == "signature-not-bytes":
        content = evaluate_content(me, extra={"signature": 10**12})
        return HOSTILE, content, "field 'signature' must be bytes"
    if name == "unknown-node":
        return 99, evaluate_content(OUTSIDER), "unknown node"
    raise AssertionError(name)


EVALUATE_CASES = [
    "non-finite",
    "negative-weight",
    "no-weight",
    "two-metric-records",
    "other-round",
    *OTHER_BINDINGS,
    "unknown-signer",
    "signature-not-bytes",
    "unknown-node",
]
HONEST_EVALUATE = {node: evaluate_content(NODES[node]) for node in (1, 2)}


@FAST
@given(st.sampled_from(EVALUATE_CASES), st.data())
def test_hostile_evaluation_is_dropped_before_anchoring(case, data):
    node, content, reason = _evaluate_case(case, data)
    strategy = make_strategy()
    replies = [
        reply(1, HONEST_EVALUATE[1], "evaluate"),
        reply(node, content, "evaluate"),
        reply(2, HONEST_EVALUATE[2], "evaluate"),
    ]
    state = play_only("evaluate", strategy, ReplayGrid([1, 2, node], replies))
    metrics = state.record.evaluate_metrics
    honest = [NODES[1].address, NODES[2].address]
    assert strategy.csc.anchored == [(1, Kind.EVALUATION, honest)]
    key = f"evaluate:{strategy.participants.get(node, node)}"
    assert list(state.record.dropped) == [key]
    assert reason in state.record.dropped[key]
    assert dict(metrics) == {"accuracy": 0.5}


def test_evaluations_of_only_hostile_nodes_anchor_nothing():
    strategy = make_strategy()
    bad = evaluate_content(NODES[HOSTILE], {"accuracy": np.nan, "num-examples": 1})
    _, _, verified = accept(partial(verify_evaluation, RULES), [reply(HOSTILE, bad)], "evaluate")
    assert strategy.aggregate_evaluate(1, verified) is None
    play_only("evaluate", strategy, ReplayGrid([HOSTILE], [reply(HOSTILE, bad, "evaluate")]))
    assert strategy.csc.anchored == []


def test_zero_total_weight_gives_no_average_instead_of_a_division_error():
    strategy = make_strategy()
    content = evaluate_content(NODES[1], {"accuracy": 0.5, "num-examples": 0})
    _, _, verified = accept(partial(verify_evaluation, RULES), [reply(1, content)], "evaluate")
    assert strategy.aggregate_evaluate(1, verified) is None
    play_only("evaluate", strategy, ReplayGrid([1], [reply(1, content, "evaluate")]))
    assert strategy.csc.anchored == [(1, Kind.EVALUATION, [NODES[1].address])]


# ================================================== the client's peer-update check
def client_ctx(anchors: dict) -> VerifiedRound:
    return VerifiedRound(
        csc=FakeCSC(anchors=anchors),
        params=RunParams(2, 3, share_fraction_ppm(SHARE), per_tensor=False),
        account=NODES[1],
        round=1,
        arrays=MODEL,
        layout=LAYOUT,
        global_digest=bytes(32),
    )


PEER = NODES[2]


def anchored_update(arrays: dict) -> dict:
    """The round-1 anchor the (honest) server wrote for PEER's update ``arrays``."""
    digest = message_digest(BINDING, 1, Kind.UPDATE, PEER.address, arrays)
    return {(1, Kind.UPDATE, PEER.address): digest}


def _peer_case(name: str, data):  # noqa: PLR0911
    """Return (anchors, record, signature, expected error) for one forwarded update."""
    good = valid_update(11).to_arrays()
    signature = SignedMessage.sign(PEER, BINDING, 1, Kind.UPDATE, good).signature
    if name == "garbage-bytes":
        garbage = data.draw(st.binary(max_size=100), label="garbage")
        record = ArrayRecord({"indices": raw_array(garbage), "values": Array(np.ones(2))})
        return anchored_update(good), record, signature, MalformedMessageError
    if name == "non-finite":
        bad = _bad_values(data.draw(st.sampled_from([np.nan, np.inf, -np.inf])))
        sig = SignedMessage.sign(PEER, BINDING, 1, Kind.UPDATE, bad).signature
        return anchored_update(bad), record_of(bad), sig, MalformedMessageError
    if name == "oversized":
        bad = _oversized(data.draw(st.integers(1, LAYOUT.size), label="extra"))
        sig = SignedMessage.sign(PEER, BINDING, 1, Kind.UPDATE, bad).signature
        return anchored_update(bad), record_of(bad), sig, MalformedMessageError
    if name == "altered":
        altered = dict(good, values=good["values"] + np.float32(1))
        return anchored_update(good), record_of(altered), signature, UpdateDigestMismatchError
    if name == "replayed-from-other-round":  # PEER's update of another round, as it signed it
        other = data.draw(st.integers(2, 2**32 - 1), label="round")
        old = valid_update(12).to_arrays()
        sig = SignedMessage.sign(PEER, BINDING, other, Kind.UPDATE, old).signature
        return anchored_update(good), record_of(old), sig, UpdateDigestMismatchError
    if name == "signature-of-other-round":  # same payload, signature of another round
        other = data.draw(st.integers(2, 2**32 - 1), label="round")
        sig = SignedMessage.sign(PEER, BINDING, other, Kind.UPDATE, good).signature
        return anchored_update(good), record_of(good), sig, UpdateSignatureError
    if name == "not-anchored":
        return {}, record_of(good), signature, UpdateDigestMismatchError
    if name == "forged-signature":
        sig = SignedMessage.sign(OUTSIDER, BINDING, 1, Kind.UPDATE, good).signature
        return anchored_update(good), record_of(good), sig, UpdateSignatureError
    if name == "signature-other-run":
        sig = SignedMessage.sign(PEER, OTHER_BINDINGS["other-run"], 1, Kind.UPDATE, good).signature
        return anchored_update(good), record_of(good), sig, UpdateSignatureError
    if name == "truncated-signature":
        cut = data.draw(st.integers(0, 64), label="cut")
        return anchored_update(good), record_of(good), signature[:cut], UpdateSignatureError
    raise AssertionError(name)


PEER_CASES = [
    "garbage-bytes",
    "non-finite",
    "oversized",
    "altered",
    "replayed-from-other-round",
    "signature-of-other-round",
    "not-anchored",
    "forged-signature",
    "signature-other-run",
    "truncated-signature",
]


@FAST
@given(st.sampled_from(PEER_CASES), st.data())
def test_client_rejects_hostile_forwarded_updates_with_named_errors(case, data):
    anchors, record, signature, error = _peer_case(case, data)
    with pytest.raises(error) as info:
        verify_peer_update(client_ctx(anchors), PEER.address, record, signature)
    assert str(info.value).startswith(f"{error.__name__}: round 1, node {PEER.address}: ")


def test_client_accepts_the_anchored_signed_update():
    good = valid_update(11).to_arrays()
    signature = SignedMessage.sign(PEER, BINDING, 1, Kind.UPDATE, good).signature
    update = verify_peer_update(
        client_ctx(anchored_update(good)), PEER.address, record_of(good), signature
    )
    assert np.array_equal(update.indices, good["indices"])


# ======================================== the contract a (lying) server names
@pytest.fixture(scope="module")
def chain():
    """An embedded chain on loopback with three runs: two list this node, one does not."""
    with LoopbackRPCServer() as server:
        owner = Account.from_key(simulation_key("hostile-owner", 0))
        ensure_funded(server.w3, owner)
        me, other = Account.from_key(simulation_key(11, 0)), NODES[1]
        mine, _ = open_csc(server.w3, owner, BINDING.run_id, [me], 1)
        also_mine, _ = open_csc(server.w3, owner, bytes(32), [me], 1)
        foreign, _ = open_csc(server.w3, owner, bytes(32), [other], 1)
        yield server.url, mine.address, also_mine.address, foreign.address


def node_context(
    url: str | None, pinned: str | None = None, roster: list[str] | None = None
) -> Context:
    """Node 0 of a simulation of one partition (its roster is its own key), or pinning
    the digest of ``roster``."""
    node_config = {"partition-id": 0, "num-partitions": 1}
    if roster is not None:
        node_config["seccl-roster-digest"] = roster_digest(roster).hex()
    if url is not None:
        node_config[CHAIN_URL] = url
    if pinned is not None:
        node_config[CONTRACT] = pinned
    return Context(
        run_id=new_run_id(),
        node_id=1,
        node_config=node_config,
        state=RecordDict(),
        run_config={"seccl-key-seed": 11},
    )


def named(address) -> ConfigRecord:
    return ConfigRecord({"contract": address})


@FEW
@given(
    st.one_of(
        st.text(max_size=50),
        st.from_regex(r"\A0x[0-9a-fA-F]{0,44}\Z"),
        st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
    )
)
def test_client_refuses_any_contract_address_but_its_runs(chain, address):
    url, mine, _, _ = chain
    if address.lower() == mine.lower():
        assert trusted_contract(node_context(url), named(address)).address == mine
    else:
        with pytest.raises(UntrustedContractError):
            trusted_contract(node_context(url), named(address))


def test_client_refuses_a_run_that_does_not_list_it(chain):
    url, _, _, foreign = chain
    context = node_context(url, roster=[NODES[1].address])  # pins the foreign roster
    with pytest.raises(UntrustedContractError, match="does not list this node's address"):
        trusted_contract(context, named(foreign))


def test_pinned_client_refuses_another_contract_the_server_names(chain):
    url, mine, also_mine, _ = chain
    assert trusted_contract(node_context(url, pinned=mine), named(mine)).address == mine
    with pytest.raises(UntrustedContractError, match="but this node is pinned to"):
        trusted_contract(node_context(url, pinned=mine), named(also_mine))


def test_client_without_its_own_chain_endpoint_refuses_to_verify(chain):
    _, mine, _, _ = chain
    with pytest.raises(UntrustedContractError, match="has no chain endpoint"):
        trusted_contract(node_context(None), named(mine))

"""Canonical encoding of named arrays: round-trips, canonical bytes, strict decoding."""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from seccl_flwr.protocol.eip712 import Kind, RunBinding
from seccl_flwr.protocol.encoding import (
    ALLOWED_DTYPES,
    MAGIC,
    EncodingError,
    decode_arrays,
    encode_arrays,
    metrics_to_arrays,
    payload_hash,
)
from seccl_flwr.protocol.signed import message_digest

DTYPES = sorted(ALLOWED_DTYPES)


def entry(name: str, dtype: str, shape: tuple[int, ...], data: bytes = b"") -> bytes:
    """Hand-build one encoded array entry (independent of the encoder)."""
    name_b, dtype_b = name.encode(), dtype.encode()
    return (
        struct.pack("<H", len(name_b))
        + name_b
        + struct.pack("<B", len(dtype_b))
        + dtype_b
        + struct.pack("<B", len(shape))
        + struct.pack(f"<{len(shape)}Q", *shape)
        + data
    )


def payload(*entries: bytes) -> bytes:
    return MAGIC + struct.pack("<I", len(entries)) + b"".join(entries)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


named_arrays = st.dictionaries(
    st.text(min_size=0, max_size=12),
    st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(
            np.dtype(dt),
            hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
        )
    ),
    max_size=5,
)


# ------------------------------------------------------------------ round trips
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(named_arrays)
def test_round_trip_keeps_names_order_dtypes_shapes_and_bits(arrays):
    decoded = decode_arrays(encode_arrays(arrays))
    assert list(decoded) == list(arrays)
    for name, original in arrays.items():
        assert same_bits(decoded[name], np.asarray(original)), name


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_dim_and_empty_arrays_round_trip(dtype):
    arrays = {
        "scalar": np.array(1, dtype=dtype),
        "empty": np.zeros((0,), dtype=dtype),
        "empty2d": np.zeros((3, 0), dtype=dtype),
    }
    decoded = decode_arrays(encode_arrays(arrays))
    assert decoded["scalar"].shape == ()
    assert decoded["empty"].shape == (0,)
    assert decoded["empty2d"].shape == (3, 0)
    for name in arrays:
        assert same_bits(decoded[name], arrays[name])


def test_empty_mapping_round_trips():
    data = encode_arrays({})
    assert data == MAGIC + b"\x00\x00\x00\x00"
    assert decode_arrays(data) == {}


def test_known_layout_of_a_small_payload():
    data = encode_arrays({"w": np.array([1, 2], dtype="<u2")})
    assert data == payload(entry("w", "<u2", (2,), b"\x01\x00\x02\x00"))


def test_non_contiguous_input_encodes_like_its_contiguous_copy():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    view = base[:, ::2].T  # Fortran-ish, strided
    assert encode_arrays({"v": view}) == encode_arrays({"v": np.ascontiguousarray(view)})


# ---------------------------------------------------------------- canonical bytes
def test_order_is_part_of_the_payload():
    a, b = np.zeros(2, np.float32), np.ones(2, np.float32)
    assert encode_arrays({"a": a, "b": b}) != encode_arrays({"b": b, "a": a})
    assert payload_hash({"a": a, "b": b}) != payload_hash({"b": b, "a": a})


def test_names_dtypes_and_shapes_are_part_of_the_payload():
    x = np.arange(6, dtype=np.float32)
    base = payload_hash({"x": x})
    assert payload_hash({"y": x}) != base
    assert payload_hash({"x": x.astype(np.float64)}) != base
    assert payload_hash({"x": x.reshape(2, 3)}) != base
    assert payload_hash({"x": x.reshape(2, 3)}) != payload_hash({"x": x.reshape(3, 2)})


@pytest.mark.parametrize("dtype", ["f2", "f4", "f8", "u2", "i2", "u4", "i4", "u8", "i8"])
def test_big_endian_input_encodes_as_little_endian_of_same_values(dtype):
    values = np.array([[0, 1, 2], [3, 4, 5]]).astype("<" + dtype)
    big = values.astype(">" + dtype)
    assert big.dtype.byteorder == ">"
    assert encode_arrays({"x": big}) == encode_arrays({"x": values})
    decoded = decode_arrays(encode_arrays({"x": big}))["x"]
    assert decoded.dtype.str == "<" + dtype
    np.testing.assert_array_equal(decoded, values)


def test_metrics_hash_does_not_depend_on_insertion_order():
    one = metrics_to_arrays({"loss": 0.5, "accuracy": 0.9, "n": 3})
    two = metrics_to_arrays({"n": 3, "accuracy": 0.9, "loss": 0.5})
    assert list(one) == ["accuracy", "loss", "n"]
    assert payload_hash(one) == payload_hash(two)
    assert all(a.dtype == np.float64 and a.shape == () for a in one.values())


@pytest.mark.parametrize(
    "value",
    [
        np.array([object()], dtype=object),
        np.array(["a", "bc"]),
        np.array([b"a"]),
        np.array([1 + 2j], dtype=np.complex64),
        np.array([1 + 2j], dtype=np.complex128),
        np.zeros(2, dtype="datetime64[s]"),
        np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]),
    ],
    ids=["object", "str", "bytes", "c8", "c16", "datetime", "struct"],
)
def test_encoder_rejects_disallowed_dtypes(value):
    with pytest.raises(EncodingError):
        encode_arrays({"x": value})


# ------------------------------------------------------------------ strict decoder
SMALL = encode_arrays({"a": np.arange(3, dtype=np.int16), "bb": np.array(2.5, dtype=np.float32)})


@pytest.mark.parametrize("length", range(len(SMALL)))
def test_every_truncation_is_rejected(length):
    with pytest.raises(EncodingError):
        decode_arrays(SMALL[:length])


@pytest.mark.parametrize("extra", [b"\x00", b"junk", SMALL])
def test_trailing_bytes_are_rejected(extra):
    with pytest.raises(EncodingError, match="trailing"):
        decode_arrays(SMALL + extra)


@pytest.mark.parametrize("magic", [b"SECCL\x02", b"seccl\x01", b"\x00" * 6, b"XECCL\x01"])
def test_bad_magic_is_rejected(magic):
    with pytest.raises(EncodingError, match="magic"):
        decode_arrays(magic + SMALL[len(MAGIC) :])


@pytest.mark.parametrize("dtype", ["|O", "<U1", "|S1", "<c8", "<c16", ">f4", "<M8[s]", "|V4", ""])
def test_decoder_rejects_disallowed_dtypes(dtype):
    data = payload(entry("x", dtype, (1,), b"\x00" * 16))
    with pytest.raises(EncodingError, match="dtype"):
        decode_arrays(data)


def test_duplicate_names_are_rejected():
    one = entry("w", "|u1", (2,), b"\x01\x02")
    with pytest.raises(EncodingError, match="duplicate"):
        decode_arrays(payload(one, one))
    decode_arrays(payload(one, entry("v", "|u1", (2,), b"\x01\x02")))  # distinct names are fine


def test_count_larger_than_entries_is_rejected():
    data = bytearray(SMALL)
    data[len(MAGIC) : len(MAGIC) + 4] = struct.pack("<I", 3)
    with pytest.raises(EncodingError, match="truncated"):
        decode_arrays(bytes(data))


def test_shape_larger_than_data_is_rejected():
    with pytest.raises(EncodingError, match="truncated"):
        decode_arrays(payload(entry("x", "<f8", (2**40, 2**20), b"\x00" * 8)))


def test_invalid_utf8_name_is_rejected():
    data = MAGIC + struct.pack("<I", 1) + struct.pack("<H", 1) + b"\xff" + b"\x03|u1\x00\x00"
    with pytest.raises(EncodingError, match="utf-8"):
        decode_arrays(data)


def test_oversized_payload_is_rejected_before_parsing():
    assert decode_arrays(SMALL, max_bytes=len(SMALL))
    with pytest.raises(EncodingError, match="exceeds"):
        decode_arrays(SMALL, max_bytes=len(SMALL) - 1)
    with pytest.raises(EncodingError, match="exceeds"):
        decode_arrays(b"\x00" * 100, max_bytes=10)


@pytest.mark.parametrize(
    "shape",
    [(0, 2**63), (0, 2**64 - 1), (0,) * 65, (0,) * 255],
    ids=["dim-2^63", "dim-2^64-1", "65-dims", "255-dims"],
)
def test_shapes_numpy_cannot_hold_are_rejected(shape):
    # Zero elements, so no data bytes are needed, but numpy cannot build the shape.
    with pytest.raises(EncodingError):
        decode_arrays(payload(entry("x", "<f4", shape)))


def test_non_canonical_booleans_are_rejected():
    assert decode_arrays(payload(entry("b", "|b1", (2,), b"\x00\x01")))["b"].tolist() == [
        False,
        True,
    ]
    with pytest.raises(EncodingError, match="boolean"):
        decode_arrays(payload(entry("b", "|b1", (2,), b"\x00\x02")))


def test_decoded_arrays_do_not_alias_the_input_buffer():
    buffer = bytearray(encode_arrays({"x": np.arange(4, dtype=np.uint8)}))
    decoded = decode_arrays(bytes(buffer))["x"]
    decoded[0] = 99  # writable copy
    assert decode_arrays(bytes(buffer))["x"][0] == 0


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200) | st.binary(max_size=200).map(lambda b: MAGIC + b))
def test_random_bytes_raise_only_encoding_error(data):
    try:
        decode_arrays(data)
    except EncodingError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(SMALL) - 1), st.integers(0, 255), st.integers(0, 8))
def test_mutated_payloads_decode_or_raise_encoding_error(position, value, cut):
    data = bytearray(SMALL)
    data[position] = value
    for candidate in (bytes(data), bytes(data[: len(data) - cut])):
        try:
            decoded = decode_arrays(candidate)
        except EncodingError:
            continue
        # Whatever decodes is canonical: it re-encodes to the very same bytes.
        assert encode_arrays(decoded) == candidate


# ---------------------------------------------------- digests across processes
_DIGEST_SCRIPT = """
import json
import numpy as np
from seccl_flwr.protocol.signed import message_digest
from seccl_flwr.protocol.eip712 import Kind, RunBinding
from seccl_flwr.protocol.encoding import metrics_to_arrays, payload_hash

arrays = {
    "layer.weight": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    "layer.bias": np.array([-1.5, 0.0, 2.25], dtype=">f8"),
    "steps": np.array(7, dtype=np.int64),
    "mask": np.array([True, False]),
}
metrics = metrics_to_arrays({"f1": 0.75, "loss": 1.25, "acc": 0.5})
binding = RunBinding(31337, "0x" + "ab" * 20, bytes(range(32)))
author = "0x" + "cd" * 20
print(json.dumps({
    "payload": payload_hash(arrays).hex(),
    "metrics": payload_hash(metrics).hex(),
    "digest": message_digest(binding, 3, Kind.UPDATE, author, arrays).hex(),
}))
"""


def _digests_here() -> dict[str, str]:
    namespace: dict = {}
    exec(_DIGEST_SCRIPT.replace("print(json.dumps(", "result = (("), namespace)
    return namespace["result"]


@pytest.mark.parametrize("seed", ["0", "4242"])
def test_digests_are_identical_in_other_processes(seed):
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", _DIGEST_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    assert json.loads(out.stdout) == _digests_here()


def test_digest_changes_with_payload():
    binding = RunBinding(1, "0x" + "ab" * 20, bytes(32))
    author = "0x" + "cd" * 20
    x = {"x": np.zeros(3, np.float32)}
    y = {"x": np.array([0, 0, 1e-30], np.float32)}
    assert message_digest(binding, 1, Kind.UPDATE, author, x) != message_digest(
        binding, 1, Kind.UPDATE, author, y
    )

"""Top-k sparsification, sparse-update validation, apply/merge and the model layout."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from seccl_flwr.protocol.sparse import (
    ModelLayout,
    SparseUpdate,
    SparseUpdateError,
    aggregate,
    apply_update,
    budget,
    entry_limit,
    merge_updates,
    sparsify,
    sparsify_with_feedback,
)

# Values drawn from a small set produce many ties in magnitude (incl. +x / -x, 0 / -0).
tie_heavy = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 3.0, 1e-3])
any_finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
deltas = hnp.arrays(np.float32, st.integers(1, 60), elements=tie_heavy | any_finite)
percent = st.integers(1, 100)  # share fraction p / 100, exactly representable as a decimal


def ceil_share(percent_: int, n: int) -> int:
    """ceil(p/100 * n) in exact integer arithmetic."""
    return -(-percent_ * n // 100)


def brute_force_top_k(delta: np.ndarray, k: int) -> list[int]:
    order = sorted(range(len(delta)), key=lambda i: (-abs(float(delta[i])), i))
    return sorted(order[:k])


def check_form(update: SparseUpdate, delta: np.ndarray) -> None:
    assert update.indices.dtype == np.dtype("<u4")
    assert update.values.dtype == np.dtype("<f4")
    assert update.indices.ndim == 1 and update.values.shape == update.indices.shape
    assert np.all(np.diff(update.indices.astype(np.int64)) > 0)
    assert np.array_equal(update.values, delta[update.indices.astype(np.int64)])


# --------------------------------------------------------------------- sparsify
@settings(max_examples=300, deadline=None)
@given(deltas, percent)
def test_sparsify_keeps_exactly_the_k_largest_magnitudes(delta, p):
    n = len(delta)
    k = ceil_share(p, n)
    update = sparsify(delta, p / 100)
    check_form(update, delta)
    kept = update.indices.astype(np.int64)
    assert len(kept) == k
    assert kept.tolist() == brute_force_top_k(delta, k)
    dropped = np.setdiff1d(np.arange(n), kept)
    if len(dropped) and len(kept):
        assert np.abs(delta[kept]).min() >= np.abs(delta[dropped]).max()


def test_sparsify_ties_prefer_lower_positions():
    delta = np.array([1, -3, 3, 2, -3, 3], dtype=np.float32)
    assert sparsify(delta, 0.5).indices.tolist() == [1, 2, 4]
    assert sparsify(delta, 0.34).indices.tolist() == [1, 2, 4]  # ceil(2.04) = 3
    assert sparsify(delta, 0.3).indices.tolist() == [1, 2]  # ceil(1.8) = 2
    assert sparsify(delta, 1.0).indices.tolist() == list(range(6))


def test_sparsify_rejects_non_finite_changes():
    with pytest.raises(SparseUpdateError):
        sparsify(np.array([1.0, np.nan], np.float32), 0.5)
    with pytest.raises(SparseUpdateError):
        sparsify(np.array([1.0, -np.inf], np.float32), 0.5)


def test_sparsify_of_empty_change_is_empty():
    update = sparsify(np.zeros(0, np.float32), 0.5)
    assert len(update.indices) == 0 and update.indices.dtype == np.dtype("<u4")


def _layout_for(sizes: list[int]) -> ModelLayout:
    arrays = {f"t{i}": np.zeros(s, np.float32) for i, s in enumerate(sizes)}
    arrays["counter"] = np.zeros((), np.int64)  # not trainable, contributes nothing
    return ModelLayout.of(arrays)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=5), percent, st.data())
def test_per_tensor_keeps_ceil_share_of_every_tensor(sizes, p, data):
    layout = _layout_for(sizes)
    delta = data.draw(hnp.arrays(np.float32, sum(sizes), elements=tie_heavy | any_finite))
    update = sparsify(delta, p / 100, layout, per_tensor=True)
    check_form(update, delta)
    indices = update.indices.astype(np.int64)
    offset = 0
    for size in sizes:
        local = indices[(indices >= offset) & (indices < offset + size)] - offset
        k = ceil_share(p, size)
        assert len(local) == k
        assert local.tolist() == brute_force_top_k(delta[offset : offset + size], k)
        offset += size
    assert len(indices) == entry_limit(layout, p / 100, per_tensor=True)
    assert entry_limit(layout, p / 100) == ceil_share(p, sum(sizes))


def test_per_tensor_can_exceed_global_budget_and_entry_limit_covers_it():
    layout = _layout_for([1] * 10)
    update = sparsify(np.arange(1, 11, dtype=np.float32), 0.1, layout, per_tensor=True)
    assert len(update.indices) == 10  # ceil(0.1 * 1) per tensor
    assert budget(layout.size, 0.1) == 1
    assert entry_limit(layout, 0.1, per_tensor=True) == 10
    SparseUpdate.from_arrays(update.to_arrays(), layout.size, entry_limit(layout, 0.1, True))
    with pytest.raises(SparseUpdateError, match="more than"):
        SparseUpdate.from_arrays(update.to_arrays(), layout.size, budget(layout.size, 0.1))


def test_per_tensor_needs_a_matching_layout():
    with pytest.raises(ValueError, match="layout"):
        sparsify(np.ones(3, np.float32), 0.5, per_tensor=True)
    with pytest.raises(SparseUpdateError):
        sparsify(np.ones(3, np.float32), 0.5, _layout_for([2]), per_tensor=True)


def test_per_tensor_without_trainable_arrays_is_empty():
    layout = ModelLayout.of({"steps": np.zeros(3, np.int64)})
    update = sparsify(np.zeros(0, np.float32), 0.5, layout, per_tensor=True)
    assert len(update.indices) == 0 and update.indices.dtype == np.dtype("<u4")


# --------------------------------------------------------------- error feedback
def dense(update: SparseUpdate, size: int) -> np.ndarray:
    out = np.zeros(size, np.float32)
    out[update.indices.astype(np.int64)] = update.values
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=5), percent, st.booleans(), st.data())
def test_feedback_loses_nothing_sent_plus_new_residual_is_change_plus_old(
    sizes, p, per_tensor, data
):
    layout = _layout_for(sizes)
    vectors = hnp.arrays(np.float32, sum(sizes), elements=tie_heavy | any_finite)
    change, residual = data.draw(vectors), data.draw(vectors)
    update, left_out = sparsify_with_feedback(change, residual, p / 100, layout, per_tensor)
    corrected = change + residual
    assert np.array_equal(dense(update, layout.size) + left_out, corrected)
    # what is sent is exactly the plain top-k of the corrected change, nothing is left twice
    expected = sparsify(corrected, p / 100, layout, per_tensor)
    assert np.array_equal(update.indices, expected.indices)
    assert np.array_equal(update.values, expected.values)
    assert not np.any(left_out[update.indices.astype(np.int64)])
    assert left_out.dtype == np.float32 and left_out.shape == change.shape


def test_feedback_without_a_residual_is_plain_sparsify():
    change = np.array([0.5, -2.0, 1.0, 0.25], np.float32)
    update, left_out = sparsify_with_feedback(change, None, 0.5)
    assert update.indices.tolist() == [1, 2] and update.values.tolist() == [-2.0, 1.0]
    assert left_out.tolist() == [0.5, 0.0, 0.0, 0.25]
    assert change.tolist() == [0.5, -2.0, 1.0, 0.25]  # the caller's change is left as it was


def test_feedback_eventually_sends_a_small_steady_change():
    change = np.array([1.0, 0.375], np.float32)  # exact in binary: sums are exact
    residual, sent = None, np.zeros(2, np.float32)
    for _ in range(3):
        update, residual = sparsify_with_feedback(change, residual, 0.5)
        sent += dense(update, 2)
    # without feedback position 1 never makes the top 1; with it, it does in round 3
    assert sent.tolist() == [2.0, 1.125]
    assert (sent + residual).tolist() == (3 * change).tolist()


def test_feedback_rejects_a_residual_of_another_shape_and_non_finite_sums():
    with pytest.raises(SparseUpdateError, match="residual has shape"):
        sparsify_with_feedback(np.ones(3, np.float32), np.ones(4, np.float32), 0.5)
    big = np.array([3e38], np.float32)
    with pytest.raises(SparseUpdateError, match="infinite"):
        sparsify_with_feedback(big, big, 0.5)


# ----------------------------------------------------------------------- budget
@pytest.mark.parametrize(
    ("size", "fraction", "expected"),
    [(100, 0.07, 7), (10, 0.3, 3), (30, 0.1, 3), (1000, 0.001, 1), (7, 0.5, 4), (5, 1.0, 5)],
)
def test_budget_is_the_exact_ceiling(size, fraction, expected):
    assert budget(size, fraction) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**7), percent)
def test_budget_matches_integer_ceiling(size, p):
    assert budget(size, p / 100) == ceil_share(p, size)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.0000001, 2.0, math.nan, math.inf])
def test_budget_rejects_fractions_outside_zero_one(fraction):
    with pytest.raises(ValueError):
        budget(10, fraction)


# ------------------------------------------------------------------- validation
def good() -> dict[str, np.ndarray]:
    return {
        "indices": np.array([0, 3, 7], dtype=np.uint32),
        "values": np.array([0.5, -1.0, 2.0], dtype=np.float32),
    }


def test_from_arrays_accepts_a_valid_update():
    update = SparseUpdate.from_arrays(good(), size=8, max_entries=3)
    assert update.indices.tolist() == [0, 3, 7]
    assert update.to_arrays().keys() == {"indices", "values"}
    empty = {"indices": np.zeros(0, np.uint32), "values": np.zeros(0, np.float32)}
    assert len(SparseUpdate.from_arrays(empty, size=0).indices) == 0


def _with(**changes):
    arrays = good()
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    return arrays


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        (_with(values=None), "exactly"),
        (_with(indices=None), "exactly"),
        ({**good(), "extra": np.zeros(1, np.float32)}, "exactly"),
        (_with(indices=np.array([0, 3, 7], np.int64)), "dtypes"),
        (_with(indices=np.array([0, 3, 7], np.int32)), "dtypes"),
        (_with(indices=np.array([0, 3, 7], ">u4")), "dtypes"),
        (_with(values=np.array([0.5, -1.0, 2.0], np.float64)), "dtypes"),
        (_with(values=np.array([0.5, -1.0, 2.0], np.float16)), "dtypes"),
        (
            {
                "indices": np.array([[0, 1], [2, 3]], np.uint32),
                "values": np.ones((2, 2), np.float32),
            },
            "1-D",
        ),
        ({"indices": np.array(1, np.uint32), "values": np.array(1, np.float32)}, "1-D"),
        (_with(values=np.array([0.5, -1.0], np.float32)), "1-D"),
        (_with(indices=np.array([0, 7, 3], np.uint32)), "increasing"),
        (_with(indices=np.array([0, 3, 3], np.uint32)), "increasing"),
        (_with(indices=np.array([0, 3, 8], np.uint32)), "out of range"),
        (_with(indices=np.array([0, 3, 2**32 - 1], np.uint32)), "out of range"),
        (_with(values=np.array([0.5, np.nan, 2.0], np.float32)), "NaN"),
        (_with(values=np.array([0.5, np.inf, 2.0], np.float32)), "NaN"),
        (_with(values=np.array([0.5, 1.0, -np.inf], np.float32)), "NaN"),
    ],
)
def test_from_arrays_rejects_malformed_updates(arrays, match):
    with pytest.raises(SparseUpdateError, match=match):
        SparseUpdate.from_arrays(arrays, size=8)


def test_from_arrays_rejects_more_entries_than_allowed():
    SparseUpdate.from_arrays(good(), size=8, max_entries=3)
    with pytest.raises(SparseUpdateError, match="more than"):
        SparseUpdate.from_arrays(good(), size=8, max_entries=2)


# ---------------------------------------------------------------- apply / merge
def test_apply_update_adds_only_at_indices_and_copies():
    flat = np.arange(8, dtype=np.float32)
    before = flat.copy()
    out = apply_update(flat, SparseUpdate.from_arrays(good(), 8))
    assert np.array_equal(flat, before)
    expected = before.copy()
    expected[[0, 3, 7]] += [0.5, -1.0, 2.0]
    assert out.dtype == np.float32 and np.array_equal(out, expected)


def _update(indices, values) -> SparseUpdate:
    return SparseUpdate.from_arrays(
        {"indices": np.array(indices, np.uint32), "values": np.array(values, np.float32)},
        size=6,
    )


def test_merge_is_per_coordinate_mean_over_senders():
    merged = merge_updates(
        6,
        [_update([0, 2], [1.0, 3.0]), _update([2, 4], [5.0, -2.0]), _update([2], [-2.0])],
    )
    assert merged.dtype == np.float32
    assert merged.tolist() == [1.0, 0.0, 2.0, 0.0, -2.0, 0.0]


def test_merge_of_nothing_is_zero():
    assert merge_updates(4, []).tolist() == [0.0] * 4
    assert merge_updates(0, []).shape == (0,)


updates_strategy = st.lists(
    st.sets(st.integers(0, 19), max_size=20).flatmap(
        lambda idx: st.tuples(
            st.just(sorted(idx)),
            st.lists(any_finite, min_size=len(idx), max_size=len(idx)),
        )
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(updates_strategy)
def test_merge_matches_reference_mean_and_is_bit_identical(raw):
    updates = [
        SparseUpdate.from_arrays(
            {"indices": np.array(i, np.uint32), "values": np.array(v, np.float32)}, 20
        )
        for i, v in raw
    ]
    merged = merge_updates(20, updates)
    for coord in range(20):
        senders = [
            float(u.values[list(u.indices).index(coord)]) for u in updates if coord in u.indices
        ]
        expected = np.float32(sum(senders) / len(senders)) if senders else np.float32(0.0)
        assert merged[coord] == pytest.approx(expected, rel=1e-6, abs=1e-30)
        if not senders:
            assert merged[coord] == 0.0
    again = merge_updates(20, [SparseUpdate(u.indices.copy(), u.values.copy()) for u in updates])
    assert again.tobytes() == merged.tobytes()


# -------------------------------------------------------------------- the layout
def model() -> dict[str, np.ndarray]:
    return {
        "conv.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
        "bn.num_batches_tracked": np.array(41, dtype=np.int64),
        "bn.buffer": np.array([7, 8, 9], dtype=np.int64),
        "fc.bias": np.array([-1.0, 1.0], dtype=np.float64),
        "scale": np.array(3.0, dtype=np.float32),
    }


def test_layout_describes_the_model():
    layout = ModelLayout.of(model())
    assert layout.names == tuple(model())
    assert layout.shapes == ((2, 3), (), (3,), (2,), ())
    assert layout.trainable == (0, 3, 4)
    assert layout.size == 6 + 2 + 1


def test_flatten_unflatten_round_trip_leaves_non_float_arrays_unchanged():
    arrays = model()
    layout = ModelLayout.of(arrays)
    flat = layout.flatten(arrays)
    assert flat.dtype == np.float32
    assert flat.tolist() == [0, 1, 2, 3, 4, 5, -1, 1, 3]
    back = layout.unflatten(flat, arrays)
    assert list(back) == list(arrays)
    for name, original in arrays.items():
        assert back[name].dtype == original.dtype and back[name].shape == original.shape
        assert np.array_equal(back[name], original), name

    shifted = layout.unflatten(flat + 1, arrays)
    assert np.array_equal(shifted["conv.weight"], arrays["conv.weight"] + 1)
    assert np.array_equal(shifted["fc.bias"], arrays["fc.bias"] + 1)
    assert shifted["scale"] == 4.0
    assert shifted["bn.num_batches_tracked"] == 41
    assert shifted["bn.buffer"].tolist() == [7, 8, 9]


def test_sparse_round_trip_through_the_layout():
    arrays = model()
    layout = ModelLayout.of(arrays)
    trained = {**arrays, "conv.weight": arrays["conv.weight"] + np.eye(2, 3, dtype=np.float32)}
    delta = layout.flatten(trained) - layout.flatten(arrays)
    update = sparsify(delta, budget(layout.size, 0.25) / layout.size)
    new = layout.unflatten(apply_update(layout.flatten(arrays), update), arrays)
    assert np.array_equal(new["conv.weight"], trained["conv.weight"])


def test_layout_check_rejects_other_models():
    layout = ModelLayout.of(model())
    with pytest.raises(SparseUpdateError):
        layout.flatten({**model(), "extra": np.zeros(1, np.float32)})
    with pytest.raises(SparseUpdateError):
        layout.flatten({**model(), "fc.bias": np.zeros(3)})
    reordered = dict(reversed(list(model().items())))
    with pytest.raises(SparseUpdateError):
        layout.flatten(reordered)
    with pytest.raises(SparseUpdateError):
        layout.unflatten(np.zeros(layout.size + 1, np.float32), model())


def test_aggregate_adds_the_per_coordinate_mean_to_float_arrays_only():
    model = {
        "w": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32),
        "steps": np.array(7, np.int64),
        "b": np.array([10.0], np.float32),
    }
    layout = ModelLayout.of(model)
    a = SparseUpdate(np.array([0, 4], np.int64), np.array([1.0, 2.0], np.float32))
    b = SparseUpdate(np.array([0, 3], np.int64), np.array([3.0, -4.0], np.float32))
    new = aggregate(layout, model, [a, b])
    np.testing.assert_array_equal(new["w"], [[3.0, 2.0], [3.0, 0.0]])  # (1+3)/2 on w[0,0]
    np.testing.assert_array_equal(new["b"], [12.0])
    assert new["steps"] == 7 and new["w"].dtype == np.float32
    np.testing.assert_array_equal(aggregate(layout, model, [])["w"], model["w"])

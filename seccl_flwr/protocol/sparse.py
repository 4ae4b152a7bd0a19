"""Top-k sparsification of parameter changes, their compact form and their merge.

A model is a sequence of named arrays. Its floating-point arrays, flattened in order
and concatenated, form one float32 vector; a sparse update is a set of positions in
that vector (``indices``, strictly increasing ``uint32``) with the change at each
position (``values``, ``float32``). Non-floating arrays (e.g. BatchNorm's
``num_batches_tracked``) are never changed by an update.

All functions here are pure and deterministic: the server and every client compute
bit-identical results from the same inputs, which is what lets a client recompute
the new global model and compare it to the digest on chain.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import ConfigurationError, SparseUpdateError

INDEX_DTYPE = np.dtype("<u4")
VALUE_DTYPE = np.dtype("<f4")


@dataclass(frozen=True)
class ModelLayout:
    """Names, shapes and dtypes of a model's arrays, and which ones updates touch.

    Attributes
    ----------
    names : tuple[str, ...]
        Array names in model order.
    shapes : tuple[tuple[int, ...], ...]
        Shape of each array.
    dtypes : tuple[str, ...]
        ``dtype.str`` of each array.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]

    @classmethod
    def of(cls, arrays: Mapping[str, np.ndarray]) -> "ModelLayout":
        """Return the layout of a model given as named arrays."""
        return cls(
            names=tuple(arrays),
            shapes=tuple(tuple(np.shape(a)) for a in arrays.values()),
            dtypes=tuple(np.asarray(a).dtype.str for a in arrays.values()),
        )

    @property
    def trainable(self) -> tuple[int, ...]:
        """Positions of the floating-point arrays (the ones updates change)."""
        return tuple(i for i, d in enumerate(self.dtypes) if np.dtype(d).kind == "f")

    @property
    def size(self) -> int:
        """Number of floating-point parameters."""
        return sum(math.prod(self.shapes[i]) for i in self.trainable)

    def check(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Raise ``SparseUpdateError`` unless ``arrays`` has exactly this layout."""
        other = ModelLayout.of(arrays)
        if other.names != self.names:
            raise SparseUpdateError(
                f"model arrays {list(other.names)[:5]}... differ from expected "
                f"{list(self.names)[:5]}..."
            )
        for name, shape, expected in zip(self.names, other.shapes, self.shapes, strict=True):
            if shape != expected:
                raise SparseUpdateError(f"array {name!r} has shape {shape}, expected {expected}")

    def flatten(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Return the floating-point arrays as one float32 vector (model order)."""
        self.check(arrays)
        values = list(arrays.values())
        parts = [np.asarray(values[i], dtype=VALUE_DTYPE).ravel() for i in self.trainable]
        return np.concatenate(parts) if parts else np.zeros(0, VALUE_DTYPE)

    def unflatten(
        self, flat: np.ndarray, template: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Return ``template`` with its floating-point arrays replaced from ``flat``."""
        if flat.shape != (self.size,):
            raise SparseUpdateError(f"flat vector has shape {flat.shape}, expected ({self.size},)")
        out = {name: np.asarray(array) for name, array in template.items()}
        offset = 0
        for i in self.trainable:
            name, shape = self.names[i], self.shapes[i]
            count = math.prod(shape)
            out[name] = flat[offset : offset + count].astype(self.dtypes[i]).reshape(shape)
            offset += count
        return out


@dataclass(frozen=True)
class SparseUpdate:
    """A sparse parameter change: ``values`` at flat positions ``indices``."""

    indices: np.ndarray
    values: np.ndarray

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return the compact form carried in messages and hashed."""
        return {"indices": self.indices, "values": self.values}

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, np.ndarray], size: int, max_entries: int | None = None
    ) -> "SparseUpdate":
        """Validate and build an update from its compact form.

        Parameters
        ----------
        arrays : Mapping[str, np.ndarray]
            Exactly ``indices`` (uint32) and ``values`` (float32), both 1-D.
        size : int
            Number of parameters of the model the update applies to.
        max_entries : int | None
            Largest number of entries allowed (the share fraction's budget).

        Raises
        ------
        SparseUpdateError
            On missing or extra arrays, wrong dtypes or shapes, unsorted, repeated or
            out-of-range indices, non-finite values, or too many entries.
        """
        if set(arrays) != {"indices", "values"}:
            raise SparseUpdateError(
                f"sparse update must hold exactly 'indices' and 'values', got {sorted(arrays)}"
            )
        indices, values = np.asarray(arrays["indices"]), np.asarray(arrays["values"])
        if indices.dtype != INDEX_DTYPE or values.dtype != VALUE_DTYPE:
            raise SparseUpdateError(
                f"sparse update dtypes must be uint32/float32, got {indices.dtype}/{values.dtype}"
            )
        if indices.ndim != 1 or values.shape != indices.shape:
            raise SparseUpdateError(
                f"indices {indices.shape} and values {values.shape} must be equal 1-D shapes"
            )
        if max_entries is not None and len(indices) > max_entries:
            raise SparseUpdateError(
                f"sparse update has {len(indices)} entries, more than the allowed {max_entries}"
            )
        if len(indices) and (np.any(np.diff(indices.astype(np.int64)) <= 0)):
            raise SparseUpdateError("sparse update indices must be strictly increasing")
        if len(indices) and int(indices[-1]) >= size:
            raise SparseUpdateError(
                f"sparse update index {int(indices[-1])} out of range for {size} parameters"
            )
        if not np.all(np.isfinite(values)):
            raise SparseUpdateError("sparse update holds NaN or infinite values")
        return cls(indices=indices, values=values)


def budget(size: int, share_fraction: float) -> int:
    """Return the number of entries ``ceil(share_fraction * size)`` an update may keep.

    The product is computed exactly on the decimal value of ``share_fraction``
    (``0.07 * 100`` is 7, not the float ``7.000000000000001`` whose ceiling is 8).
    """
    if not 0.0 < share_fraction <= 1.0:
        raise ConfigurationError(f"share_fraction must lie in (0, 1], got {share_fraction}")
    return min(size, math.ceil(Fraction(str(float(share_fraction))) * size))


def entry_limit(layout: ModelLayout, share_fraction: float, per_tensor: bool = False) -> int:
    """Return the most entries an update made by :func:`sparsify` can hold.

    With ``per_tensor`` every floating-point tensor keeps its own ceiling, so the
    total can exceed the global ``budget(layout.size, share_fraction)``.
    """
    if not per_tensor:
        return budget(layout.size, share_fraction)
    return sum(budget(math.prod(layout.shapes[i]), share_fraction) for i in layout.trainable)


def top_k_indices(magnitudes: np.ndarray, k: int) -> np.ndarray:
    """Return the sorted positions of the ``k`` largest entries (ties: lower position)."""
    if k >= len(magnitudes):
        return np.arange(len(magnitudes), dtype=INDEX_DTYPE)
    if k <= 0:
        return np.zeros(0, dtype=INDEX_DTYPE)
    threshold = np.partition(magnitudes, len(magnitudes) - k)[len(magnitudes) - k]
    above = np.flatnonzero(magnitudes > threshold)
    at = np.flatnonzero(magnitudes == threshold)[: k - len(above)]
    return np.sort(np.concatenate([above, at])).astype(INDEX_DTYPE)


def sparsify(
    delta: np.ndarray,
    share_fraction: float,
    layout: ModelLayout | None = None,
    per_tensor: bool = False,
) -> SparseUpdate:
    """Keep the ``share_fraction`` of changes with the largest magnitude.

    Parameters
    ----------
    delta : np.ndarray
        Flat float32 parameter change (local minus global).
    share_fraction : float
        Fraction of entries to keep, in (0, 1].
    layout : ModelLayout | None
        Needed when ``per_tensor`` is set.
    per_tensor : bool
        Keep ``ceil(share_fraction * numel)`` entries of every tensor instead of a
        global budget.

    Returns
    -------
    SparseUpdate
        The kept entries, indices strictly increasing.
    """
    delta = np.asarray(delta, dtype=VALUE_DTYPE)
    if not np.all(np.isfinite(delta)):
        raise SparseUpdateError("parameter change holds NaN or infinite values")
    magnitudes = np.abs(delta)
    if not per_tensor:
        indices = top_k_indices(magnitudes, budget(len(delta), share_fraction))
    else:
        if layout is None:
            raise ConfigurationError("per_tensor sparsification needs the model layout")
        if len(delta) != layout.size:
            raise SparseUpdateError(
                f"parameter change has {len(delta)} entries, the layout {layout.size}"
            )
        chunks, offset = [np.zeros(0, dtype=np.int64)], 0
        for i in layout.trainable:
            count = math.prod(layout.shapes[i])
            local = top_k_indices(
                magnitudes[offset : offset + count], budget(count, share_fraction)
            )
            chunks.append(local.astype(np.int64) + offset)
            offset += count
        indices = np.concatenate(chunks).astype(INDEX_DTYPE)
    return SparseUpdate(indices=indices, values=delta[indices])


def sparsify_with_feedback(
    change: np.ndarray,
    residual: np.ndarray | None,
    share_fraction: float,
    layout: ModelLayout | None = None,
    per_tensor: bool = False,
) -> tuple[SparseUpdate, np.ndarray]:
    """Sparsify a change with error feedback, as top-k sparsified SGD does.

    The residual (what earlier rounds' updates left out) is added to this round's
    change before :func:`sparsify` keeps the largest entries; what it leaves out is
    the new residual. Nothing is lost or counted twice: the sent update plus the new
    residual is exactly ``change + residual`` (float32), entry by entry.

    Parameters
    ----------
    change : np.ndarray
        Flat float32 parameter change of this round (local minus global).
    residual : np.ndarray | None
        Flat float32 residual of the node's previous update; ``None``: none yet.
    share_fraction, layout, per_tensor
        As for :func:`sparsify`.

    Returns
    -------
    tuple[SparseUpdate, np.ndarray]
        The update to send and the new residual (zero where the update has an entry).

    Raises
    ------
    SparseUpdateError
        If ``residual`` and ``change`` differ in shape, or their sum is not finite.
    """
    change = np.asarray(change, dtype=VALUE_DTYPE)
    if residual is None:
        corrected = change.copy()
    else:
        residual = np.asarray(residual, dtype=VALUE_DTYPE)
        if residual.shape != change.shape:
            raise SparseUpdateError(
                f"residual has shape {residual.shape}, the parameter change {change.shape}"
            )
        with np.errstate(over="ignore"):  # an overflow is refused below, naming it
            corrected = change + residual
    update = sparsify(corrected, share_fraction, layout, per_tensor)
    corrected[update.indices] = 0.0
    return update, corrected


def apply_update(flat: np.ndarray, update: SparseUpdate) -> np.ndarray:
    """Return ``flat + update`` as a new float32 vector."""
    out = np.array(flat, dtype=VALUE_DTYPE, copy=True)
    out[update.indices] += update.values
    return out


def merge_updates(size: int, updates: Sequence[SparseUpdate]) -> np.ndarray:
    """Return the dense merge of sparse updates: per-coordinate mean over senders.

    A coordinate no update touches stays 0. Updates are summed in the given order in
    float64, so the result is bit-identical wherever it is computed.
    """
    total = np.zeros(size, dtype=np.float64)
    counts = np.zeros(size, dtype=np.int64)
    for update in updates:
        total[update.indices] += update.values
        counts[update.indices] += 1
    np.divide(total, counts, out=total, where=counts > 0)
    return total.astype(VALUE_DTYPE)


def aggregate(
    layout: ModelLayout, arrays: Mapping[str, np.ndarray], updates: Sequence[SparseUpdate]
) -> dict[str, np.ndarray]:
    """Return SecCL's new global model: ``arrays`` plus the merge of ``updates``.

    The server aggregates with it, and clients and the auditor recompute with it
    what the server must have sent.
    """
    return layout.unflatten(layout.flatten(arrays) + merge_updates(layout.size, updates), arrays)

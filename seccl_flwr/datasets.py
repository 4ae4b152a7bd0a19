"""Small real data sets and their partitioning for tests, demos and experiments.

``digits`` is scikit-learn's bundled 8x8 handwritten digits (1,797 images), which
needs no download. ``mnist_idx`` reads MNIST from IDX files (e.g. the real 10k test
set in ``../shared/data/mnist``); where only that set exists, it is split into the
participants' training and validation parts and a held-out test part, and every
output that uses it says so.
"""

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset


@dataclass(frozen=True)
class Partition:
    """One participant's data: a training loader and a validation split."""

    train: DataLoader
    val_x: torch.Tensor
    val_y: torch.Tensor


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's digits as float32 images in [0, 1] (N, 1, 8, 8) and labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None, :, :]
    return x, data.target.astype(np.int64)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array."""
    path = Path(path)
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0D: ">f4"}[raw[2]]
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)


def load_mnist_idx(directory: str | Path, split: str = "t10k") -> tuple[np.ndarray, np.ndarray]:
    """Return MNIST images (N, 1, 28, 28) float32 in [0, 1] and labels from IDX files."""
    directory = Path(directory)
    images = read_idx(directory / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(directory / f"{split}-labels-idx1-ubyte.gz")
    return (images.astype(np.float32) / 255.0)[:, None, :, :], labels.astype(np.int64)


def split_held_out(
    x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Shuffle and split into (participants' pool, held-out test set)."""
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(len(y) * (1 - test_fraction))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def partition_indices(
    labels: np.ndarray, num_partitions: int, seed: int, alpha: float | None = None
) -> list[np.ndarray]:
    """Split sample indices among participants.

    ``alpha=None`` gives the paper's IID equal split; a float gives a Dirichlet(alpha)
    label-skewed (non-IID) split.
    """
    rng = np.random.default_rng(seed)
    if alpha is None:
        return [np.sort(p) for p in np.array_split(rng.permutation(len(labels)), num_partitions)]
    parts: list[list[int]] = [[] for _ in range(num_partitions)]
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        shares = rng.dirichlet([alpha] * num_partitions)
        cuts = (np.cumsum(shares) * len(idx)).astype(int)[:-1]
        for p, chunk in enumerate(np.split(idx, cuts)):
            parts[p].extend(chunk.tolist())
    return [np.sort(np.array(p, dtype=np.int64)) for p in parts]


def make_partition(
    x: np.ndarray,
    y: np.ndarray,
    indices: np.ndarray,
    val_fraction: float = 0.2,
    batch_size: int = 32,
    seed: int = 0,
) -> Partition:
    """Return one participant's training loader and validation split."""
    order = np.random.default_rng(seed).permutation(indices)
    n_val = max(1, int(len(order) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        TensorDataset(torch.from_numpy(x[train]), torch.from_numpy(y[train])),
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
    )
    return Partition(loader, torch.from_numpy(x[val]), torch.from_numpy(y[val]))

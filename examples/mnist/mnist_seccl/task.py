"""The model, the data and its partitioning for the MNIST example.

Data: torchvision's MNIST where torchvision imports (it downloads where a network
exists), else IDX files from a directory. If that directory holds only the 10k
test set (``t10k-*``, as ``../shared/data/mnist`` does), those 10,000 real digits
are split into the participants' pool and a held-out test set; every output that
uses the data says which split it came from (:attr:`MnistData.note`).

Each participant's share of the pool is split again into its training part and
its private validation part (SecCL's cross-evaluation scores peers on it).
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seccl_flwr.datasets import (
    Partition,
    load_mnist_idx,
    make_partition,
    partition_indices,
    split_held_out,
)

DATA_SOURCES = ("auto", "torchvision", "idx")
REPO_ROOT = Path(__file__).resolve().parents[3]
"""The seccl-flwr repository root (``examples/mnist/mnist_seccl/task.py`` up three)."""


class MnistNet(nn.Module):
    """A small CNN for 28x28 digits (two conv layers, 10,910 parameters).

    Weights start as a Keras model's do (Glorot uniform, zero biases), as the
    paper's Keras CNN did: with plain SGD at lr 0.02 this learns far sooner than
    PyTorch's default initialization.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 5),  # 24x24
            nn.ReLU(),
            nn.MaxPool2d(2),  # 12x12
            nn.Conv2d(8, 16, 5),  # 8x8
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 4 * 4, 28), nn.ReLU(), nn.Linear(28, 10)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits."""
        return self.head(self.features(x))


def initial_model(seed: int = 0) -> MnistNet:
    """Return the initial global model (deterministic for a seed)."""
    torch.manual_seed(seed)
    return MnistNet()


@dataclass(frozen=True)
class MnistData:
    """The participants' pool, the held-out test set and where they came from."""

    pool_x: np.ndarray
    pool_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    note: str


def data_dir_candidates(data_dir: str | Path | None = None) -> list[Path]:
    """Return the directories searched for MNIST IDX files, in order.

    An explicit ``data_dir`` is the only candidate; otherwise ``../shared/data/mnist``
    relative to the repository root and to the working directory.
    """
    if data_dir:
        return [Path(data_dir).expanduser()]
    return [REPO_ROOT.parent / "shared/data/mnist", Path.cwd().parent / "shared/data/mnist"]


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """Return the first candidate directory that holds MNIST's t10k IDX files.

    Raises
    ------
    FileNotFoundError
        Naming every path tried, if none holds ``t10k-images-idx3-ubyte.gz``.
    """
    tried = data_dir_candidates(data_dir)
    for path in tried:
        if (path / "t10k-images-idx3-ubyte.gz").is_file():
            return path.resolve()
    raise FileNotFoundError(
        "no MNIST IDX files (t10k-images-idx3-ubyte.gz) in "
        + ", ".join(str(p) for p in tried)
        + "; set the run config key 'data-dir' (or --data-dir) to their directory"
    )


def _subsample(x: np.ndarray, y: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if size <= 0 or size >= len(y):
        return x, y
    keep = np.sort(np.random.default_rng(seed).permutation(len(y))[:size])
    return x[keep], y[keep]


def _torchvision_arrays(root: Path) -> tuple[np.ndarray, ...] | None:
    """Return MNIST's train and test arrays via torchvision, or ``None`` if unavailable."""
    try:
        from torchvision.datasets import MNIST
    except Exception:  # noqa: BLE001 - a broken torchvision build raises RuntimeError
        return None
    try:
        train = MNIST(str(root), train=True, download=True)
        test = MNIST(str(root), train=False, download=True)
    except Exception:  # noqa: BLE001 - no network, no files: fall back to IDX
        return None
    out = []
    for split in (train, test):
        out.append((split.data.numpy().astype(np.float32) / 255.0)[:, None, :, :])
        out.append(split.targets.numpy().astype(np.int64))
    return tuple(out)


def _train_and_test(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    pool_size: int,
    test_size: int,
    seed: int,
    source: str,
) -> "MnistData":
    """Pool from MNIST's training set, held-out digits from its test set."""
    pool_x, pool_y = _subsample(train_x, train_y, pool_size, seed)
    test_x, test_y = _subsample(test_x, test_y, test_size, seed + 1)
    note = (
        f"{source}: {len(pool_y):,} training digits split among participants, "
        f"{len(test_y):,} test digits held out"
    )
    return MnistData(pool_x, pool_y, test_x, test_y, note)


@cache
def load_data(
    data_dir: str = "",
    source: str = "auto",
    pool_size: int = 8000,
    test_size: int = 2000,
    seed: int = 0,
) -> MnistData:
    """Return the participants' pool and the held-out test set.

    Parameters
    ----------
    data_dir : str
        Directory of the IDX files (and torchvision's download root); empty to
        search :func:`data_dir_candidates`.
    source : str
        ``"auto"`` (torchvision if it imports and loads, else IDX), ``"torchvision"``
        or ``"idx"``.
    pool_size, test_size : int
        Digits for the participants and for the held-out test set (0: all there are).
    seed : int
        Seed of the shuffles.

    Raises
    ------
    ValueError
        If ``source`` is unknown, or torchvision was asked for and is unavailable.
    """
    if source not in DATA_SOURCES:
        raise ValueError(f"unknown data source {source!r}; choose from {DATA_SOURCES}")
    if source in ("auto", "torchvision"):
        root = Path(data_dir).expanduser() if data_dir else Path.home() / ".cache/mnist"
        arrays = _torchvision_arrays(root)
        if arrays is not None:
            return _train_and_test(*arrays, pool_size, test_size, seed, "torchvision MNIST")
        if source == "torchvision":
            raise ValueError("data source 'torchvision' requested but torchvision is unavailable")
    directory = resolve_data_dir(data_dir)
    if (directory / "train-images-idx3-ubyte.gz").is_file():
        arrays = (*load_mnist_idx(directory, "train"), *load_mnist_idx(directory, "t10k"))
        return _train_and_test(*arrays, pool_size, test_size, seed, "MNIST IDX")
    x, y = load_mnist_idx(directory, "t10k")
    test_size = test_size if test_size > 0 else len(y) // 5
    if test_size >= len(y):
        raise ValueError(f"test-size {test_size} leaves no digits of {len(y)} for participants")
    (pool_x, pool_y), (test_x, test_y) = split_held_out(x, y, test_size / len(y), seed)
    pool_x, pool_y = _subsample(pool_x, pool_y, pool_size, seed)
    note = (
        f"MNIST test set ({len(y) // 1000}k) split: {len(pool_y):,} digits for "
        f"participants, {len(test_y):,} held out"
    )
    return MnistData(pool_x, pool_y, test_x, test_y, note)


def data_from_config(run_config) -> MnistData:
    """Return :func:`load_data` for the run config keys ``data-*``, ``pool-size`` etc."""
    return load_data(
        str(run_config.get("data-dir", "")),
        str(run_config.get("data-source", "auto")),
        int(run_config.get("pool-size", 8000)),
        int(run_config.get("test-size", 2000)),
        int(run_config.get("seed", 0)),
    )


def partition(
    data: MnistData,
    partition_id: int,
    num_partitions: int,
    alpha: float = 0.0,
    val_fraction: float = 0.2,
    batch_size: int = 32,
    seed: int = 0,
    per_participant: int = 0,
) -> Partition:
    """Return one participant's training loader and validation split.

    ``alpha <= 0`` is the paper's IID equal split; ``alpha > 0`` a Dirichlet(alpha)
    label-skewed split. ``per_participant > 0`` instead gives each participant that
    many digits drawn from the whole pool on its own (participants' digits overlap):
    a per-participant workload as large as the paper's (3,000 digits of MNIST's 60k
    training set each, at 20 participants) where the pool is smaller, for timing.
    """
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} not in [0, {num_partitions})")
    if per_participant < 0 or per_participant > len(data.pool_y):
        raise ValueError(
            f"digits-per-participant {per_participant} not in [0, {len(data.pool_y)}] "
            "(the pool's size)"
        )
    if per_participant:
        rng = np.random.default_rng([seed, partition_id])
        indices = rng.choice(len(data.pool_y), size=per_participant, replace=False)
    else:
        indices = partition_indices(
            data.pool_y, num_partitions, seed, alpha=alpha if alpha > 0 else None
        )[partition_id]
    if len(indices) < 2:
        raise ValueError(
            f"partition {partition_id} of {num_partitions} holds {len(indices)} digits "
            f"(dirichlet-alpha={alpha}); use a larger alpha or pool"
        )
    return make_partition(
        data.pool_x,
        data.pool_y,
        indices,
        val_fraction=val_fraction,
        batch_size=batch_size,
        seed=seed + partition_id,
    )


def model_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """Return a model's parameters as named numpy arrays."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def test_tensors(data: MnistData) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the held-out test set as tensors."""
    return torch.from_numpy(data.test_x), torch.from_numpy(data.test_y)


def server_evaluate_fn(data: MnistData):
    """Return Flower's ``evaluate_fn``: the global model on the held-out test set."""
    from flwr.app import ArrayRecord, MetricRecord

    from seccl_flwr.records import arrays_of
    from seccl_flwr.torch_task import torch_evaluate_fn

    x, y = test_tensors(data)
    evaluate = torch_evaluate_fn(MnistNet(), x, y, "cpu")

    def fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        return MetricRecord(evaluate(arrays_of(arrays)))

    return fn

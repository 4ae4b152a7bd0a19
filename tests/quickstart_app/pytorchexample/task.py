"""pytorchexample: A Flower / PyTorch app.

Flower's quickstart-pytorch, on the real MNIST test set (IDX files in ``data-dir``):
the 10,000 digits are shuffled with ``seed``; ``test-size`` of them are held out
for the server's centralized evaluation and ``pool-size`` are split IID among the
partitions, each keeping 20 % for its own evaluation.
"""

import gzip
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - as in Flower's quickstart
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    """Model (simple CNN adapted from 'PyTorch: A 60 Minute Blitz'), for 28x28 digits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 4 * 4)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def _read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@cache
def _mnist(data_dir: str, seed: int, pool_size: int, test_size: int):
    """Return ((pool x, y), (test x, y)) of the shuffled MNIST test set."""
    x = _read_idx(Path(data_dir) / "t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = _read_idx(Path(data_dir) / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    test, pool = order[:test_size], order[test_size : test_size + pool_size]
    tensors = lambda idx: (torch.from_numpy(x[idx, None]), torch.from_numpy(y[idx]))  # noqa: E731
    return tensors(pool), tensors(test)


def load_data(partition_id: int, num_partitions: int, run_config: dict):
    """Return this partition's train and evaluation loaders (an IID share of the pool)."""
    (x, y), _ = _mnist(
        run_config["data-dir"], run_config["seed"], run_config["pool-size"], run_config["test-size"]
    )
    share = np.array_split(np.arange(len(y)), num_partitions)[partition_id]
    cut = int(0.8 * len(share))
    train, val = share[:cut], share[cut:]
    generator = torch.Generator().manual_seed(run_config["seed"] + partition_id)
    batch_size = run_config["batch-size"]
    trainloader = DataLoader(
        TensorDataset(x[train], y[train]), batch_size=batch_size, shuffle=True, generator=generator
    )
    valloader = DataLoader(TensorDataset(x[val], y[val]), batch_size=batch_size)
    return trainloader, valloader


def load_centralized_dataset(run_config: dict) -> DataLoader:
    """Return the held-out test set the server evaluates on."""
    _, (x, y) = _mnist(
        run_config["data-dir"], run_config["seed"], run_config["pool-size"], run_config["test-size"]
    )
    return DataLoader(TensorDataset(x, y), batch_size=256)


def train(net, trainloader, epochs, lr, device):
    """Train the model on the training set."""
    net.to(device)
    criterion = torch.nn.CrossEntropyLoss().to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    running_loss = 0.0
    for _ in range(epochs):
        for images, labels in trainloader:
            optimizer.zero_grad()
            loss = criterion(net(images.to(device)), labels.to(device))
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
    return running_loss / (epochs * len(trainloader))


def test(net, testloader, device):
    """Validate the model on the test set."""
    net.to(device)
    net.eval()
    criterion = torch.nn.CrossEntropyLoss()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for images, labels in testloader:
            images, labels = images.to(device), labels.to(device)
            outputs = net(images)
            loss += criterion(outputs, labels).item()
            correct += (torch.max(outputs.data, 1)[1] == labels).sum().item()
    return loss / len(testloader), correct / len(testloader.dataset)

"""SecCL vs Flower's FedAvg: same clients, data, model and rounds, in one process.

Both strategies run through :class:`~seccl_flwr.inprocess.InProcessGrid` (no Ray,
ClientApps called in-process one after the other) on the same client functions:
FedAvg's ClientApp calls the very same ``train_fn`` and ``evaluate_fn`` as SecCL's.
Workloads (``--task``, see :class:`Workload`):

* ``digits``: :mod:`seccl_flwr.apps.digits`, scikit-learn's 8x8 digits and a 1.4k
  parameter CNN (``--hidden 4096``: 570k), about 70 training images per client at
  20 clients: a client trains in milliseconds;
* ``mnist``: the MNIST example app (``examples/mnist``, the paper's CNN) on the
  shared MNIST digits, once with the reproduction's equal split (400 per client at
  20 clients) and once with the paper's 3,000 digits per client
  (``--digits-per-client 0 3000``; this machine has only the 10k test set, so the
  3,000 are drawn per client with overlap, a workload for timing).

SecCL runs on each chain named by ``--chain``: ``embedded`` (eth-tester + py-evm in
this process, served over loopback HTTP so the clients read it as they would a real
node) and ``anvil`` (Foundry's native dev node, started on a free port; the default
includes it when it is installed), side by side in one run.

What is counted as "chain + hash + sign" (the protocol's security overhead):

* server: ``RoundRecord.chain_seconds`` - every transaction (build incl. gas
  estimation, signing, sending, receipt), every view, digest, signature check;
* clients: time inside the SecCL client handlers spent in chain reads over HTTP
  (connecting, attaching to the contract, views and log queries) and in hashing,
  signing and signature verification, as the client reports it through the
  library's metering hook (:mod:`seccl_flwr.metering`, categories ``chain-read``
  and ``hash-sign-verify``).

Training, scoring (the cross-evaluation inference) and evaluation are timed through
the same hook, around the calls of the client functions (SecCL's and FedAvg's
ClientApps report them alike); what is left of a phase is message handling
(InProcessGrid deep copies, sparsification, record conversion).

Usage::

    python benchmarks/seccl_vs_fedavg.py                   # every workload, 5 and 20 clients
    python benchmarks/seccl_vs_fedavg.py --quick           # digits, 1 round at 5 clients
    python benchmarks/seccl_vs_fedavg.py --task mnist --digits-per-client 3000
    python benchmarks/seccl_vs_fedavg.py --chain anvil     # only the anvil node
    python benchmarks/seccl_vs_fedavg.py --clients 5 --rounds 2 --profile out.pstats
"""

import argparse
import contextlib
import cProfile
import functools
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord
from flwr.serverapp.strategy import FedAvg

from seccl_flwr.apps import digits, digits_fedavg
from seccl_flwr.chain.anvil import AnvilNode, anvil_command
from seccl_flwr.chain.connection import EMBEDDED
from seccl_flwr.chain.rpc_server import free_loopback_url
from seccl_flwr.client_checks import pinned_run_config
from seccl_flwr.inprocess import InProcessGrid
from seccl_flwr.metering import CHAIN_READ, CRYPTO, EVALUATE, SCORE, TRAIN, use_meter
from seccl_flwr.records import arrays_of
from seccl_flwr.report import write_csv
from seccl_flwr.strategy import PHASES, SecCL
from seccl_flwr.torch_task import load_arrays, predict
from seccl_flwr.wire import CROSS_EVALUATE, phase_of

TASKS = ("digits", "mnist")
CANDIDATE_FRACTION = 0.4
SHARE_FRACTION = 0.1
WORK = (TRAIN, SCORE, EVALUATE)


# --------------------------------------------------------------------- metering
class Meter:
    """Client-side time, by message type and category, measured in-process.

    A meter of :mod:`seccl_flwr.metering` (:meth:`measure`), installed by
    :class:`MeteredGrid` only while a message is being delivered to a ClientApp;
    a block nested in an already metered one is not counted twice.
    """

    def __init__(self) -> None:
        self.message_type: str | None = None
        self.depth = 0
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self.messages: dict[str, int] = defaultdict(int)

    def reset(self) -> None:
        """Forget everything measured."""
        self.seconds.clear()
        self.calls.clear()
        self.messages.clear()

    @contextlib.contextmanager
    def measure(self, category: str) -> Iterator[None]:
        """Time the block under ``category`` while a client handler runs (a library meter)."""
        if self.message_type is None or self.depth:
            yield
            return
        self.depth += 1
        start = time.perf_counter()
        try:
            yield
        finally:
            key = (self.message_type, category)
            self.seconds[key] += time.perf_counter() - start
            self.calls[key] += 1
            self.depth -= 1

    def total(self, category: str, message_type: str | None = None) -> float:
        """Seconds in ``category`` (for one message type, or all)."""
        return sum(
            s for (t, c), s in self.seconds.items() if c == category and message_type in (None, t)
        )

    def count(self, category: str, message_type: str | None = None) -> int:
        """Metered calls in ``category`` (for one message type, or all)."""
        return sum(
            n for (t, c), n in self.calls.items() if c == category and message_type in (None, t)
        )


METER = Meter()


class MeteredGrid(InProcessGrid):
    """InProcessGrid that meters each ClientApp call with :data:`METER`.

    The client reports its chain reads, its hash/sign/verify work and its calls of
    the client functions through :mod:`seccl_flwr.metering`; the grid installs the
    meter only while it delivers a message, so the server's own work is not counted.
    """

    def send_and_receive(self, messages, *, timeout=None):
        """Deliver messages one by one, metering each ClientApp call."""
        replies = []
        for message in messages:
            METER.message_type = phase_of(message)
            METER.messages[METER.message_type] += 1
            try:
                with use_meter(METER.measure):
                    replies.extend(super().send_and_receive([message], timeout=timeout))
            finally:
                METER.message_type = None
        return replies


# ------------------------------------------------------------------------- runs
@dataclass
class Outcome:
    """One strategy's run at one client count."""

    wall: float
    rounds: int
    final_val_accuracy: float
    test_accuracy: float
    phases: dict[str, float] = field(default_factory=dict)
    client: dict[str, float] = field(default_factory=dict)
    chain_seconds: float = 0.0
    gas: float = 0.0


MNIST_APP = Path(__file__).resolve().parents[1] / "examples" / "mnist"
"""The MNIST Flower app (``examples/mnist``): its model, data and ClientApps."""


@functools.cache
def mnist_modules():
    """Import the MNIST example's ``client_app`` and ``task`` modules."""
    if str(MNIST_APP) not in sys.path:
        sys.path.insert(0, str(MNIST_APP))
    from mnist_seccl import client_app, task

    return client_app, task


@dataclass(frozen=True)
class Workload:
    """What every client computes: the task, the model size and the local epochs.

    ``digits``: :mod:`seccl_flwr.apps.digits` (8x8 digits, 1.4k-parameter CNN, or
    570k with ``hidden=4096``), about 70 training images per client at 20 clients.
    ``mnist``: the MNIST example app (the paper's 10.9k-parameter CNN, lr 0.02,
    batch 32) on the 8,000 pool digits, 400 per client at 20 clients; its
    ``reproduce.py`` uses the same settings. ``per_client > 0`` gives each client
    that many pool digits instead (overlapping): 3,000 is the paper's share at 20
    participants.
    """

    task: str = "digits"
    seed: int = 0
    hidden: int = 0
    local_epochs: int = 1
    per_client: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose from {TASKS}")
        if self.task != "digits" and self.hidden:
            raise ValueError("hidden applies to the digits task only")
        if self.task != "mnist" and self.per_client:
            raise ValueError("digits per client apply to the mnist task only")

    @property
    def module(self):
        """The task module whose ``client_functions`` and ``app`` the runs use."""
        return digits if self.task == "digits" else mnist_modules()[0]

    @property
    def fedavg_app(self):
        """Flower's plain ClientApp on the same client functions."""
        return digits_fedavg.app if self.task == "digits" else mnist_modules()[0].flower_app

    def run_config(self, **extra) -> dict:
        """Return the app's run config for this workload."""
        config = {"seed": self.seed, "local-epochs": self.local_epochs}
        if self.task == "digits":
            config["hidden"] = self.hidden
        else:
            config["data-source"] = "idx"
            config["digits-per-participant"] = self.per_client
        return {**config, **extra}

    def model(self, seed: int) -> torch.nn.Module:
        """Return the task's model, initialised for ``seed``."""
        if self.task == "digits":
            return digits.initial_model(seed, self.hidden)
        return mnist_modules()[1].initial_model(seed)

    def initial_arrays(self) -> ArrayRecord:
        """Return the initial global model."""
        return ArrayRecord(self.model(self.seed).state_dict())

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the held-out test set (no participant holds it)."""
        if self.task == "digits":
            return digits.test_set(self.seed)
        task = mnist_modules()[1]
        return task.test_tensors(task.data_from_config(self.run_config()))

    @property
    def data_note(self) -> str:
        """Which data the workload used."""
        if self.task == "digits":
            return digits.DATA_NOTE
        note = mnist_modules()[1].data_from_config(self.run_config()).note
        if self.per_client:
            note += (
                f"; each client draws {self.per_client:,} of the participants' digits on its "
                "own (clients overlap: a timing workload of the paper's size)"
            )
        return note

    @property
    def name(self) -> str:
        """Short label for tables."""
        params = sum(p.numel() for p in self.model(0).parameters())
        share = f"/{self.per_client}pc" if self.per_client else ""
        return f"{self.task} {params / 1e3:.0f}k/{self.local_epochs}ep{share}"


def test_accuracy(arrays: ArrayRecord, work: Workload) -> float:
    """Accuracy of the final global model on the held-out test set."""
    model = work.model(work.seed)
    load_arrays(model, arrays_of(arrays), "cpu")
    x, y = work.test_set()
    return float((predict(model, x, "cpu").argmax(1) == y).float().mean())


def warm_up(num_clients: int, work: Workload) -> None:
    """Build every partition and run one forward pass before anything is timed."""
    grid = InProcessGrid(work.module.app, num_clients, run_config=work.run_config())
    model = work.model(work.seed)
    arrays = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    for context in grid.contexts.values():
        work.module.client_functions(context)[1](arrays)  # evaluate
    # first backward pass / optimizer step pays one-off set-up: not on a timed run
    scratch = work.model(work.seed + 1)
    x, y = work.test_set()
    loss = torch.nn.functional.cross_entropy(scratch(x[:32]), y[:32])
    loss.backward()
    torch.optim.SGD(scratch.parameters(), lr=0.05).step()


def client_summary(rounds: int) -> dict[str, float]:
    """Per-round client-side seconds of the metered categories."""
    out = {}
    for category in (CHAIN_READ, CRYPTO, *WORK):
        out[category] = METER.total(category) / rounds
    ce = CROSS_EVALUATE
    out["ce.chain-read"] = METER.total(CHAIN_READ, ce) / rounds
    out["ce.chain-read-calls"] = METER.count(CHAIN_READ, ce) / rounds
    out["ce.crypto"] = METER.total(CRYPTO, ce) / rounds
    out["ce.crypto-calls"] = METER.count(CRYPTO, ce) / rounds
    out["ce.score"] = METER.total("score", ce) / rounds
    out["ce.score-calls"] = METER.count("score", ce) / rounds
    out["ce.messages"] = METER.messages.get(ce, 0) / rounds
    return out


def run_fedavg(num_clients: int, rounds: int, work: Workload) -> Outcome:
    """Run Flower's FedAvg on the digits clients; return its timings."""
    grid = MeteredGrid(work.fedavg_app, num_clients, run_config=work.run_config())
    strategy = FedAvg(min_available_nodes=num_clients)
    METER.reset()
    start = time.perf_counter()
    result = strategy.start(grid, work.initial_arrays(), num_rounds=rounds)
    wall = time.perf_counter() - start
    return Outcome(
        wall=wall,
        rounds=rounds,
        final_val_accuracy=float(result.evaluate_metrics_clientapp[rounds]["accuracy"]),
        test_accuracy=test_accuracy(result.arrays, work),
        client=client_summary(rounds),
    )


def run_seccl(
    num_clients: int,
    rounds: int,
    work: Workload,
    chain: str = EMBEDDED,
    profile: cProfile.Profile | None = None,
    gas_limit: int | None = None,
    committee_size: int = 0,
    app_config: dict | None = None,
) -> Outcome:
    """Run SecCL on the digits clients; return timings.

    ``chain`` is ``"embedded"`` (served over loopback) or a node's JSON-RPC URL.
    ``committee_size`` is the run's k (0: every author scores every other);
    ``app_config`` extra run config of the app (e.g. MNIST's ``score-batch``).
    """
    url = free_loopback_url() if chain == EMBEDDED else chain
    pins = pinned_run_config(CANDIDATE_FRACTION, SHARE_FRACTION)
    committee = {}
    if committee_size:  # only where committees exist (issue 16)
        pins = pinned_run_config(CANDIDATE_FRACTION, SHARE_FRACTION, committee_size=committee_size)
        committee = {"committee_size": committee_size}
    grid = MeteredGrid(
        work.module.app,
        num_clients,
        run_config=work.run_config(
            **{"seccl-key-seed": work.seed + 7, "seccl-chain-url": url},
            **pins,
            **(app_config or {}),
        ),
    )
    strategy = SecCL(
        candidate_fraction=CANDIDATE_FRACTION,
        share_fraction=SHARE_FRACTION,
        chain=chain,
        chain_url=url if chain == EMBEDDED else None,
        min_available_nodes=num_clients,
        run_label=f"bench-{num_clients}-{work.seed}-{time.time_ns()}",
        gas_limit=gas_limit,
        **committee,
    )
    METER.reset()
    start = time.perf_counter()
    if profile is not None:
        profile.enable()
    try:
        result = strategy.start(grid, work.initial_arrays(), num_rounds=rounds)
    finally:
        if profile is not None:
            profile.disable()
    wall = time.perf_counter() - start
    records = result.rounds
    return Outcome(
        wall=wall,
        rounds=rounds,
        final_val_accuracy=float(records[-1].evaluate_metrics["accuracy"]),
        test_accuracy=test_accuracy(result.arrays, work),
        phases={p: float(np.mean([r.seconds.get(p, 0.0) for r in records])) for p in PHASES},
        client=client_summary(rounds),
        chain_seconds=float(np.mean([r.chain_seconds for r in records])),
        gas=float(np.mean([sum(r.gas.values()) for r in records])),
    )


# ----------------------------------------------------------------------- report
def row_of(
    chain: str, num_clients: int, work: Workload, fedavg: Outcome, seccl: Outcome
) -> dict[str, float | int | str]:
    """One table/CSV row."""
    f_round = fedavg.wall / fedavg.rounds
    s_round = sum(seccl.phases.values())
    client_overhead = seccl.client[CHAIN_READ] + seccl.client[CRYPTO]
    overhead = seccl.chain_seconds + client_overhead
    row: dict[str, float | int | str] = {
        "model": work.name,
        "chain": chain,
        "clients": num_clients,
        "rounds": seccl.rounds,
        "fedavg_s_per_round": f_round,
        "seccl_s_per_round": s_round,
        "ratio": s_round / f_round,
        "ratio_total_wall": seccl.wall / fedavg.wall,
    }
    row.update({f"seccl_{p}_s": seccl.phases[p] for p in PHASES})
    row.update(
        {
            "server_chain_s": seccl.chain_seconds,
            "client_chain_read_s": seccl.client[CHAIN_READ],
            "client_crypto_s": seccl.client[CRYPTO],
            "overhead_s": overhead,
            "overhead_pct": 100 * overhead / s_round,
            "gas_per_round": seccl.gas,
            "seccl_train_fn_s": seccl.client["train"],
            "seccl_score_fn_s": seccl.client["score"],
            "seccl_evaluate_fn_s": seccl.client["evaluate"],
            "fedavg_train_fn_s": fedavg.client["train"],
            "fedavg_evaluate_fn_s": fedavg.client["evaluate"],
            "ce_messages": seccl.client["ce.messages"],
            "ce_chain_read_s": seccl.client["ce.chain-read"],
            "ce_chain_read_calls": seccl.client["ce.chain-read-calls"],
            "ce_crypto_s": seccl.client["ce.crypto"],
            "ce_crypto_calls": seccl.client["ce.crypto-calls"],
            "ce_score_s": seccl.client["ce.score"],
            "ce_score_calls": seccl.client["ce.score-calls"],
            "fedavg_val_acc": fedavg.final_val_accuracy,
            "seccl_val_acc": seccl.final_val_accuracy,
            "fedavg_test_acc": fedavg.test_accuracy,
            "seccl_test_acc": seccl.test_accuracy,
        }
    )
    return row


def print_table(
    rows: list[dict], gas_limit: int | None = None, workloads: tuple[Workload, ...] = ()
) -> None:
    """Print the comparison, one block per client count."""
    print()
    for work in workloads:
        print(f"Data ({work.name}): {work.data_note}")
    print("Models ('model' = task parameters/local epochs): digits - DigitsNet, SGD lr 0.05;")
    print("mnist - the paper's CNN, SGD lr 0.02; batch 32, all nodes sampled every round.")
    print(f"SecCL: lambda={CANDIDATE_FRACTION}, share fraction {SHARE_FRACTION}; chain: embedded")
    print("(eth-tester/py-evm over loopback HTTP) or anvil (native node); gas limit of the")
    print(
        "server's transactions: "
        + (
            "estimated by the node (the embedded chain: 90% of its block limit)"
            if gas_limit is None
            else f"fixed at {gas_limit:,} (--gas-limit), no estimate"
        )
        + ". Times are means per round, in seconds."
    )
    print()
    head = (
        f"{'model':>22} {'chain':>8} {'clients':>7} {'FedAvg s/rd':>11} {'SecCL s/rd':>10}"
        f" {'ratio':>6} | "
        + " ".join(f"{p:>9}" for p in ("train", "anchor", "x-eval", "elect", "aggr", "eval"))
        + f" | {'chain+h+s':>9} {'% rd':>6} {'gas/round':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['model']:>22} {r['chain']:>8} {r['clients']:>7} {r['fedavg_s_per_round']:>11.3f}"
            f" {r['seccl_s_per_round']:>10.3f} {r['ratio']:>6.2f} | "
            + " ".join(f"{r[f'seccl_{p}_s']:>9.3f}" for p in PHASES)
            + f" | {r['overhead_s']:>9.3f} {r['overhead_pct']:>5.1f}% {r['gas_per_round']:>10,.0f}"
        )
    print()
    print("chain+h+s = server chain_seconds (tx build/gas estimate/sign/send/receipt, views,")
    print("digests, signature checks) + client chain reads over HTTP + client hashing,")
    print("signing and signature verification. Breakdown per round:")
    for r in rows:
        n = f"{r['model']}, {r['chain']}, {r['clients']:>2} clients"
        print(
            f"  {n}: server chain {r['server_chain_s']:.3f}s | client chain reads "
            f"{r['client_chain_read_s']:.3f}s | client hash/sign/verify {r['client_crypto_s']:.3f}s"
        )
        print(
            f"             client work: SecCL train_fn {r['seccl_train_fn_s']:.3f}s, score_fn "
            f"{r['seccl_score_fn_s']:.3f}s, evaluate_fn {r['seccl_evaluate_fn_s']:.3f}s | "
            f"FedAvg train_fn {r['fedavg_train_fn_s']:.3f}s, evaluate_fn "
            f"{r['fedavg_evaluate_fn_s']:.3f}s"
        )
        msgs = max(r["ce_messages"], 1)
        peers = max(r["ce_score_calls"], 1)
        print(
            f"             cross-evaluation per evaluator: {r['ce_chain_read_calls'] / msgs:.1f} "
            f"chain reads {1e3 * r['ce_chain_read_s'] / msgs:.1f}ms, "
            f"{r['ce_crypto_calls'] / msgs:.1f} hash/sign/verify calls "
            f"{1e3 * r['ce_crypto_s'] / msgs:.1f}ms, scoring "
            f"{1e3 * r['ce_score_s'] / msgs:.1f}ms "
            f"({1e3 * r['ce_score_s'] / peers:.2f}ms per peer)"
        )
        print(
            f"             total wall incl. SecCL set-up (register, deploy): ratio "
            f"{r['ratio_total_wall']:.2f}"
        )
    print()
    print("Final accuracy (validation splits, federated | held-out test set):")
    for r in rows:
        print(
            f"  {r['model']}, {r['chain']}, {r['clients']:>2} clients: "
            f"FedAvg {r['fedavg_val_acc']:.3f} | "
            f"{r['fedavg_test_acc']:.3f}   SecCL {r['seccl_val_acc']:.3f} | "
            f"{r['seccl_test_acc']:.3f}"
        )
    print()
    for key in dict.fromkeys((r["model"], r["chain"]) for r in rows):
        worst = max(r["overhead_pct"] for r in rows if (r["model"], r["chain"]) == key)
        verdict = "met" if worst < 5.0 else "NOT met"
        print(
            f"Target chain+hash+sign < 5% of SecCL round time, {key[0]} on {key[1]}: "
            f"{verdict} (worst {worst:.1f}%)"
        )


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=[0],
        help="hidden-layer widths of DigitsNet to compare (0: the 1.4k-parameter CNN; "
        "4096: 570k parameters)",
    )
    parser.add_argument("--local-epochs", type=int, default=2)
    parser.add_argument(
        "--digits-per-client",
        type=int,
        nargs="+",
        default=[0, 3000],
        help="mnist workloads to compare: each client draws this many of the 8,000 pool "
        "digits (clients overlap; 3000 is the paper's share at 20 participants); 0: the "
        "equal split of the reproduction (400 each at 20 clients)",
    )
    parser.add_argument(
        "--task",
        nargs="+",
        choices=TASKS,
        default=list(TASKS),
        help="client workloads: digits (scikit-learn 8x8 digits) and/or mnist (the "
        "MNIST example app on the shared MNIST test digits; --hidden does not apply)",
    )
    parser.add_argument(
        "--chain",
        nargs="+",
        choices=[EMBEDDED, "anvil"],
        help="chains to run SecCL on (default: embedded, plus anvil when it is installed)",
    )
    parser.add_argument(
        "--gas-limit",
        type=int,
        help="SecCL's gas_limit: a fixed limit for every server transaction instead of "
        "the node's estimate",
    )
    parser.add_argument("--out", help="write the rows to this CSV file")
    parser.add_argument("--quick", action="store_true", help="1 round at 5 clients")
    parser.add_argument("--profile", help="cProfile SecCL runs into this .pstats file")
    parser.add_argument("--verbose", action="store_true", help="keep Flower's INFO logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.rounds, args.hidden = [5], 1, args.hidden[:1]
        args.task, args.digits_per_client = args.task[:1], args.digits_per_client[:1]
    if args.chain is None:
        args.chain = [EMBEDDED] + (["anvil"] if anvil_command() is not None else [])
    if not args.verbose:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    profile = cProfile.Profile() if args.profile else None
    workloads = [Workload("digits", args.seed, h, args.local_epochs) for h in args.hidden]
    workloads = [w for w in workloads if "digits" in args.task] + [
        Workload("mnist", args.seed, 0, args.local_epochs, share)
        for share in args.digits_per_client
        if "mnist" in args.task
    ]
    rows = []
    with contextlib.ExitStack() as stack:
        urls = {EMBEDDED: EMBEDDED}
        if "anvil" in args.chain:
            urls["anvil"] = stack.enter_context(AnvilNode()).url
        for n in args.clients:
            for work in workloads:
                tag = f"[{n} clients, {work.name}]"
                warm_up(n, work)
                print(f"{tag} FedAvg, {args.rounds} rounds ...", flush=True)
                fedavg = run_fedavg(n, args.rounds, work)
                print(f"{tag} FedAvg done in {fedavg.wall:.2f}s", flush=True)
                for chain in args.chain:
                    print(f"{tag} SecCL on {chain}, {args.rounds} rounds ...", flush=True)
                    seccl = run_seccl(n, args.rounds, work, urls[chain], profile, args.gas_limit)
                    print(f"{tag} SecCL on {chain} done in {seccl.wall:.2f}s", flush=True)
                    rows.append(row_of(chain, n, work, fedavg, seccl))
    print_table(rows, args.gas_limit, tuple(workloads))
    if args.out:
        write_csv(rows, args.out)
        print(f"\nrows written to {args.out}")
    if profile is not None:
        profile.dump_stats(args.profile)
        print(f"profile of the SecCL runs written to {args.profile}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])

"""Shared code of the reproduction scripts: run one configuration, write the results.

Every run is in one process: the ClientApps of :mod:`mnist_seccl.client_app` are
called through :class:`seccl_flwr.inprocess.InProcessGrid` (no Ray), SecCL on the
embedded chain served over loopback HTTP, Flower's strategies from
``flwr.serverapp.strategy`` with the plain Flower ClientApp on the very same client
functions. The global model of every round (round 0: the initial model) is scored
on the held-out test set.
"""

import argparse
import csv
import logging
import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp import strategy as flower_strategies
from torch.utils.data import DataLoader, TensorDataset

from seccl_flwr.attacks import attacker_addresses, attacker_partitions
from seccl_flwr.chain.rpc_server import free_loopback_url
from seccl_flwr.client_checks import pinned_run_config
from seccl_flwr.identity import ERROR_FEEDBACK
from seccl_flwr.inprocess import InProcessGrid
from seccl_flwr.mod import SCORE_METRIC
from seccl_flwr.strategy import RoundRecord, SecCL
from seccl_flwr.torch_task import sgd_train

from .client_app import DATA_KEYS, SCORE_METRIC_DEFAULT, _partition, make_client_app
from .task import data_from_config, initial_model, server_evaluate_fn

RESULTS = Path(__file__).resolve().parents[1] / "results"
"""Default output directory: ``examples/mnist/results``."""

CENTRALIZED = "Centralized"
"""The centralized baseline, run like a strategy (see :func:`centralized_baseline`)."""

FLOWER = ("FedAvg", "Krum", "MultiKrum", "Bulyan", "FedMedian", "FedTrimmedAvg")
"""Flower's strategies compared with SecCL (``flwr.serverapp.strategy``)."""

EPSILONS = (0.0, 0.1, 0.2, 0.25, 0.3, 0.4)
"""Attacker fractions ε of the paper's Figure 5."""

PAPER_BASELINE = 0.9908
"""The paper's centralized accuracy on full MNIST (60k training digits)."""

BASE_CONFIG: dict[str, Any] = {
    "seed": 0,
    "lr": 0.02,
    "batch-size": 32,
    "local-epochs": 2,
    "share-fraction": 0.1,
    "data-source": "auto",
    "data-dir": "",
    "pool-size": 8000,
    "test-size": 2000,
    "val-fraction": 0.2,
    "dirichlet-alpha": 0.0,
}
"""Run config of the paper's setting (batch 32, lr 0.02, share fraction 0.1) on the
data we have; 2 local epochs per round (the paper does not say how many)."""

QUICK_CONFIG = {"pool-size": 600, "test-size": 300}
"""Data of ``--quick``: a small subset, so a test can run every script."""


@dataclass(frozen=True)
class Setting:
    """One federated run.

    Parameters
    ----------
    strategy : str
        ``"SecCL"`` or one of :data:`FLOWER`.
    participants : int
        Number of participants n (all train every round).
    rounds : int
        Number of server rounds.
    candidate_fraction : float
        SecCL's λ (ignored by Flower's strategies).
    attack_fraction : float
        ε: the first ``round(ε·n)`` participants flip labels from ``attack_start`` on.
    attack_start : int
        First round of the attack.
    error_feedback : bool
        SecCL's clients add what their last sparse update left out to the next
        change (``seccl-error-feedback``; ignored by Flower's strategies, which send
        dense updates). Off by default here: the paper's SecCL has no error
        feedback, and Figures 4 and 5 reproduce it; the library's default is on
        (``error_feedback.py`` compares both).
    poison : str
        What an attacker sends (:data:`seccl_flwr.attacks.POISONS`): ``"label-flip"``,
        or ``"scale"`` with ``poison_scale = 0`` for a free rider (an all-zero update).
    poison_scale : float
        Factor of the ``"scale"`` poison.
    flip_fraction : float
        Share of each batch's labels the ``"label-flip"`` poison flips (1: all; less:
        a stealthier poison).
    collude : bool
        Whether SecCL's attackers rank each other first and everyone else last.
    election_rule : str
        SecCL's election rule: ``"borda"`` (the paper's), ``"median"`` or
        ``"rank-median"``, or a Python-only rule of the off-chain harness.
    score_metric : str
        The metric SecCL's clients score peers by (``seccl-score-metric``):
        ``"macro-f1"`` (the paper's) or ``"brier"`` (it also sees how sure an update
        is of the right label, :func:`seccl_flwr.torch_task.brier_score`).
    """

    strategy: str = "SecCL"
    participants: int = 20
    rounds: int = 10
    candidate_fraction: float = 0.2
    attack_fraction: float = 0.0
    attack_start: int = 5
    error_feedback: bool = False
    poison: str = "label-flip"
    poison_scale: float = 10.0
    flip_fraction: float = 1.0
    collude: bool = True
    election_rule: str = "borda"
    score_metric: str = SCORE_METRIC_DEFAULT

    @property
    def attackers(self) -> int:
        """Number of attacking participants, ``round(ε·n)``."""
        return len(attacker_partitions(self.participants, self.attack_fraction))

    def label(self) -> str:
        """Short description for progress lines."""
        if self.strategy == CENTRALIZED:
            return f"{CENTRALIZED} (data of n={self.participants})"
        return (
            f"{self.strategy} n={self.participants} λ={self.candidate_fraction} "
            f"ε={self.attack_fraction} error-feedback={self.error_feedback} "
            f"score={self.score_metric}"
            if self.strategy == "SecCL"
            else f"{self.strategy} n={self.participants} ε={self.attack_fraction}"
        )


def unsupported(setting: Setting) -> str | None:
    """Return why a strategy cannot run this setting, or ``None`` if it can."""
    f, n = setting.attackers, setting.participants
    if setting.strategy == "Bulyan" and n < 4 * f + 3:
        return f"Bulyan needs n >= 4f+3; n={n}, f={f}"
    if setting.strategy in ("Krum", "MultiKrum") and n < 2 * f + 3:
        return f"{setting.strategy} needs n >= 2f+3; n={n}, f={f}"
    return None


def run_config_of(setting: Setting, base: dict[str, Any]) -> dict[str, Any]:
    """Return the ClientApps' run config: ``base`` plus the setting's attack."""
    config = dict(base)
    if setting.strategy == "SecCL":
        config[ERROR_FEEDBACK] = setting.error_feedback
        config[SCORE_METRIC] = setting.score_metric
    if setting.attack_fraction > 0:
        config.update(
            {
                "attack-poison": setting.poison,
                "attack-scale": setting.poison_scale,
                "attack-flip-fraction": setting.flip_fraction,
                "attack-fraction": setting.attack_fraction,
                "attack-start": setting.attack_start,
                # colluding in the ranking only means something in SecCL's election
                "attack-collude": setting.collude and setting.strategy.startswith("SecCL"),
            }
        )
    return config


def flower_strategy(setting: Setting):
    """Return the Flower strategy of a setting, told the true number of attackers."""
    n, f = setting.participants, setting.attackers
    common = {"min_available_nodes": n, "min_train_nodes": n, "min_evaluate_nodes": n}
    cls = getattr(flower_strategies, setting.strategy)
    if setting.strategy in ("Krum", "Bulyan"):
        return cls(num_malicious_nodes=f, **common)
    if setting.strategy == "MultiKrum":
        return cls(num_malicious_nodes=f, num_nodes_to_select=n - f, **common)
    return cls(**common)


def run_setting(
    setting: Setting, base: dict[str, Any], progress: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Run one setting; return one row per round (round 0: the initial model).

    Rows hold the held-out test accuracy and macro F1, the wall time so far and, for
    SecCL, how many of the round's elected candidates were attackers.
    """
    if setting.strategy == CENTRALIZED:
        return centralized_baseline(setting, base, progress)
    reason = unsupported(setting)
    if reason is not None:
        progress(f"{setting.label()}: n/a ({reason})")
        return [_row(setting, 0, {}, 0.0, note=f"n/a: {reason}")]
    seed = int(base.get("seed", 0))
    data = data_from_config(base)
    evaluate = server_evaluate_fn(data)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    elected: dict[int, int] = {}

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        metrics = evaluate(server_round, arrays)
        rows.append(_row(setting, server_round, metrics, time.monotonic() - started))
        if server_round > 0:
            progress(
                f"  {setting.label()} round {server_round}/{setting.rounds}: "
                f"test accuracy {metrics['accuracy']:.4f} [{time.monotonic() - started:.0f}s]"
            )
        return metrics

    config = run_config_of(setting, base)
    arrays = ArrayRecord(initial_model(seed).state_dict())
    if setting.strategy == "SecCL":
        url = free_loopback_url()
        config.update({"seccl-key-seed": seed, "seccl-chain-url": url})
        share_fraction = float(base.get("share-fraction", 0.1))
        config.update(
            pinned_run_config(
                setting.candidate_fraction, share_fraction, election_rule=setting.election_rule
            )
        )
        attackers = attacker_addresses(config, setting.participants)

        def on_round(record: RoundRecord) -> None:
            elected[record.round] = sum(c in attackers for c in record.candidates)

        strategy = SecCL(
            candidate_fraction=setting.candidate_fraction,
            share_fraction=share_fraction,
            min_available_nodes=setting.participants,
            chain_url=url,
            run_label=f"mnist-{setting.label()}-{time.time_ns()}",
            election_rule=setting.election_rule,
        )
        grid = InProcessGrid(make_client_app(), setting.participants, run_config=config)
        strategy.start(grid, arrays, setting.rounds, evaluate_fn=evaluate_fn, on_round=on_round)
    else:
        grid = InProcessGrid(make_client_app(seccl=False), setting.participants, run_config=config)
        flower_strategy(setting).start(grid, arrays, setting.rounds, evaluate_fn=evaluate_fn)
    for row in rows:
        row["attackers_elected"] = elected.get(row["round"], "")
    return rows


def _row(
    setting: Setting, server_round: int, metrics: dict, seconds: float, note: str = ""
) -> dict[str, Any]:
    return {
        "strategy": setting.strategy,
        "participants": setting.participants,
        "lambda": setting.candidate_fraction if setting.strategy == "SecCL" else "",
        "error_feedback": setting.error_feedback if setting.strategy == "SecCL" else "",
        "epsilon": setting.attack_fraction,
        "attackers": setting.attackers,
        "round": server_round,
        "test_accuracy": float(metrics.get("accuracy", math.nan)),
        "test_macro_f1": float(metrics.get("macro-f1", math.nan)),
        "seconds": round(seconds, 2),
        "note": note,
    }


def centralized_baseline(
    setting: Setting, base: dict[str, Any], progress: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Train the same CNN on the union of the participants' training parts.

    Same initial model and optimizer (SGD, ``lr``, ``batch-size``). "Round" ``r`` is
    the model after ``r * local-epochs`` epochs over the union: every digit has then
    been trained on as often as in ``r`` federated rounds.
    """
    seed = int(base.get("seed", 0))
    epochs = int(base.get("local-epochs", 1))
    data_settings = tuple(sorted((k, v) for k, v in base.items() if k in DATA_KEYS))
    tensors = [
        _partition(data_settings, p, setting.participants).train.dataset.tensors
        for p in range(setting.participants)
    ]
    x = torch.cat([t[0] for t in tensors])
    y = torch.cat([t[1] for t in tensors])
    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=int(base.get("batch-size", 32)),
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    model = initial_model(seed)
    train = sgd_train(loader, "cpu", epochs=epochs, lr=float(base.get("lr", 0.02)))
    evaluate = server_evaluate_fn(data_from_config(base))
    started = time.monotonic()
    rows = []
    for server_round in range(setting.rounds + 1):
        if server_round > 0:
            train(model, ConfigRecord())
        metrics = evaluate(server_round, ArrayRecord(model.state_dict()))
        rows.append(_row(setting, server_round, metrics, time.monotonic() - started))
    rows[-1]["note"] = f"{len(y):,} digits, {setting.rounds * epochs} epochs"
    progress(
        f"  {setting.label()} ({len(y):,} digits, {setting.rounds * epochs} epochs): "
        f"test accuracy {rows[-1]['test_accuracy']:.4f} [{elapsed(started)}]"
    )
    return rows


def _run_one(args: tuple[Setting, dict[str, Any]]) -> list[dict[str, Any]]:
    setting, base = args
    logging.getLogger("flwr").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    rows = run_setting(setting, base, progress=lambda line: print(line, flush=True))
    print(f"done: {setting.label()}: final test accuracy {fmt(final(rows))}", flush=True)
    return rows


def run_many(
    settings: Sequence[Setting], base: dict[str, Any], jobs: int = 1
) -> dict[Setting, list[dict[str, Any]]]:
    """Run every distinct setting (``jobs`` processes); return its rows by setting."""
    todo = list(dict.fromkeys(settings))
    print(f"{len(todo)} runs, {jobs} process(es)", flush=True)
    if jobs <= 1:
        results = [_run_one((s, base)) for s in todo]
    else:
        # spawn: no forked copies of torch's or the chain's threads
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            results = pool.map(_run_one, [(s, base) for s in todo], chunksize=1)
    return dict(zip(todo, results, strict=True))


# ------------------------------------------------------------------ command line
def parser(description: str) -> argparse.ArgumentParser:
    """Return the options every reproduction script takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny run: a few nodes, 2 rounds")
    p.add_argument("--out", type=Path, default=RESULTS, help="output directory")
    p.add_argument("--rounds", type=int, default=10, help="server rounds (default: 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default="", help="MNIST IDX directory (default: search)")
    p.add_argument("--data-source", default="auto", choices=("auto", "torchvision", "idx"))
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: rewrite the figures and tables from the CSV files in --out",
    )
    p.add_argument("--verbose", action="store_true", help="keep Flower's INFO logs")
    return p


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Apply the common options; return the base run config."""
    if not args.verbose:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    base = {
        **BASE_CONFIG,
        "seed": args.seed,
        "data-dir": args.data_dir,
        "data-source": args.data_source,
    }
    if args.quick:
        base.update(QUICK_CONFIG)
        args.rounds = min(args.rounds, 2)
    args.out.mkdir(parents=True, exist_ok=True)
    return base


def run_key(setting: Setting) -> tuple:
    """What identifies a run in the CSV files: strategy, n, λ and error feedback (SecCL), ε."""
    if setting.strategy != "SecCL":
        return (setting.strategy, setting.participants, "", "", setting.attack_fraction)
    return (
        setting.strategy,
        setting.participants,
        setting.candidate_fraction,
        setting.error_feedback,
        setting.attack_fraction,
    )


def load_results(
    paths: Sequence[Path], settings: Sequence[Setting], **only: Any
) -> dict[Setting, list[dict[str, Any]]]:
    """Read the rows of ``settings`` back from CSV files written by the scripts.

    ``only`` keeps the rows whose columns have these values (e.g. ``seed=1``).

    Raises
    ------
    FileNotFoundError
        If a setting has no rows in any of ``paths``.
    """
    wanted: dict[tuple, list[Setting]] = {}
    for setting in settings:
        wanted.setdefault(run_key(setting), []).append(setting)
    results: dict[Setting, list[dict[str, Any]]] = {}
    for path in paths:
        if not path.is_file():
            continue
        for raw in read_csv(path):
            if any(raw.get(column) != str(value) for column, value in only.items()):
                continue
            lam = float(raw["lambda"]) if raw["lambda"] else ""
            # rows written before error feedback existed were measured without it
            feedback = raw.get("error_feedback") or ("False" if lam != "" else "")
            feedback = feedback == "True" if feedback else ""
            key = (raw["strategy"], int(raw["participants"]), lam, feedback, float(raw["epsilon"]))
            row: dict[str, Any] = {**raw, "round": int(raw["round"])}
            for name in ("test_accuracy", "test_macro_f1", "seconds"):
                row[name] = float(raw[name])
            if raw.get("attackers_elected"):
                row["attackers_elected"] = int(raw["attackers_elected"])
            for setting in wanted.get(key, []):
                rows = results.setdefault(setting, [])
                if row["round"] not in {r["round"] for r in rows}:
                    rows.append(dict(row))
    missing = [s.label() for s in settings if s not in results]
    if missing:
        raise FileNotFoundError(
            f"no rows for {', '.join(missing)} in {', '.join(str(p) for p in paths)}"
            + (f" with {only}" if only else "")
        )
    return results


def main(scripts: Sequence[Any], description: str, argv: list[str] | None = None) -> dict:
    """Run the settings of ``scripts`` (shared runs once), then let each report.

    Each script module has ``NAME``, ``settings(args)`` and
    ``report(results, args, base)``, and may have ``add_arguments(parser)``. With
    ``--report-only`` nothing runs: the rows come back from the scripts' CSV files.
    """
    options = parser(description.split("\n\n")[0])
    for script in scripts:
        if hasattr(script, "add_arguments"):
            script.add_arguments(options)
    args = options.parse_args(argv)
    base = prepare(args)
    started = time.monotonic()
    todo = [s for script in scripts for s in script.settings(args)]
    if args.report_only:
        csvs = [
            args.out / f"{name}.csv" for name in ("fig4", "fig5", "baselines", "error_feedback")
        ]
        results = load_results(csvs, todo)
    else:
        results = run_many(todo, base, args.jobs)
    for script in scripts:
        script.report(results, args, base)
    seconds = time.monotonic() - started
    names = ", ".join(script.NAME for script in scripts)
    print(f"{names}: done in {seconds / 60:.1f} min")
    if len(scripts) > 1 and not args.report_only:
        write_markdown(
            args.out / "timing.md",
            "Reproduction time",
            data_note(base),
            f"{names}: {len(results)} runs ({args.rounds} rounds each) in "
            f"{seconds / 60:.1f} min with {args.jobs} process(es)"
            f"{' (--quick)' if args.quick else ''}.",
        )
    return results


def data_note(base: dict[str, Any]) -> str:
    """Return the sentence that says which data a result used."""
    return data_from_config(base).note


def attack_start(settings: Sequence[Setting]) -> int:
    """First round of the attack in ``settings`` (those with attackers)."""
    return next((s.attack_start for s in settings if s.attack_fraction), settings[0].attack_start)


def quick_setting(setting: Setting, quick: bool) -> Setting:
    """Shrink a setting for ``--quick`` (5 participants, any attack from round 2)."""
    if not quick:
        return setting
    return replace(setting, participants=5, attack_start=2 if setting.attack_fraction else 5)


# ------------------------------------------------------------------------ output
def read_csv(path: Path) -> list[dict[str, str]]:
    """Read rows written by :func:`seccl_flwr.report.write_csv`."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return a GitHub markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: Any) -> str:
    """Format an accuracy (or ``n/a``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(number) else f"{number:.4f}"


def accuracy_at(rows: Sequence[dict[str, Any]], server_round: int) -> float:
    """Test accuracy after ``server_round`` (nan if the run has no such round)."""
    for row in rows:
        if int(row["round"]) == server_round:
            return float(row["test_accuracy"])
    return math.nan


def final(rows: Sequence[dict[str, Any]]) -> float:
    """Test accuracy of the last round of one run's rows (nan if it did not run)."""
    return float(rows[-1]["test_accuracy"]) if rows else math.nan


def write_markdown(path: Path, title: str, note: str, body: str) -> Path:
    """Write a markdown file: title, the data it used, then ``body``."""
    path.write_text(f"# {title}\n\nData: {note}.\n\n{body.rstrip()}\n")
    return path


def figure(ncols: int = 1, width: float = 6.0):
    """Return a matplotlib figure and axes (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 4.4), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, path: Path, title: str, note: str) -> Path:
    """Title the figure with the data note, save it as PNG and close it."""
    import matplotlib.pyplot as plt

    fig.suptitle(f"{title}\n{note}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy(ax, run: Sequence[dict[str, Any]], label: str, fmt: str = "o-", **style) -> None:
    """Plot a run's held-out test accuracy per round."""
    rounds = [r["round"] for r in run]
    ax.plot(rounds, [r["test_accuracy"] for r in run], fmt, ms=3, label=label, **style)


def accuracy_axes(ax, rounds: int, ylim: tuple[float, float] = (0.0, 1.0)) -> None:
    """Label an accuracy-per-round axis."""
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (held-out)")
    ax.set_xticks(range(0, rounds + 1, max(1, rounds // 10)))
    ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)


def by_run(rows: Sequence[dict[str, Any]], *keys: str) -> dict[tuple, list[dict[str, Any]]]:
    """Group rows (in order) by the values of ``keys``."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def mean_seconds(rows: Sequence[dict[str, Any]]) -> float:
    """Mean wall seconds per round of one run's rows."""
    last = rows[-1]
    return float(last["seconds"]) / max(int(last["round"]), 1) if rows else math.nan


def elapsed(started: float) -> str:
    """Format the time since ``started`` (monotonic)."""
    return f"{time.monotonic() - started:.0f}s"

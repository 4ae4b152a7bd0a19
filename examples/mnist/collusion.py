"""Colluding clients: SecCL's election rules against Flower's robust strategies.

n = 20 participants, λ = 0.2 (M = 4), 10 rounds, attackers from round 5. Attacks:

``collude``    label flippers (y -> 9 - y) that rank each other first (MAX_SCORE) and
               everyone else 0 (Figure 5's attack);
``adaptive``   the same flippers, voting for a rule that drops extreme scores: each
               other MAX_SCORE, honest peers half of their true score;
``free-ride``  free riders: an all-zero update, honest ballots.

SecCL runs in the off-chain fast mode (:mod:`mnist_seccl.offchain`: the same clients,
the election through the Python reference of the rule that the contract is
differential-tested against) under the rules ``borda`` (truncated Borda, the paper's),
``median`` (rule 1, on chain) and, for the first comparison only, ``trimmed-mean``
and ``copeland`` (Python only). Flower's strategies (FedAvg, Krum, MultiKrum, Bulyan,
FedMedian, FedTrimmedAvg) run through ``flwr.serverapp.strategy`` as in
``baselines.py``; their attackers only poison (there is no vote), so ``adaptive``
equals ``collude`` for them and is not run. Splits: ``iid``, ``dirichlet-0.5``.

Every finished run is appended to ``collusion.csv`` at once (one row per round), and
a run already in the CSV is not run again: an interrupted sweep resumes where it
stopped. ``--report-only`` redraws ``collusion.png`` and ``collusion.md``.

Usage::

    python examples/mnist/collusion.py --grid compare --jobs 2   # 4 rules, ε 0.2/0.4
    python examples/mnist/collusion.py --grid all --jobs 2       # everything, by priority
    python examples/mnist/collusion.py --report-only
"""

import argparse
import csv
import logging
import math
import multiprocessing
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from mnist_seccl import experiments as ex
from mnist_seccl.offchain import run_offchain

RESULTS = ex.RESULTS
CSV_NAME = "collusion.csv"
N, LAMBDA, ROUNDS, START = 20, 0.2, 10, 5
EPSILONS = (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.45)
SEEDS = (0, 1, 2)
RULES = ("median", "borda")
COMPARED = ("median", "trimmed-mean", "copeland", "borda")
SPLITS = {"iid": 0.0, "dirichlet-0.5": 0.5}
ATTACKS = ("collude", "adaptive", "free-ride")
FIELDS = (
    "rule",
    "attack",
    "epsilon",
    "seed",
    "round",
    "accuracy",
    "split",
    "macro_f1",
    "attackers",
    "attackers_elected",
    "mode",
    "seconds",
    "note",
)


@dataclass(frozen=True)
class Cell:
    """One run of the sweep."""

    rule: str  # an election rule (SecCL) or a Flower strategy's name
    attack: str
    epsilon: float
    seed: int
    split: str = "iid"
    onchain: bool = False  # SecCL on the embedded chain (spot checks of the fast mode)

    @property
    def seccl(self) -> bool:
        """Whether this is a SecCL run (an election rule), not a Flower strategy."""
        return self.rule not in ex.FLOWER

    def key(self) -> tuple:
        """What identifies the run in the CSV."""
        return (self.rule, self.attack, float(self.epsilon), int(self.seed), self.split, self.mode)

    @property
    def mode(self) -> str:
        """How the run is made: ``flower``, ``off-chain`` or ``on-chain``."""
        if not self.seccl:
            return "flower"
        return "on-chain" if self.onchain else "off-chain"

    def setting(self) -> ex.Setting:
        """The harness setting (strategy, attack) of this run."""
        free = self.attack == "free-ride"
        return ex.Setting(
            "SecCL" if self.seccl else self.rule,
            N,
            ROUNDS,
            LAMBDA,
            self.epsilon,
            START,
            poison="scale" if free else "label-flip",
            poison_scale=0.0 if free else 10.0,
            collude=not free,
            election_rule=self.rule if self.seccl else "borda",
        )

    def base(self, data_dir: str) -> dict[str, Any]:
        """The run config of the harness: seed, split and data."""
        return {
            **ex.BASE_CONFIG,
            "seed": self.seed,
            "data-dir": data_dir,
            "dirichlet-alpha": SPLITS[self.split],
        }


def grid(name: str) -> list[Cell]:
    """Return the cells of a named grid, most important first.

    ``compare``: the rules of :data:`COMPARED` at ε ∈ {0.2, 0.4}, seed 0; ``target``:
    median, FedMedian, MultiKrum and Borda over every ε, seed by seed (the issue's
    target; Borda's seeds 1 and 2 are ``borda-seeds``); ``extras``: seed 0 of the
    other attacks and of the non-IID split at ε ∈ {0.2, 0.4}; ``baselines``: the
    other Flower strategies; ``adaptive``, ``free-ride``, ``noniid``: every ε and
    seed of the other attacks and of the non-IID split; ``all``: all of these in
    this order. ``onchain`` (not in
    ``all``): Borda and median at ε = 0.4, seed 0, on the embedded chain (the full
    SecCL strategy), to check the fast mode.
    """
    target = ("median", "FedMedian", "MultiKrum", "borda")
    groups = {
        "compare": [Cell(r, "collude", e, 0) for e in (0.2, 0.4) for r in COMPARED],
        # seed 0 of all four, then the seeds the target needs, then Borda's other seeds
        "target": [
            *(Cell(r, "collude", e, 0) for e in EPSILONS for r in target),
            *(Cell(r, "collude", e, s) for s in SEEDS[1:] for e in EPSILONS for r in target[:3]),
        ],
        "extras": [
            *(Cell(r, "adaptive", e, 0) for e in (0.2, 0.4) for r in RULES),
            *(Cell(r, "free-ride", e, 0) for e in (0.2, 0.4) for r in (*RULES, "FedMedian")),
            *(Cell(r, "collude", e, 0, "dirichlet-0.5") for e in (0.0, 0.4) for r in target),
        ],
        "borda-seeds": [Cell("borda", "collude", e, s) for s in SEEDS[1:] for e in EPSILONS],
        "baselines": [
            Cell(r, "collude", e, s)
            for s in SEEDS
            for e in EPSILONS
            for r in ("FedAvg", "Krum", "FedTrimmedAvg", "Bulyan")
        ],
        "adaptive": [Cell(r, "adaptive", e, s) for s in SEEDS for e in EPSILONS for r in RULES],
        "free-ride": [
            Cell(r, "free-ride", e, s)
            for s in SEEDS
            for e in EPSILONS
            for r in (*RULES, *ex.FLOWER)
        ],
        "onchain": [Cell(r, "collude", 0.4, 0, onchain=True) for r in RULES],
        "noniid": [
            Cell(r, "collude", e, s, "dirichlet-0.5")
            for s in SEEDS
            for e in EPSILONS
            for r in target
        ],
    }
    if name == "all":
        return list(dict.fromkeys(c for k, g in groups.items() if k != "onchain" for c in g))
    return groups[name]


def run_cell(args: tuple[Cell, str]) -> list[dict[str, Any]]:
    """Run one cell; return its rows (round 0: the initial model)."""
    cell, data_dir = args
    logging.getLogger("flwr").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    setting, base = cell.setting(), cell.base(data_dir)
    started = time.monotonic()
    common = {**asdict(cell), "attackers": setting.attackers}
    del common["onchain"]
    if not cell.seccl or cell.onchain:
        rows = ex.run_setting(setting, base, progress=lambda _: None)
        return [
            {
                **common,
                "round": r["round"],
                "accuracy": r["test_accuracy"],
                "macro_f1": r["test_macro_f1"],
                "attackers_elected": r.get("attackers_elected", ""),
                "mode": cell.mode,
                "seconds": r["seconds"],
                "note": r["note"],
            }
            for r in rows
        ]
    config = ex.run_config_of(setting, base)
    config["seccl-key-seed"] = cell.seed
    style = "adaptive" if cell.attack == "adaptive" else "collude"
    result = run_offchain(config, N, ROUNDS, LAMBDA, cell.rule, style)
    seconds = round(time.monotonic() - started, 1)
    return [
        {
            **common,
            "round": rnd,
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro-f1"],
            "attackers_elected": won,
            "mode": "off-chain",
            "seconds": seconds,
            "note": "",
        }
        for rnd, metrics, won in result
    ]


def done_keys(path: Path) -> set[tuple]:
    """Return the keys of the cells the CSV already holds."""
    if not path.is_file():
        return set()
    return {
        (r["rule"], r["attack"], float(r["epsilon"]), int(r["seed"]), r["split"], r["mode"])
        for r in ex.read_csv(path)
    }


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append one run's rows to the CSV (header first if the file is new)."""
    new = not path.is_file()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def sweep(cells: list[Cell], out: Path, data_dir: str, jobs: int) -> None:
    """Run the cells not yet in the CSV, appending each as it finishes."""
    path = out / CSV_NAME
    done = done_keys(path)
    todo = [c for c in cells if c.key() not in done]
    print(f"{len(todo)} runs to go ({len(cells) - len(todo)} already in {path})", flush=True)
    started = time.monotonic()
    tasks = [(c, data_dir) for c in todo]
    with multiprocessing.get_context("spawn").Pool(max(jobs, 1)) as pool:
        for i, rows in enumerate(pool.imap_unordered(run_cell, tasks), 1):
            append_rows(path, rows)
            last = rows[-1]
            print(
                f"[{time.monotonic() - started:6.0f}s] {i}/{len(todo)} {last['rule']} "
                f"{last['attack']} ε={last['epsilon']} seed={last['seed']} "
                f"{last['split']}: final accuracy {ex.fmt(last['accuracy'])}",
                flush=True,
            )


# ------------------------------------------------------------------------ report
def finals(path: Path) -> dict[tuple, list[float]]:
    """Return final accuracies by (rule, attack, split, ε), one per seed in seed order
    (nan: n/a)."""
    by_run = ex.by_run(ex.read_csv(path), "rule", "attack", "split", "epsilon", "seed")
    out: dict[tuple, list[float]] = {}
    for (rule, attack, split, eps, _), rows in sorted(by_run.items(), key=lambda i: int(i[0][4])):
        last = max(rows, key=lambda r: int(r["round"]))
        out.setdefault((rule, attack, split, float(eps)), []).append(float(last["accuracy"]))
    return out


def mean_spread(values: list[float]) -> str:
    """Format ``mean ± standard deviation (k seeds)`` of final accuracies."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "n/a"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f} ({len(values)})"


def seats_table(path: Path) -> str:
    """Return the candidate seats attackers won in rounds START..ROUNDS (SecCL runs).

    Per (rule, attack, split) and ε: the seats won summed over the seeds run, out of
    ``M · (rounds under attack) · seeds``.
    """
    seats: dict[tuple, list[int]] = {}
    for (rule, attack, split, eps, _), rows in ex.by_run(
        ex.read_csv(path), "rule", "attack", "split", "epsilon", "seed"
    ).items():
        if rows[0]["mode"] != "off-chain":
            continue
        won = sum(int(r["attackers_elected"]) for r in rows if int(r["round"]) >= START)
        seats.setdefault((rule, attack, split), {}).setdefault(float(eps), []).append(won)
    eps = sorted({e for by_eps in seats.values() for e in by_eps})
    m = math.ceil(LAMBDA * N) * (ROUNDS - START + 1)
    rows = [
        [rule, attack, split]
        + [f"{sum(v)}/{m * len(v)}" if (v := by_eps.get(e)) else "-" for e in eps]
        for (rule, attack, split), by_eps in sorted(seats.items())
    ]
    return ex.markdown_table(["rule", "attack", "split", *(f"ε={e}" for e in eps)], rows)


def target_check(table: dict[tuple, list[float]]) -> list[str]:
    """Return the issue's target, checked on the IID collusion rows (3 seeds wanted).

    Median rule: mean final accuracy at ε = 0.4 within 2 points of ε = 0, and at
    least FedMedian's and MultiKrum's mean at every ε (where they ran).
    """

    def mean(rule: str, e: float) -> float | None:
        values = [v for v in table.get((rule, "collude", "iid", e), []) if not math.isnan(v)]
        return statistics.mean(values) if values else None

    def seeds(rule: str, e: float) -> int:
        return len(table.get((rule, "collude", "iid", e), []))

    lines = []
    base, attacked = mean("median", 0.0), mean("median", 0.4)
    if base is None or attacked is None:
        lines.append("- ε = 0.4 vs ε = 0: not measured yet.")
    else:
        gap = (base - attacked) * 100
        lines.append(
            f"- ε = 0.4 vs ε = 0: {attacked:.4f} ({seeds('median', 0.4)} seeds) against "
            f"{base:.4f} ({seeds('median', 0.0)} seeds), {gap:+.2f} points lower: target "
            f"(at most 2 points) {'met' if gap <= 2 else 'NOT met'}."
        )
    for other in ("FedMedian", "MultiKrum"):
        worse = []
        for e in EPSILONS:
            ours, theirs = mean("median", e), mean(other, e)
            if ours is None or theirs is None:
                continue
            if ours < theirs:
                worse.append(f"ε = {e}: {ours:.4f} < {theirs:.4f}")
        compared = [
            e for e in EPSILONS if mean("median", e) is not None and mean(other, e) is not None
        ]
        verdict = "met" if not worse else "NOT met at " + "; ".join(worse)
        lines.append(
            f"- at least as good as {other} at every ε (compared at ε ∈ {compared}): {verdict}."
        )
        paired = []
        for e in compared:  # the same seed is the same data, model and attackers
            ours = table.get(("median", "collude", "iid", e), [])
            theirs = table.get((other, "collude", "iid", e), [])
            diffs = [(a - b) * 100 for a, b in zip(ours, theirs, strict=False)]
            paired.append(f"ε = {e}: {', '.join(f'{d:+.2f}' for d in diffs)}")
        lines.append(f"  - median minus {other} per seed, in points: " + "; ".join(paired) + ".")
    return lines


def missing_cells(path: Path) -> dict[str, int]:
    """Return how many cells of each grid group of ``all`` the CSV does not hold yet."""
    done = done_keys(path)
    names = ("target", "extras", "borda-seeds", "baselines", "adaptive", "free-ride", "noniid")
    counts = {name: sum(c.key() not in done for c in grid(name)) for name in names}
    return {name: count for name, count in counts.items() if count}


def onchain_table(out: Path, table: dict[tuple, list[float]]) -> str:
    """Return the spot checks on the embedded chain beside the fast mode's same runs."""
    path = out / "onchain" / CSV_NAME
    if not path.is_file():
        return "(no on-chain spot check in this directory)"
    rows = []
    for (rule, attack, split, eps, seed), runs in ex.by_run(
        ex.read_csv(path), "rule", "attack", "split", "epsilon", "seed"
    ).items():
        last = max(runs, key=lambda r: int(r["round"]))
        fast = ex.by_run(ex.read_csv(out / CSV_NAME), "rule", "attack", "split", "epsilon", "seed")
        twin = fast.get((rule, attack, split, eps, seed))
        twin_final = max(twin, key=lambda r: int(r["round"]))["accuracy"] if twin else "-"
        rows.append([rule, attack, eps, seed, ex.fmt(last["accuracy"]), ex.fmt(twin_final)])
    header = ["rule", "attack", "ε", "seed", "on chain (SecCL strategy)", "off-chain fast mode"]
    return ex.markdown_table(header, rows)


def report(out: Path, data_note: str) -> None:
    """Write collusion.md (tables) and collusion.png from collusion.csv."""
    path = out / CSV_NAME
    table = finals(path)
    rules = list(dict.fromkeys(k[0] for k in table))
    order = [r for r in (*COMPARED, *ex.FLOWER) if r in rules]
    combos = list(dict.fromkeys((k[1], k[2]) for k in table))
    eps = sorted({k[3] for k in table})
    sections, panels = [], []
    for attack, split in combos:
        rows = []
        for rule in order:
            cells = [table.get((rule, attack, split, e)) for e in eps]
            if any(cells):
                rows.append([rule, *(mean_spread(c) if c else "-" for c in cells)])
        header = ["rule / strategy", *(f"ε={e}" for e in eps)]
        sections.append(f"### {attack}, {split}\n\n" + ex.markdown_table(header, rows))
        panels.append((attack, split))
    body = (
        f"Final test accuracy (round {ROUNDS}), mean ± standard deviation over seeds "
        f"(number of seeds in brackets); n = {N}, λ = {LAMBDA}, attack from round {START}. "
        "SecCL rules ran in the off-chain fast mode (election by the Python reference); "
        "Flower strategies through flwr.serverapp.strategy. n/a: the strategy cannot "
        "run that many attackers; '-': not run.\n\n"
        + "## Target (median rule, collude, IID)\n\n"
        + "\n".join(target_check(table))
        + "\n\n## Fast mode against the chain\n\n"
        + onchain_table(out, table)
        + "\n\n## Candidate seats won by attackers (rounds "
        + f"{START}-{ROUNDS}, all seeds)\n\n"
        + seats_table(path)
        + "\n\n## Final accuracy\n\n"
        + "\n\n".join(sections)
    )
    missing = missing_cells(path)
    if missing:
        body += (
            "\n\n## Not run yet\n\nCells of `--grid all` missing from the CSV: "
            + ", ".join(f"{name} {count}" for name, count in missing.items())
            + ". `python examples/mnist/collusion.py --grid all --jobs 2` runs them "
            "(it skips the cells the CSV already holds)."
        )
    ex.write_markdown(out / "collusion.md", "Colluding clients", data_note, body)
    fig, axes = ex.figure(len(panels), width=5.2)
    for ax, (attack, split) in zip(axes, panels, strict=True):
        for rule in order:
            points = [
                (e, statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
                for e in eps
                if (v := [x for x in table.get((rule, attack, split, e), []) if not math.isnan(x)])
            ]
            if not points:
                continue
            style = {"lw": 2.5} if rule in COMPARED else {"lw": 1, "alpha": 0.8}
            style["color"] = f"C{(*COMPARED, *ex.FLOWER).index(rule) % 10}"  # one per rule
            x, y, spread = zip(*points, strict=True)
            ax.errorbar(x, y, yerr=spread, fmt="o-", ms=3, capsize=2, label=rule, **style)
        ax.set_title(f"{attack}, {split}")
        ax.set_xlabel("ε (fraction of attackers)")
        ax.set_ylabel(f"test accuracy after round {ROUNDS} (mean ± sd over seeds)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ex.save_figure(
        fig, out / "collusion.png", "Colluding clients: election rules vs Flower", data_note
    )
    print(f"wrote {out / 'collusion.md'}, collusion.png")


def main(argv: list[str] | None = None) -> None:
    """Run a grid (or only report)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--grid",
        default="all",
        choices=(
            "all",
            "compare",
            "target",
            "extras",
            "borda-seeds",
            "baselines",
            "adaptive",
            "free-ride",
            "noniid",
            "onchain",
        ),
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--data-dir", default="")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        sweep(grid(args.grid), args.out, args.data_dir, args.jobs)
    note = ex.data_note({**ex.BASE_CONFIG, "data-dir": args.data_dir})
    report(args.out, note)


if __name__ == "__main__":
    main(sys.argv[1:])

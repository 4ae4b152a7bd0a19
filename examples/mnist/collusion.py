"""Colluding clients: SecCL's election rules against Flower's robust strategies.

n = 20 participants, λ = 0.2 (M = 4), 10 rounds, attackers from round 5. Attacks:

``collude``    label flippers (y -> 9 - y) that rank each other first (MAX_SCORE) and
               everyone else 0 (Figure 5's attack);
``adaptive``   the same flippers, voting for a rule that drops extreme scores: each
               other MAX_SCORE, honest peers half of their true score;
``free-ride``  free riders: an all-zero update, honest ballots;
``stealthy``   colluders whose poison honest evaluators score nearly as well as an
               honest update: they flip only a share (``STEALTH_FLIP``) of each
               batch's labels, and vote as in ``collude``;
``stealthy-0.2``, ``stealthy-0.3``  the same with 20 % or 30 % flipped: the attacker
               who knows that clients score by the Brier score (``--grid
               brier-adaptive``).

SecCL runs in the off-chain fast mode (:mod:`mnist_seccl.offchain`: the same clients,
the election through the Python reference of the rule that the contract is
differential-tested against) under the rules ``borda`` (truncated Borda, the paper's),
``median`` (rule 1, on chain) and, for the first comparison only, ``trimmed-mean``
and ``copeland`` (Python only); ``rank-median`` and ``copeland`` again against the
stealthy colluders (``--grid ranked``). Flower's strategies (FedAvg, Krum, MultiKrum, Bulyan,
FedMedian, FedTrimmedAvg) run through ``flwr.serverapp.strategy`` as in
``baselines.py``; their attackers only poison (there is no vote), so ``adaptive``
equals ``collude`` for them and is not run. Splits: ``iid``, ``dirichlet-0.5``.

Committees (issue 16, ``--grid committees`` and ``committees-borda``): the same
colluders against SecCL with evaluator committees of size k ∈ {5, 10} (each update
scored by k evaluators drawn by :mod:`seccl_flwr.protocol.committee`, see
:mod:`mnist_seccl.offchain`), ε ∈ {0.1, 0.2, 0.3, 0.4}, 3 seeds. Their rows go to
``committees.csv`` (the columns of ``collusion.csv`` plus ``committee``, the k);
full cross-evaluation (k = n - 1) is the ``collusion.csv`` rows of the same cells.
``committees.md``/``committees.png`` set them side by side with the probability
that colluders hold a committee's majority (:mod:`seccl_flwr.protocol.committee_risk`).

SecCL's clients send plain top-k updates, as in the paper, except in the cells of
``--grid error-feedback``: the median rule with error feedback (each client adds
what its last update left out, the library's default), named ``median + error
feedback`` in the tables and dashed in the figure. They score peers by macro F1, as in
the paper, except in the cells of ``--grid brier``, ``brier-extras`` and
``brier-adaptive``: the Brier score (:func:`seccl_flwr.torch_task.brier_score`, which
also sees how sure an update is of the right label), named ``… + Brier`` and
dash-dotted in the figure (dotted with error feedback).

Every finished run is appended to ``collusion.csv`` at once (one row per round), and
a run already in the CSV is not run again: an interrupted sweep resumes where it
stopped. ``--report-only`` redraws ``collusion.png`` and ``collusion.md``.

Usage::

    python examples/mnist/collusion.py --grid compare --jobs 2   # 4 rules, ε 0.2/0.4
    python examples/mnist/collusion.py --grid all --jobs 2       # everything, by priority
    python examples/mnist/collusion.py --grid committees --jobs 2  # k = 5, 10 (median)
    python examples/mnist/collusion.py --grid error-feedback --jobs 2  # the default client
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
from mnist_seccl.client_app import SCORE_METRIC_DEFAULT
from mnist_seccl.offchain import run_offchain

from seccl_flwr.attacks import attacker_partitions
from seccl_flwr.identity import parse_flag
from seccl_flwr.protocol import committee_risk as risk
from seccl_flwr.protocol.committee import effective_size
from seccl_flwr.protocol.params import num_candidates

RESULTS = ex.RESULTS
CSV_NAME = "collusion.csv"
COMMITTEE_CSV = "committees.csv"
COMMITTEES = (5, 10)
COMMITTEE_EPSILONS = (0.1, 0.2, 0.3, 0.4)
N, LAMBDA, ROUNDS, START = 20, 0.2, 10, 5
EPSILONS = (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.45)
SEEDS = (0, 1, 2)
RULES = ("median", "borda")
COMPARED = ("median", "trimmed-mean", "copeland", "borda", "rank-median")
RANKED = ("rank-median", "copeland")
"""Rules that compare scores within each ballot (``--grid ranked``): rank-median
(rule 2, on chain) and Copeland (Python only)."""
SPLITS = {"iid": 0.0, "dirichlet-0.5": 0.5}
STEALTH_FLIP = 0.4
"""Share of each batch's labels a ``stealthy`` attacker flips."""
STEALTH_FLIPS = {"stealthy": STEALTH_FLIP, "stealthy-0.2": 0.2, "stealthy-0.3": 0.3}
"""Share of each batch's labels each stealthy attack flips."""
ATTACKS = ("collude", "adaptive", "free-ride", *STEALTH_FLIPS)
FIELDS = (
    "rule",
    "attack",
    "epsilon",
    "seed",
    "round",
    "accuracy",
    "split",
    "error_feedback",
    "score_metric",
    "macro_f1",
    "attackers",
    "attackers_elected",
    "mode",
    "seconds",
    "note",
)
COMMITTEE_FIELDS = (*FIELDS, "committee")
GRIDS = (
    "compare",
    "target",
    "extras",
    "borda-seeds",
    "baselines",
    "adaptive",
    "noniid",
    "stealthy",
    "ranked",
    "error-feedback",
    "free-ride",
    "error-feedback-extras",
    "brier",
    "brier-extras",
    "brier-adaptive",
    "brier-noniid",
    "brier-plain",
)
"""The grids ``--grid all`` runs, in this order (most important first)."""
APART = ("onchain", "committees", "committees-borda")
"""Grids ``all`` leaves out: spot checks on chain and the committee runs."""
MEDIAN_RULE_NAMES = ("median", "rank-median")
"""The contract's median rules (1 and 2), whose target the report checks."""
FEEDBACK = " + error feedback"
"""How a SecCL rule run with error feedback is named in the tables and the figure."""
BRIER = " + Brier"
"""How a SecCL rule run whose clients score by the Brier score is named (after
:data:`FEEDBACK`)."""
VARIANTS = ("", FEEDBACK, BRIER, FEEDBACK + BRIER)
"""Suffixes of the median rules' names whose target the report checks."""
LINE_STYLES = dict(zip(VARIANTS, ("-", "--", "-.", ":"), strict=True))
"""How the figure draws each variant of a rule."""


@dataclass(frozen=True)
class Cell:
    """One run of the sweep."""

    rule: str  # an election rule (SecCL) or a Flower strategy's name
    attack: str
    epsilon: float
    seed: int
    split: str = "iid"
    onchain: bool = False  # SecCL on the embedded chain (spot checks of the fast mode)
    committee: int = 0  # committee size k (0: full cross-evaluation, k = n - 1)
    # SecCL clients add what their last update left out (the library's default;
    # off, as in the paper, unless a cell says so)
    error_feedback: bool = False
    score_metric: str = SCORE_METRIC_DEFAULT  # what SecCL's clients score peers by

    @property
    def seccl(self) -> bool:
        """Whether this is a SecCL run (an election rule), not a Flower strategy."""
        return self.rule not in ex.FLOWER

    def key(self) -> tuple:
        """What identifies the run in the CSV."""
        key = (self.rule, self.attack, float(self.epsilon), int(self.seed), self.split, self.mode)
        return (*key, self.committee, self.error_feedback, self.score_metric)

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
            error_feedback=self.error_feedback,
            flip_fraction=STEALTH_FLIPS.get(self.attack, 1.0),
            score_metric=self.score_metric,
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
    seed of the other attacks and of the non-IID split (free riders: ε = 0 only for
    seed 0, as it has no attacker); ``error-feedback``: the median and rank-median
    rules with error feedback (the library's default, off in the paper and in every
    other cell) against plain and stealthy colluders, every ε and seed;
    ``error-feedback-extras``: the median rule with it on the non-IID split and
    against free riders; ``brier``: the median rules with error feedback and clients
    scoring by the Brier score (``score_metric="brier"``) against the stealthy and the
    plain colluders, every ε and seed; ``brier-extras``: the median rule so against
    free riders and on the non-IID split, then rank-median against free riders
    (ε > 0); ``brier-adaptive``: the median rules so, MultiKrum and FedMedian against
    colluders who flip 20 % or 30 % (ε = 0.4);
    ``brier-noniid``: both median rules with error feedback, scoring by macro F1 and
    by the Brier score, on the non-IID split at ε ∈ {0, 0.2, 0.4}; ``brier-plain``:
    rank-median with Brier scores and plain top-k, IID and non-IID, ε ∈ {0, 0.4};
    ``stealthy``: the stealthy
    colluders against the median rule, MultiKrum, FedMedian and Borda, then FedAvg,
    Krum, Bulyan and FedTrimmedAvg, every ε > 0 and seed; ``ranked``: the rules of
    :data:`RANKED` against them at ε ∈ {0.3, 0.4, 0.45}, and against the plain
    colluders at 0.4 and without attackers, then rank-median (rule 2, on chain)
    against both at every ε; ``all``: all of these, in the order of :data:`GRIDS`.
    ``onchain`` (not in
    ``all``): Borda and median at ε = 0.4, seed 0, and rank-median with error feedback
    and Brier scores against the stealthy colluders, on the embedded chain (the full
    SecCL strategy, mod and app), to check the fast mode. ``committees`` and ``committees-borda``
    (not in ``all``): the median rule and Borda with committees of size
    :data:`COMMITTEES` at :data:`COMMITTEE_EPSILONS`, 3 seeds, then at ε = 0.
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
        "onchain": [
            *(Cell(r, "collude", 0.4, 0, onchain=True) for r in RULES),
            # the full client (mod, app, run config) scoring by the Brier score
            Cell(
                "rank-median",
                "stealthy",
                0.4,
                0,
                onchain=True,
                error_feedback=True,
                score_metric="brier",
            ),
        ],
        # seed by seed, so that a stopped sweep leaves whole seeds
        # ε = 0 last: what committees cost without attackers
        "committees": [
            *(
                Cell("median", "collude", e, s, committee=k)
                for s in SEEDS
                for e in COMMITTEE_EPSILONS
                for k in COMMITTEES
            ),
            *(Cell("median", "collude", 0.0, s, committee=k) for s in SEEDS for k in COMMITTEES),
        ],
        "committees-borda": [
            *(
                Cell("borda", "collude", e, s, committee=k)
                for s in SEEDS
                for e in COMMITTEE_EPSILONS
                for k in COMMITTEES
            ),
            *(Cell("borda", "collude", 0.0, s, committee=k) for s in SEEDS for k in COMMITTEES),
        ],
        "noniid": [
            Cell(r, "collude", e, s, "dirichlet-0.5")
            for s in SEEDS
            for e in EPSILONS
            for r in target
        ],
        # ε = 0 has no attacker: the collude cells' runs
        "stealthy": [
            Cell(r, "stealthy", e, s)
            for rules in (
                ("median", "MultiKrum", "FedMedian", "borda"),
                ("FedAvg", "Krum", "Bulyan", "FedTrimmedAvg"),
            )
            for s in SEEDS
            for e in EPSILONS[1:]
            for r in rules
        ],
        # rules that compare within a ballot: the stealthy colluders, then the plain
        # ones, then no attacker
        "ranked": list(
            dict.fromkeys(
                [
                    *(
                        Cell(r, "stealthy", e, s)
                        for s in SEEDS
                        for e in (0.4, 0.3, 0.45)
                        for r in RANKED
                    ),
                    *(Cell(r, "collude", e, s) for s in SEEDS for e in (0.4, 0.0) for r in RANKED),
                    # rule 2 in the contract: the rest of the target's cells
                    *(
                        Cell("rank-median", a, e, s)
                        for a in ("collude", "stealthy")
                        for s in SEEDS
                        for e in EPSILONS[1:]
                    ),
                ]
            )
        ),
        # the median rules as the library runs them by default: plain and stealthy
        # colluders (IID)
        "error-feedback": [
            Cell(r, attack, e, s, error_feedback=True)
            for r, attack in (
                ("median", "collude"),
                ("rank-median", "collude"),
                ("rank-median", "stealthy"),
                ("median", "stealthy"),
            )
            for s in SEEDS
            for e in (EPSILONS[1:] if attack == "stealthy" else EPSILONS)
        ],
        # seed 0 ran at every ε; ε = 0 has no attacker (the collude cells' runs)
        "free-ride": [
            Cell(r, "free-ride", e, s)
            for s in SEEDS
            for e in (EPSILONS if s == 0 else EPSILONS[1:])
            for r in (*RULES, *ex.FLOWER)
        ],
        # then the median rule with error feedback on the non-IID split and against
        # free riders
        "error-feedback-extras": [
            Cell("median", attack, e, s, split, error_feedback=True)
            for attack, split in (("collude", "dirichlet-0.5"), ("free-ride", "iid"))
            for s in SEEDS
            for e in EPSILONS
        ],
        # the median rules with error feedback, clients scoring by the Brier score:
        # the stealthy colluders and the plain ones, seed by seed
        "brier": [
            Cell(r, attack, e, s, error_feedback=True, score_metric="brier")
            for s in SEEDS
            for attack in ("stealthy", "collude")
            for e in (EPSILONS[1:] if attack == "stealthy" else EPSILONS)
            for r in MEDIAN_RULE_NAMES
        ],
        # then the median rule so on the non-IID split and against free riders
        "brier-extras": [
            *(
                Cell("median", attack, e, s, split, error_feedback=True, score_metric="brier")
                for attack, split in (("free-ride", "iid"), ("collude", "dirichlet-0.5"))
                for s in SEEDS
                for e in EPSILONS[1:]
            ),
            *(
                Cell("rank-median", "free-ride", e, s, error_feedback=True, score_metric="brier")
                for s in SEEDS
                for e in EPSILONS[1:]
            ),
        ],
        # the non-IID split: both median rules with error feedback, by F1 and by Brier
        "brier-noniid": [
            Cell(r, "collude", e, s, "dirichlet-0.5", error_feedback=True, score_metric=m)
            for s in SEEDS
            for e in (0.0, 0.2, 0.4)
            for m in ("brier", SCORE_METRIC_DEFAULT)
            for r in MEDIAN_RULE_NAMES
        ],
        # rank-median with Brier scores and plain top-k (no error feedback), IID and not
        "brier-plain": [
            Cell("rank-median", attack, e, s, split, score_metric="brier")
            for s in SEEDS
            for attack, split, e in (
                ("collude", "iid", 0.0),
                ("collude", "iid", 0.4),
                ("stealthy", "iid", 0.4),
                ("collude", "dirichlet-0.5", 0.0),
                ("collude", "dirichlet-0.5", 0.4),
            )
        ],
        # stealthier colluders against Brier scores: 20 % and 30 % flipped, at ε = 0.4
        "brier-adaptive": [
            Cell(r, attack, 0.4, s, **extra)
            for s in SEEDS
            for attack in ("stealthy-0.2", "stealthy-0.3")
            for r, extra in (
                *(
                    (r, {"error_feedback": True, "score_metric": "brier"})
                    for r in MEDIAN_RULE_NAMES
                ),
                ("MultiKrum", {}),
                ("FedMedian", {}),
            )
        ],
    }
    if name == "all":
        return list(dict.fromkeys(c for k in GRIDS for c in groups[k]))
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
    if not cell.committee:
        del common["committee"]
    if not cell.seccl:
        common["error_feedback"] = ""  # dense updates: nothing is left out
        common["score_metric"] = ""  # nobody scores
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
    result = run_offchain(config, N, ROUNDS, LAMBDA, cell.rule, style, None, cell.committee)
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


def with_feedback(row: dict[str, Any]) -> bool:
    """Whether a row's SecCL run used error feedback (a CSV without the column: no)."""
    return parse_flag("error_feedback", row.get("error_feedback") or "false")


def metric_of(row: dict[str, Any]) -> str:
    """Return the metric a row's SecCL clients scored by (a CSV without the column: F1)."""
    return row.get("score_metric") or SCORE_METRIC_DEFAULT


def variant_name(row: dict[str, Any]) -> str:
    """Return a row's rule as the tables name it: ``rule`` + :data:`FEEDBACK` with
    error feedback, + :data:`BRIER` when its clients scored by the Brier score."""
    name = row["rule"] + (FEEDBACK if with_feedback(row) else "")
    return name + (BRIER if metric_of(row) == "brier" else "")


def base_rule(name: str) -> str:
    """Return the rule or strategy of a table's row name (its suffixes removed)."""
    return name.removesuffix(BRIER).removesuffix(FEEDBACK)


def done_keys(path: Path) -> set[tuple]:
    """Return the keys of the cells the CSV (and its committee twin) already holds."""
    keys = set()
    for name in (path, path.parent / COMMITTEE_CSV):
        if name.is_file():
            keys |= {
                (r["rule"], r["attack"], float(r["epsilon"]), int(r["seed"]), r["split"])
                + (r["mode"], int(r.get("committee") or 0), with_feedback(r), metric_of(r))
                for r in ex.read_csv(name)
            }
    return keys


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append one run's rows to the CSV (header first if the file is new).

    A CSV written before a column was added (``error_feedback``) is first rewritten
    with the current columns, its rows' new cells empty, through a temporary file
    that replaces it whole, so an interrupted rewrite loses nothing.
    """
    fields = COMMITTEE_FIELDS if path.name == COMMITTEE_CSV else FIELDS
    if path.is_file():
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), [])
        if header and tuple(header) != fields:
            old = ex.read_csv(path)
            unknown = set(header) - set(fields)
            if unknown:
                raise ValueError(f"{path} has columns this sweep does not write: {sorted(unknown)}")
            staged = path.with_name(path.name + ".tmp")
            with staged.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields, restval="")
                writer.writeheader()
                writer.writerows(old)
            staged.replace(path)
    new = not path.is_file()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
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
            append_rows(out / (COMMITTEE_CSV if rows[0].get("committee") else CSV_NAME), rows)
            last = rows[-1]
            print(
                f"[{time.monotonic() - started:6.0f}s] {i}/{len(todo)} {last['rule']} "
                f"{last['attack']} ε={last['epsilon']} seed={last['seed']} "
                + (f"k={last['committee']} " if last.get("committee") else "")
                + f"{last['split']}: final accuracy {ex.fmt(last['accuracy'])}",
                flush=True,
            )


# ------------------------------------------------------------------------ report
def labelled_rows(path: Path) -> list[dict[str, str]]:
    """Return the CSV's rows, each SecCL variant named by :func:`variant_name` (its
    own line in every table)."""
    return [{**r, "rule": variant_name(r)} for r in ex.read_csv(path)]


def finals(path: Path) -> dict[tuple, list[float]]:
    """Return final accuracies by (rule, attack, split, ε), one per seed in seed order
    (nan: n/a)."""
    by_run = ex.by_run(labelled_rows(path), "rule", "attack", "split", "epsilon", "seed")
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
        labelled_rows(path), "rule", "attack", "split", "epsilon", "seed"
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


def target_check(
    table: dict[tuple, list[float]], rule: str = "median", attack: str = "collude"
) -> list[str]:
    """Return the issue's target, checked on the IID rows of ``attack`` (3 seeds wanted).

    ``rule``: one of :data:`MEDIAN_RULE_NAMES` with a suffix of :data:`VARIANTS`:
    mean final accuracy at ε = 0.4 within 2 points of ε = 0, and at least FedMedian's
    and MultiKrum's mean at every ε (where they ran). ε = 0 has no attacker: its
    runs are the ``collude`` cells', whatever ``attack``.
    """

    def runs(name: str, e: float) -> list[float]:
        return table.get((name, "collude" if e == 0 else attack, "iid", e), [])

    def mean(name: str, e: float) -> float | None:
        values = [v for v in runs(name, e) if not math.isnan(v)]
        return statistics.mean(values) if values else None

    def seeds(name: str, e: float) -> int:
        return len(runs(name, e))

    lines = []
    base, attacked = mean(rule, 0.0), mean(rule, 0.4)
    if base is None or attacked is None:
        lines.append("- ε = 0.4 vs ε = 0: not measured yet.")
    else:
        gap = (base - attacked) * 100
        lines.append(
            f"- ε = 0.4 vs ε = 0: {attacked:.4f} ({seeds(rule, 0.4)} seeds) against "
            f"{base:.4f} ({seeds(rule, 0.0)} seeds), {gap:+.2f} points lower: target "
            f"(at most 2 points) {'met' if gap <= 2 else 'NOT met'}."
        )
    for other in ("FedMedian", "MultiKrum"):
        worse = []
        for e in EPSILONS:
            ours, theirs = mean(rule, e), mean(other, e)
            if ours is None or theirs is None:
                continue
            if ours < theirs:
                worse.append(f"ε = {e}: {ours:.4f} < {theirs:.4f}")
        compared = [e for e in EPSILONS if mean(rule, e) is not None and mean(other, e) is not None]
        verdict = "met" if not worse else "NOT met at " + "; ".join(worse)
        lines.append(
            f"- at least as good as {other} at every ε (compared at ε ∈ {compared}): {verdict}."
        )
        paired = []
        for e in compared:  # the same seed is the same data, model and attackers
            ours, theirs = runs(rule, e), runs(other, e)
            diffs = [(a - b) * 100 for a, b in zip(ours, theirs, strict=False)]
            paired.append(f"ε = {e}: {', '.join(f'{d:+.2f}' for d in diffs)}")
        lines.append(f"  - {rule} minus {other} per seed, in points: " + "; ".join(paired) + ".")
    return lines


def missing_cells(path: Path) -> dict[str, int]:
    """Return how many cells of each grid group of ``all`` the CSV does not hold yet."""
    done = done_keys(path)
    counts = {name: sum(c.key() not in done for c in grid(name)) for name in GRIDS}
    return {name: count for name, count in counts.items() if count}


def onchain_table(out: Path, table: dict[tuple, list[float]]) -> str:
    """Return the spot checks on the embedded chain beside the fast mode's same runs."""
    path = out / "onchain" / CSV_NAME
    if not path.is_file():
        return "(no on-chain spot check in this directory)"
    rows = []
    fast = ex.by_run(labelled_rows(out / CSV_NAME), "rule", "attack", "split", "epsilon", "seed")
    for (rule, attack, split, eps, seed), runs in ex.by_run(
        labelled_rows(path), "rule", "attack", "split", "epsilon", "seed"
    ).items():
        last = max(runs, key=lambda r: int(r["round"]))
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
    named = (*COMPARED, *(r + v for v in VARIANTS[1:] for r in MEDIAN_RULE_NAMES), *ex.FLOWER)
    order = [r for r in named if r in rules]
    combos = list(dict.fromkeys((k[1], k[2]) for k in table))
    onchain = all(r["mode"] != "off-chain" for r in ex.read_csv(path))
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
        if len({k[3] for k in table if k[1:3] == (attack, split)}) > 1:
            panels.append((attack, split))  # a curve over ε (not a single ε's probe)
    body = (
        f"Final test accuracy (round {ROUNDS}), mean ± standard deviation over seeds "
        f"(number of seeds in brackets); n = {N}, λ = {LAMBDA}, attack from round {START}. "
        + (
            "SecCL ran on the embedded chain (the full strategy, mod and app); "
            if onchain
            else "SecCL rules ran in the off-chain fast mode (election by the Python reference); "
        )
        + "Flower strategies through flwr.serverapp.strategy. n/a: the strategy cannot "
        "run that many attackers; '-': not run.\n\n"
        + "\n\n".join(
            f"## Target ({rule}, {attack}, IID)\n\n" + "\n".join(target_check(table, rule, attack))
            for attack in ("collude", "stealthy")
            for rule in (r + v for v in VARIANTS for r in MEDIAN_RULE_NAMES)
            # a sweep over ε, not a single ε's probe
            if len({k[3] for k in table if k[:2] == (rule, attack)}) > 1
        )
        + (
            ""  # the spot checks themselves: no fast-mode seats, no grid to complete
            if onchain
            else "\n\n## Fast mode against the chain\n\n"
            + onchain_table(out, table)
            + "\n\n## Candidate seats won by attackers (rounds "
            + f"{START}-{ROUNDS}, all seeds)\n\n"
            + seats_table(path)
        )
        + "\n\n## Final accuracy\n\n"
        + "\n\n".join(sections)
    )
    missing = {} if onchain else missing_cells(path)
    if missing:
        body += (
            "\n\n## Not run yet\n\nCells of `--grid all` missing from the CSV: "
            + ", ".join(f"{name} {count}" for name, count in missing.items())
            + ". `python examples/mnist/collusion.py --grid all --jobs 2` runs them "
            "(it skips the cells the CSV already holds)."
        )
    ex.write_markdown(out / "collusion.md", "Colluding clients", data_note, body)
    panels = panels or combos  # only single-ε probes (the on-chain spot checks): draw those
    fig, axes = ex.figure(len(panels), width=5.2)
    for ax, (attack, split) in zip(axes, panels, strict=True):
        for rule in order:
            points = points_of({e: table.get((rule, attack, split, e)) for e in eps})
            if points:
                plot_rule(ax, rule, points)
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
    if any(k[0].endswith(BRIER) and k[1] == "stealthy" for k in table):
        brier_figure(table, out, data_note)


def points_of(runs: dict[float, list[float] | None]) -> list[tuple[float, float, float]]:
    """Return ``(x, mean, sd)`` of the final accuracies at each x that has any (nan: n/a,
    left out)."""
    points = []
    for x, values in runs.items():
        kept = [v for v in values or [] if not math.isnan(v)]
        if kept:
            points.append(
                (x, statistics.mean(kept), statistics.stdev(kept) if len(kept) > 1 else 0.0)
            )
    return points


def plot_rule(ax, rule: str, points: list[tuple[float, float, float]]) -> None:
    """Draw one rule's (x, mean, sd) points: one colour per rule or strategy, its
    variants (:data:`VARIANTS`) in :data:`LINE_STYLES`."""
    base = base_rule(rule)
    style = {"lw": 2.5} if base in COMPARED else {"lw": 1, "alpha": 0.8}
    index = (*COMPARED, *ex.FLOWER).index(base)
    style["color"] = f"C{index}" if index < 10 else "black"
    style["ls"] = LINE_STYLES[rule.removeprefix(base)]
    x, y, spread = zip(*points, strict=True)
    ax.errorbar(x, y, yerr=spread, fmt="o", ms=3, capsize=2, label=rule, **style)


BRIER_FIGURE_RULES = (
    "median",
    "rank-median",
    "median" + FEEDBACK + BRIER,
    "rank-median" + FEEDBACK + BRIER,
    "MultiKrum",
    "FedMedian",
)
"""What ``collusion_brier.png`` compares: the median rules by macro F1 (plain top-k) and
by Brier scores (with error feedback), and Flower's two best strategies here."""


def brier_figure(table: dict[tuple, list[float]], out: Path, data_note: str) -> None:
    """Write ``collusion_brier.png``: the stealthy colluders (IID) by ε, and at ε = 0.4
    by the share of labels they flip, zoomed to where the rules differ."""
    fig, (by_eps, by_flip) = ex.figure(2, width=6.0)
    flips = sorted(STEALTH_FLIPS.items(), key=lambda item: item[1])
    for rule in BRIER_FIGURE_RULES:
        over_eps = points_of(
            {e: table.get((rule, "collude" if e == 0 else "stealthy", "iid", e)) for e in EPSILONS}
        )
        over_flip = points_of({share: table.get((rule, a, "iid", 0.4)) for a, share in flips})
        for ax, points in ((by_eps, over_eps), (by_flip, over_flip)):
            if points:
                plot_rule(ax, rule, points)
    by_eps.set_title("stealthy colluders (40 % of labels flipped), IID")
    by_eps.set_xlabel("ε (fraction of colluders; ε = 0: no attacker)")
    by_flip.set_title("ε = 0.4, IID: the colluders flip less to stay hidden")
    by_flip.set_xlabel("share of each batch's labels the colluders flip")
    for ax in (by_eps, by_flip):
        ax.set_ylabel(f"test accuracy after round {ROUNDS} (mean ± sd, 3 seeds)")
        ax.set_ylim(0.65, 0.92)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    ex.save_figure(
        fig, out / "collusion_brier.png", "Brier scores against stealthy colluders", data_note
    )
    print(f"wrote {out / 'collusion_brier.png'}")


# --------------------------------------------------------------------- committees
RISK_CSV = "committee_risk.csv"
RISK_SIZES = (20, 50, 100)
RISK_EPSILONS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45)
RISK_FIELDS = (
    "n",
    "k",
    "k_eff",
    "epsilon",
    "f",
    "p_lift_update",
    "p_push_update",
    "expected_lifted",
    "p_round_lift",
    "p_round_any",
    "mc_trials",
    "mc_lift_update",
    "mc_push_update",
    "mc_round_lift",
    "mc_round_any",
    "mc_lifted",
    "mc_seats",
)


def committee_risk_rows(trials: int = 2000) -> list[dict[str, Any]]:
    """Return the capture probabilities of :mod:`seccl_flwr.protocol.committee_risk`.

    For n ∈ :data:`RISK_SIZES`, ε ∈ :data:`RISK_EPSILONS` (f = round(ε·n) colluders,
    as in the experiments) and k ∈ {5, 10, n - 1}: per update and per round
    (analytic), and a Monte Carlo of ``trials`` rounds over the real assignment
    (``mc_seats``: the mean of min(M, lifted colluders), M = ⌈λ·n⌉).
    """
    rows = []
    for n in RISK_SIZES:
        colluders = [len(attacker_partitions(n, e)) for e in RISK_EPSILONS]
        m = num_candidates(LAMBDA, n)
        for k in (*COMMITTEES, n - 1):
            lift = risk.round_capture_all(n, k, colluders, ("lift",))
            capture = risk.round_capture_all(n, k, colluders)
            simulated = risk.simulate(n, k, colluders, trials, seed=n * 1000 + k)
            for e, f, sim in zip(RISK_EPSILONS, colluders, simulated, strict=True):
                rows.append(
                    {
                        "n": n,
                        "k": k,
                        "k_eff": effective_size(k, n),
                        "epsilon": e,
                        "f": f,
                        "p_lift_update": risk.update_capture(n, f, k, "lift"),
                        "p_push_update": risk.update_capture(n, f, k, "push"),
                        "expected_lifted": risk.expected_lifted(n, f, k),
                        "p_round_lift": lift[f],
                        "p_round_any": capture[f],
                        "mc_trials": trials,
                        "mc_lift_update": sim.lift_update,
                        "mc_push_update": sim.push_update,
                        "mc_round_lift": sim.round_lift,
                        "mc_round_any": sim.round_any,
                        "mc_lifted": sim.lifted,
                        "mc_seats": sim.seats(m),
                    }
                )
            print(f"capture probabilities: n = {n}, k = {k}", flush=True)
    return rows


def committee_finals(out: Path) -> dict[tuple, list[tuple[float, int]]]:
    """Return (final accuracy, attacker seats in rounds START..ROUNDS) per seed.

    Keyed by (rule, k, ε): the committee runs of ``committees.csv`` and, as k = n - 1,
    the full cross-evaluation runs of ``collusion.csv`` (collude, IID, off-chain).
    """
    rows = []
    if (out / COMMITTEE_CSV).is_file():
        rows += ex.read_csv(out / COMMITTEE_CSV)
    full = [
        {**r, "committee": N - 1}
        for r in ex.read_csv(out / CSV_NAME)
        if r["mode"] == "off-chain"
        and r["attack"] == "collude"
        and r["split"] == "iid"
        and not with_feedback(r)
    ]
    rules = {r["rule"] for r in rows} or set(RULES)
    rows += [r for r in full if r["rule"] in rules]
    table: dict[tuple, list[tuple[float, int]]] = {}
    runs = ex.by_run(rows, "rule", "committee", "epsilon", "seed")
    for (rule, k, eps, _), run in sorted(runs.items(), key=lambda i: int(i[0][3])):
        last = max(run, key=lambda r: int(r["round"]))
        won = sum(int(r["attackers_elected"]) for r in run if int(r["round"]) >= START)
        table.setdefault((rule, int(k), float(eps)), []).append((float(last["accuracy"]), won))
    return table


def committee_report(out: Path, data_note: str) -> None:
    """Write committees.md and committees.png (accuracy and capture vs ε, by k)."""
    risk_path = out / RISK_CSV
    if not risk_path.is_file():
        with risk_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=RISK_FIELDS)
            writer.writeheader()
            writer.writerows(committee_risk_rows())
    risks = ex.read_csv(risk_path)
    table = committee_finals(out)
    sizes = (*COMMITTEES, N - 1)
    eps = sorted({e for (_, k, e) in table if k != N - 1} | {0.0}) or list(COMMITTEE_EPSILONS)
    seats_per_run = num_candidates(LAMBDA, N) * (ROUNDS - START + 1)
    lines = []
    for rule in [r for r in RULES if any(key[0] == r for key in table)]:
        for k in sizes:
            cells = []
            for e in eps:
                runs = table.get((rule, k, e), [])
                acc = mean_spread([a for a, _ in runs]) if runs else "-"
                seats = f"{sum(w for _, w in runs)}/{seats_per_run * len(runs)}" if runs else ""
                cells.append(f"{acc}, seats {seats}" if runs else "-")
            label = f"k = {k}" if k != N - 1 else f"full (k = {N - 1})"
            lines.append([rule, label, *cells])
    measured = ex.markdown_table(["rule", "committee", *(f"ε={e}" for e in eps)], lines)
    predicted = []
    for r in risks:
        if int(r["n"]) == N and float(r["epsilon"]) in eps:
            runs = table.get(("median", int(r["k"]), float(r["epsilon"])), [])
            got = sum(w for _, w in runs) / (len(runs) * (ROUNDS - START + 1)) if runs else None
            predicted.append(
                [
                    r["k"],
                    r["epsilon"],
                    r["f"],
                    f"{float(r['p_lift_update']):.4f}",
                    f"{float(r['p_round_lift']):.4f}",
                    f"{float(r['mc_seats']):.3f}",
                    f"{got:.3f} ({len(runs)} seeds)" if got is not None else "-",
                ]
            )
    seat_table = ex.markdown_table(
        [
            "k",
            "ε",
            "f",
            "P(a colluder lifted)",
            "P(≥ 1 lifted in a round)",
            "predicted seats per round",
            "measured seats per round, median rule",
        ],
        predicted,
    )
    capture = ex.markdown_table(
        ["n", "k", "ε", "f", "lift (update)", "push (update)", "≥ 1 lift (round)", "any (round)"]
        + ["MC lift (update)", "MC any (round)"],
        [
            [r["n"], r["k"], r["epsilon"], r["f"]]
            + [f"{float(r[c]):.4f}" for c in ("p_lift_update", "p_push_update")]
            + [f"{float(r[c]):.4f}" for c in ("p_round_lift", "p_round_any")]
            + [f"{float(r[c]):.4f}" for c in ("mc_lift_update", "mc_round_any")]
            for r in risks
        ],
    )
    body = (
        f"n = {N}, λ = {LAMBDA} (M = {num_candidates(LAMBDA, N)}), {ROUNDS} rounds, label "
        f"flippers from round {START} who give each other the top score and everyone "
        "else 0; SecCL in the off-chain fast mode with committees of k evaluators per "
        f"update (full: k = n - 1 = {N - 1}, the rows of {CSV_NAME}). Final test "
        "accuracy, mean ± sd over seeds (number in brackets), and the candidate seats "
        f"colluders won in rounds {START}-{ROUNDS} summed over the seeds.\n\n"
        + measured
        + "\n\n## Seats: predicted by the capture probability, measured\n\n"
        "Predicted: the Monte Carlo mean of min(M, colluders lifted) per round; measured: "
        "attacker seats per attacked round of the median-rule runs.\n\n"
        + seat_table
        + "\n\n## Capture probabilities (median rule)\n\n"
        "f = round(ε·n) colluders; an update's committee is a uniformly random "
        "k-subset of the other n - 1 authors. lift: a colluding update with more than "
        "half of its k scores colluding; push: an honest update with at least half; "
        "round: at least one such update in the round (exact). MC: "
        f"{risks[0]['mc_trials'] if risks else 0} rounds of protocol.committee.assignments "
        f"with random seeds ({RISK_CSV}).\n\n" + capture
    )
    ex.write_markdown(out / "committees.md", "Committees: the security price", data_note, body)
    fig, (acc_ax, risk_ax) = ex.figure(2, width=6.0)
    for rule, dash in (("median", "-"), ("borda", "--")):
        for i, k in enumerate(sizes):
            points = [
                (e, statistics.mean(a for a, _ in runs), statistics.pstdev(a for a, _ in runs))
                for e in eps
                if (runs := table.get((rule, k, e)))
            ]
            if not points:
                continue
            x, y, spread = zip(*points, strict=True)
            label = f"{rule}, k = {k}" if k != N - 1 else f"{rule}, full (k = {N - 1})"
            acc_ax.errorbar(
                x, y, yerr=spread, fmt="o" + dash, ms=3, capsize=2, color=f"C{i}", label=label
            )
    acc_ax.set_xlabel("ε (fraction of colluders)")
    acc_ax.set_ylabel(f"test accuracy after round {ROUNDS} (mean ± sd, 3 seeds)")
    acc_ax.set_title(f"n = {N}, λ = {LAMBDA}: median (solid), Borda (dashed)")
    acc_ax.set_ylim(0, 1)
    for n, dash in zip(RISK_SIZES, ("-", "--", ":"), strict=True):
        for i, k in enumerate((*COMMITTEES, n - 1)):
            points = [
                (float(r["epsilon"]), float(r["p_round_lift"]))
                for r in risks
                if int(r["n"]) == n and int(r["k"]) == k
            ]
            x, y = zip(*points, strict=True)
            label = f"n = {n}, " + (f"k = {k}" if k != n - 1 else "full")
            risk_ax.plot(x, y, dash, marker=".", color=f"C{i}", label=label)
    risk_ax.set_xlabel("ε (fraction of colluders)")
    risk_ax.set_ylabel("P(≥ 1 colluder lifted in a round)")
    risk_ax.set_title("median rule: colluders hold > half of a colluder's committee")
    for ax in (acc_ax, risk_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ex.save_figure(fig, out / "committees.png", "Committees: what the sampling costs", data_note)
    print(f"wrote {out / 'committees.md'}, committees.png, {RISK_CSV}")


def main(argv: list[str] | None = None) -> None:
    """Run a grid (or only report)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--grid",
        default="all",
        choices=("all", *GRIDS, *APART),
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
    if (args.out / COMMITTEE_CSV).is_file():
        committee_report(args.out, note)


if __name__ == "__main__":
    main(sys.argv[1:])

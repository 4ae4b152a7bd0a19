"""SecCL paper, Figure 5: colluding label flippers.

n = 20 participants, λ = 0.2; from round 5 the first ε·n participants train on
flipped labels (``9 - y``) and rank each other first and everyone else last, for
ε ∈ {0, 0.1, 0.2, 0.25, 0.3, 0.4}. Writes ``fig5.csv``, ``fig5.png`` and
``fig5.md`` into the output directory.

Usage::

    python examples/mnist/fig5.py            # the paper's settings, 10 rounds
    python examples/mnist/fig5.py --quick    # 5 participants, 2 rounds, ε ∈ {0, 0.2}
"""

import argparse
import math
import sys
from dataclasses import replace
from typing import Any

from mnist_seccl import experiments as ex
from mnist_seccl.experiments import Setting

from seccl_flwr.report import write_csv

PARTICIPANTS = 20
LAMBDA = 0.2
QUICK_EPSILONS = (0.0, 0.2)

NAME = "fig5"


def epsilons(args: argparse.Namespace) -> tuple[float, ...]:
    """Attacker fractions of the sweep."""
    return QUICK_EPSILONS if args.quick else ex.EPSILONS


def sweep(strategy: str, args: argparse.Namespace) -> list[Setting]:
    """Return one strategy's runs over ε (the attack of Figure 5)."""
    setting = Setting(strategy, PARTICIPANTS, args.rounds, candidate_fraction=LAMBDA)
    return [
        ex.quick_setting(replace(setting, attack_fraction=e), args.quick) for e in epsilons(args)
    ]


def settings(args: argparse.Namespace) -> list[Setting]:
    """Return the runs of Figure 5."""
    return sweep("SecCL", args)


def report(results: dict[Setting, list[dict]], args: argparse.Namespace, base: dict) -> None:
    """Write fig5.csv, fig5.png and fig5.md."""
    note = ex.data_note(base)
    chosen = settings(args)
    write_csv([row for s in chosen for row in results[s]], args.out / "fig5.csv")
    fig, (ax,) = ex.figure(1, width=7)
    table = []
    for s in chosen:
        run = results[s]
        ex.plot_accuracy(ax, run, f"ε={s.attack_fraction} ({s.attackers} attackers)")
        table.append(_table_row(s, run, ex.attack_start(chosen)))
    start = ex.attack_start(chosen)
    ax.axvline(start - 0.5, color="red", ls=":", label=f"attack starts (round {start})")
    ex.accuracy_axes(ax, args.rounds)
    ax.legend(loc="lower left", fontsize=8)
    n, m = chosen[0].participants, math.ceil(LAMBDA * chosen[0].participants)
    ex.save_figure(
        fig,
        args.out / "fig5.png",
        f"SecCL, {n} participants, λ={LAMBDA} (M={m}): colluding label flippers (Figure 5)",
        note,
    )
    header = [
        "ε",
        "attackers",
        f"round {start - 1} (before)",
        f"round {args.rounds}",
        "lowest after start",
        "elected slots won by attackers",
    ]
    body = (
        f"{n} participants, λ={LAMBDA} (M={m} candidates per round), {args.rounds} rounds. "
        f"From round {start} the first round(ε·n) participants train on flipped labels "
        "(9 - y) and rank each other first and everyone else last. The last column counts, "
        f"over rounds {start}-{args.rounds}, the candidate slots attackers won.\n\n"
        + ex.markdown_table(header, table)
    )
    ex.write_markdown(args.out / "fig5.md", "Figure 5: colluding label flippers", note, body)
    print(f"wrote {args.out / 'fig5.csv'}, fig5.png, fig5.md")


def _table_row(s: Setting, run: list[dict], start: int) -> list[Any]:
    after = [r for r in run if r["round"] >= start]
    won = sum(int(r["attackers_elected"] or 0) for r in after)
    slots = len(after) * math.ceil(s.candidate_fraction * s.participants)
    return [
        s.attack_fraction,
        s.attackers,
        ex.fmt(ex.accuracy_at(run, start - 1)),
        ex.fmt(ex.final(run)),
        ex.fmt(min((r["test_accuracy"] for r in after), default=math.nan)),
        f"{won}/{slots}",
    ]


def main(argv: list[str] | None = None) -> dict[Setting, list[dict]]:
    """Run Figure 5; return the rows by setting."""
    return ex.main([sys.modules[__name__]], __doc__, argv)


if __name__ == "__main__":
    main(sys.argv[1:])

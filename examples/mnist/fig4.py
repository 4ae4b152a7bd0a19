"""SecCL paper, Figure 4: test accuracy per round without attackers.

n ∈ {20, 30} participants, λ ∈ {0.1, 0.2, 0.4}, batch 32, lr 0.02, share fraction
0.1, against a centralized baseline: the same CNN trained on the union of the
participants' training data with the same optimizer. Writes ``fig4.csv``,
``fig4.png`` and ``fig4.md`` into the output directory.

Usage::

    python examples/mnist/fig4.py            # the paper's settings, 10 rounds
    python examples/mnist/fig4.py --quick    # 5 participants, 2 rounds, 900 digits
    python examples/mnist/fig4.py --rounds 30 --sizes 20 --lambdas 0.4 --out /tmp/f4
"""

import argparse
import math
import sys
from typing import Any

from mnist_seccl import experiments as ex
from mnist_seccl.experiments import CENTRALIZED, Setting

from seccl_flwr.report import write_csv

PARTICIPANTS = (20, 30)
LAMBDAS = (0.1, 0.2, 0.4)

NAME = "fig4"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add Figure 4's options: which n and λ to run."""
    parser.add_argument("--sizes", type=int, nargs="+", default=list(PARTICIPANTS))
    parser.add_argument("--lambdas", type=float, nargs="+", default=list(LAMBDAS))


def settings(args: argparse.Namespace) -> list[Setting]:
    """Return the runs of Figure 4 (``--quick``: 5 participants, λ ∈ {0.2, 0.4})."""
    sizes, lambdas = ((5,), (0.2, 0.4)) if args.quick else (args.sizes, args.lambdas)
    out = []
    for n in sizes:
        out.append(Setting(CENTRALIZED, n, args.rounds))
        out += [Setting("SecCL", n, args.rounds, candidate_fraction=lam) for lam in lambdas]
    return out


def report(results: dict[Setting, list[dict]], args: argparse.Namespace, base: dict) -> None:
    """Write fig4.csv, fig4.png and fig4.md."""
    note = ex.data_note(base)
    chosen = settings(args)
    rows = [row for s in chosen for row in results[s]]
    write_csv(rows, args.out / "fig4.csv")
    sizes = sorted({s.participants for s in chosen})
    fig, axes = ex.figure(len(sizes))
    table = []
    for ax, n in zip(axes, sizes, strict=True):
        central = results[Setting(CENTRALIZED, n, args.rounds)]
        for s in (s for s in chosen if s.participants == n):
            run = results[s]
            style = {"color": "black", "marker": ""} if s.strategy == CENTRALIZED else {}
            label = (
                "centralized (same data)"
                if s.strategy == CENTRALIZED
                else f"λ={s.candidate_fraction}"
            )
            ex.plot_accuracy(ax, run, label, "--" if s.strategy == CENTRALIZED else "o-", **style)
            table.append(_table_row(s, run, central, args.rounds))
        ax.axhline(ex.PAPER_BASELINE, ls=":", color="gray", label="paper's baseline (full MNIST)")
        ex.accuracy_axes(ax, args.rounds)
        ax.set_title(f"{n} participants")
        ax.legend(loc="lower right", fontsize=8)
    ex.save_figure(fig, args.out / "fig4.png", "SecCL without attackers (Figure 4)", note)
    header = [
        "n",
        "run",
        "M",
        "round 1",
        f"round {min(5, args.rounds)}",
        f"round {args.rounds}",
        "gap to centralized",
        "first round within 0.02",
    ]
    body = (
        f"{args.rounds} rounds; batch {base['batch-size']}, lr {base['lr']}, "
        f"{base['local-epochs']} local epoch(s) per round, share fraction "
        f"{base.get('share-fraction', 0.1)}. Test accuracy of the global model on the "
        f"held-out digits. The centralized baseline's round r is the model after "
        f"r × {base['local-epochs']} epochs over the union of the participants' "
        f"training parts. The paper's baseline on full MNIST: {ex.PAPER_BASELINE}.\n\n"
        + ex.markdown_table(header, table)
    )
    ex.write_markdown(args.out / "fig4.md", "Figure 4: SecCL without attackers", note, body)
    print(f"wrote {args.out / 'fig4.csv'}, fig4.png, fig4.md")


def _table_row(s: Setting, run: list[dict], central: list[dict], rounds: int) -> list[Any]:
    target = ex.final(central)
    within = next(
        (r["round"] for r in run if r["round"] > 0 and r["test_accuracy"] >= target - 0.02), "-"
    )
    gap = target - ex.final(run)
    return [
        s.participants,
        "centralized" if s.strategy == CENTRALIZED else f"SecCL λ={s.candidate_fraction}",
        "" if s.strategy == CENTRALIZED else math.ceil(s.candidate_fraction * s.participants),
        ex.fmt(ex.accuracy_at(run, 1)),
        ex.fmt(ex.accuracy_at(run, min(5, rounds))),
        ex.fmt(ex.final(run)),
        "" if s.strategy == CENTRALIZED else f"{gap:+.4f}",
        "" if s.strategy == CENTRALIZED else within,
    ]


def main(argv: list[str] | None = None) -> dict[Setting, list[dict]]:
    """Run Figure 4; return the rows by setting."""
    return ex.main([sys.modules[__name__]], __doc__, argv)


if __name__ == "__main__":
    main(sys.argv[1:])

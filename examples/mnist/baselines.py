"""Figure 5's attack against Flower's own strategies, beside SecCL.

The same 20 participants, data, model and label flippers from round 5 (ε ∈ {0, 0.1,
0.2, 0.25, 0.3, 0.4}) under FedAvg, Krum, MultiKrum, Bulyan, FedMedian and
FedTrimmedAvg (``flwr.serverapp.strategy``). Krum, MultiKrum and Bulyan are told the
true number of attackers f; MultiKrum averages the n - f best-scored updates;
FedTrimmedAvg trims β = 0.2 (its default) at each end. Bulyan needs n >= 4f + 3, so
at n = 20 it runs only for f <= 4 (ε <= 0.2) and is n/a above. Ranking collusion
means nothing to these strategies (there is no vote), so their attackers only flip
labels. Writes ``baselines.csv``, ``baselines.png`` and ``baselines.md``.

Usage::

    python examples/mnist/baselines.py            # 6 strategies + SecCL, 10 rounds
    python examples/mnist/baselines.py --quick    # 5 participants, 2 rounds
"""

import argparse
import sys

import fig5
from mnist_seccl import experiments as ex
from mnist_seccl.experiments import FLOWER, Setting

from seccl_flwr.report import write_csv

STRATEGIES = ("SecCL", *FLOWER)

NAME = "baselines"


def settings(args: argparse.Namespace) -> list[Setting]:
    """Return every strategy's sweep over ε (SecCL's is Figure 5's)."""
    return [s for strategy in STRATEGIES for s in fig5.sweep(strategy, args)]


def report(results: dict[Setting, list[dict]], args: argparse.Namespace, base: dict) -> None:
    """Write baselines.csv, baselines.png and baselines.md."""
    note = ex.data_note(base)
    chosen = settings(args)
    write_csv([row for s in chosen for row in results[s]], args.out / "baselines.csv")
    eps = fig5.epsilons(args)
    n = chosen[0].participants
    fig, (left, right) = ex.figure(2)
    table, reasons = [], {}
    shown = 0.3 if 0.3 in eps else eps[-1]  # ε of the per-round panel
    for strategy in STRATEGIES:
        runs = [s for s in chosen if s.strategy == strategy]
        finals = [ex.final(results[s]) for s in runs]
        style = {"lw": 2.5, "color": "black"} if strategy == "SecCL" else {}
        left.plot(eps, finals, "o-", ms=4, label=strategy, **style)
        table.append([strategy, *(ex.fmt(v) for v in finals)])
        for s in runs:
            reason = ex.unsupported(s)
            if reason:
                reasons.setdefault(strategy, []).append(f"ε={s.attack_fraction} ({reason})")
            elif s.attack_fraction == shown:
                run = results[s]
                ex.plot_accuracy(right, run, strategy, **style)
    left.set_xlabel("ε (fraction of label flippers)")
    left.set_ylabel(f"test accuracy after round {args.rounds}")
    left.set_ylim(0, 1)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    left.set_title(f"final accuracy vs ε, n={n}")
    start = ex.attack_start(chosen)
    right.axvline(start - 0.5, color="red", ls=":")
    ex.accuracy_axes(right, args.rounds)
    right.set_title(f"per round at ε={shown} (attack from round {start})")
    right.legend(fontsize=8)
    ex.save_figure(
        fig, args.out / "baselines.png", "Label flippers: SecCL vs Flower's strategies", note
    )
    attackers = {e: ex.Setting(participants=n, attack_fraction=e).attackers for e in eps}
    header = ["strategy", *(f"ε={e} (f={attackers[e]})" for e in eps)]
    body = (
        f"Test accuracy after round {args.rounds}; n={n}; label flippers from round "
        f"{start}. SecCL: λ={fig5.LAMBDA}, colluding attackers (they also rank each "
        "other first). Krum/MultiKrum/Bulyan get the true f; MultiKrum keeps n - f "
        "updates; FedTrimmedAvg β = 0.2.\n\n"
        + ex.markdown_table(header, table)
        + "".join(f"\n\nn/a for {k} at " + "; ".join(v) + "." for k, v in reasons.items())
    )
    ex.write_markdown(
        args.out / "baselines.md", "Label flippers: SecCL vs Flower's strategies", note, body
    )
    print(f"wrote {args.out / 'baselines.csv'}, baselines.png, baselines.md")


def main(argv: list[str] | None = None) -> dict[Setting, list[dict]]:
    """Run baselines; return the rows by setting."""
    return ex.main([sys.modules[__name__]], __doc__, argv)


if __name__ == "__main__":
    main(sys.argv[1:])

"""SecCL's sparse update with and without error feedback, against FedAvg.

n ∈ {10, 20} participants, all honest, the same data, model, seed and optimizer
(batch 32, lr 0.02, 2 local epochs) at SecCL's defaults (λ = 0.2, share fraction
0.1): FedAvg (dense updates, every participant averaged), SecCL without error
feedback (each client sends the top 10 % of its change, the rest is lost) and with
it (each client adds what its last update left out to its next change before
sparsifying). Writes ``error_feedback.csv``, ``error_feedback.png`` and
``error_feedback.md`` into the output directory.

Usage::

    python examples/mnist/error_feedback.py            # n = 10 and 20, 10 rounds
    python examples/mnist/error_feedback.py --quick    # 5 participants, 2 rounds
"""

import argparse
import sys

from mnist_seccl import experiments as ex
from mnist_seccl.experiments import Setting

from seccl_flwr.protocol.params import (
    DEFAULT_CANDIDATE_FRACTION,
    DEFAULT_SHARE_FRACTION,
    num_candidates,
)
from seccl_flwr.report import write_csv

PARTICIPANTS = (10, 20)

NAME = "error_feedback"

VARIANTS = (
    ("FedAvg", {"strategy": "FedAvg"}),
    ("SecCL, no error feedback", {"strategy": "SecCL", "error_feedback": False}),
    ("SecCL, error feedback", {"strategy": "SecCL", "error_feedback": True}),
)
"""Table rows: label and the :class:`Setting` fields of each variant."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the option of which n to run."""
    parser.add_argument("--sizes", type=int, nargs="+", default=list(PARTICIPANTS))


def sizes_of(args: argparse.Namespace) -> list[int]:
    """Return the numbers of participants to run (``--quick``: 5)."""
    return [5] if args.quick else list(args.sizes)


def settings(args: argparse.Namespace) -> list[Setting]:
    """Return every variant at every n, in table order."""
    return [
        Setting(participants=n, rounds=args.rounds, **fields)
        for _, fields in VARIANTS
        for n in sizes_of(args)
    ]


def report(results: dict[Setting, list[dict]], args: argparse.Namespace, base: dict) -> None:
    """Write error_feedback.csv, error_feedback.png and error_feedback.md."""
    note = ex.data_note(base)
    sizes = sizes_of(args)
    write_csv([row for s in settings(args) for row in results[s]], args.out / "error_feedback.csv")
    fig, axes = ex.figure(len(sizes))
    table = []
    middle = max(1, args.rounds // 2)
    for label, fields in VARIANTS:
        runs = [results[Setting(participants=n, rounds=args.rounds, **fields)] for n in sizes]
        for ax, run in zip(axes, runs, strict=True):
            ex.plot_accuracy(ax, run, label)
        table.append(
            [label]
            + [f"{ex.fmt(ex.accuracy_at(run, middle))} / {ex.fmt(ex.final(run))}" for run in runs]
        )
    for ax, n in zip(axes, sizes, strict=True):
        ex.accuracy_axes(ax, args.rounds, ylim=(0.5, 1.0))
        ax.set_title(f"n={n}, M={num_candidates(DEFAULT_CANDIDATE_FRACTION, n)}")
        ax.legend(fontsize=8)
    ex.save_figure(fig, args.out / "error_feedback.png", "Error feedback: SecCL vs FedAvg", note)
    header = ["", *(f"n={n} (M={num_candidates(DEFAULT_CANDIDATE_FRACTION, n)})" for n in sizes)]
    body = (
        f"Held-out test accuracy after round {middle} / round {args.rounds}; all "
        f"participants honest and training every round; batch {base['batch-size']}, "
        f"lr {base['lr']}, {base['local-epochs']} local epochs, seed {base['seed']}. "
        f"SecCL at its defaults: λ = {DEFAULT_CANDIDATE_FRACTION} (M = ceil(λn) "
        f"candidates merged per round), share fraction {DEFAULT_SHARE_FRACTION} "
        "(global top-k).\n\n" + ex.markdown_table(header, table)
    )
    ex.write_markdown(args.out / "error_feedback.md", "Error feedback: SecCL vs FedAvg", note, body)
    print(f"wrote {args.out / 'error_feedback.csv'}, error_feedback.png, error_feedback.md")


def main(argv: list[str] | None = None) -> dict[Setting, list[dict]]:
    """Run the comparison; return the rows by setting."""
    return ex.main([sys.modules[__name__]], __doc__, argv)


if __name__ == "__main__":
    main(sys.argv[1:])

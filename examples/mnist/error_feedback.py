"""SecCL's sparse update with and without error feedback, against FedAvg.

n ∈ {10, 20} participants, all honest, the same data, model, seed and optimizer
(batch 32, lr 0.02, 2 local epochs) at SecCL's defaults (λ = 0.2, share fraction
0.1): FedAvg (dense updates, every participant averaged), SecCL without error
feedback (each client sends the top 10 % of its change, the rest is lost) and with
it (each client adds what its last update left out to its next change before
sparsifying). Writes ``error_feedback.csv``, ``error_feedback.png`` and
``error_feedback.md`` into the output directory.

Usage::

    python examples/mnist/error_feedback.py            # n = 10 and 20, seeds 0-2, 10 rounds
    python examples/mnist/error_feedback.py --quick --seeds 0   # 5 participants, 2 rounds
"""

import argparse
import statistics
import sys
import time

from mnist_seccl import experiments as ex
from mnist_seccl.experiments import Setting

from seccl_flwr.protocol.params import (
    DEFAULT_CANDIDATE_FRACTION,
    DEFAULT_SHARE_FRACTION,
    num_candidates,
)
from seccl_flwr.report import write_csv

PARTICIPANTS = (10, 20)
SEEDS = (0, 1, 2)

NAME = "error_feedback"

VARIANTS = (
    ("FedAvg", {"strategy": "FedAvg"}),
    ("SecCL, no error feedback", {"strategy": "SecCL", "error_feedback": False}),
    ("SecCL, error feedback", {"strategy": "SecCL", "error_feedback": True}),
)
"""Table rows: label and the :class:`Setting` fields of each variant."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of which n and which seeds to run."""
    parser.add_argument("--sizes", type=int, nargs="+", default=list(PARTICIPANTS))
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(SEEDS),
        help="seeds of the data split, model and loaders; one replicate each",
    )


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


def mean_run(runs: list[list[dict]]) -> list[dict]:
    """Return one run's rows whose test accuracy is the mean of ``runs`` per round."""
    return [
        {
            "round": rows[0]["round"],
            "test_accuracy": statistics.mean(r["test_accuracy"] for r in rows),
        }
        for rows in zip(*runs, strict=True)
    ]


def _cell(values: list[float]) -> str:
    """Mean and, over several seeds, the sample standard deviation."""
    if len(values) == 1:
        return ex.fmt(values[0])
    return f"{ex.fmt(statistics.mean(values))} ± {statistics.stdev(values):.4f}"


def report(
    results: dict[int, dict[Setting, list[dict]]], args: argparse.Namespace, base: dict
) -> None:
    """Write error_feedback.csv, error_feedback.png and error_feedback.md.

    ``results`` holds each seed's rows by setting.
    """
    note = ex.data_note(base)
    sizes, seeds = sizes_of(args), list(results)
    rows = [
        {"seed": seed, **row}
        for seed, by_setting in results.items()
        for s in settings(args)
        for row in by_setting[s]
    ]
    write_csv(rows, args.out / "error_feedback.csv")
    fig, axes = ex.figure(len(sizes))
    middle = max(1, args.rounds // 2)
    table, finals = [], {}
    for label, fields in VARIANTS:
        cells = []
        for ax, n in zip(axes, sizes, strict=True):
            setting = Setting(participants=n, rounds=args.rounds, **fields)
            runs = [results[seed][setting] for seed in seeds]
            ex.plot_accuracy(ax, mean_run(runs), label)
            finals[label, n] = [ex.final(run) for run in runs]
            middles = [ex.accuracy_at(run, middle) for run in runs]
            cells.append(f"{_cell(middles)} / {_cell(finals[label, n])}")
        table.append([label, *cells])
    paired = [
        "error feedback - none, per seed (round " + str(args.rounds) + ")",
        *(
            ", ".join(
                f"{b - a:+.4f}"
                for a, b in zip(finals[VARIANTS[1][0], n], finals[VARIANTS[2][0], n], strict=True)
            )
            for n in sizes
        ),
    ]
    for ax, n in zip(axes, sizes, strict=True):
        ex.accuracy_axes(ax, args.rounds)
        ax.set_title(f"n={n}, M={num_candidates(DEFAULT_CANDIDATE_FRACTION, n)}")
        ax.legend(fontsize=8)
    ex.save_figure(
        fig,
        args.out / "error_feedback.png",
        f"Error feedback: SecCL vs FedAvg (mean over seeds {', '.join(map(str, seeds))})",
        note,
    )
    header = ["", *(f"n={n} (M={num_candidates(DEFAULT_CANDIDATE_FRACTION, n)})" for n in sizes)]
    body = (
        f"Held-out test accuracy after round {middle} / round {args.rounds}, "
        f"{'mean ± standard deviation over seeds ' if len(seeds) > 1 else 'seed '}"
        f"{', '.join(map(str, seeds))} (each seed its own data split, initial model and "
        f"batch order, the same for every variant); all participants honest and "
        f"training every round; batch {base['batch-size']}, lr {base['lr']}, "
        f"{base['local-epochs']} local epochs. SecCL at its defaults: "
        f"λ = {DEFAULT_CANDIDATE_FRACTION} (M = ceil(λn) candidates merged per round), "
        f"share fraction {DEFAULT_SHARE_FRACTION} (global top-k).\n\n"
        + ex.markdown_table(header, [*table, paired])
    )
    ex.write_markdown(args.out / "error_feedback.md", "Error feedback: SecCL vs FedAvg", note, body)
    print(f"wrote {args.out / 'error_feedback.csv'}, error_feedback.png, error_feedback.md")


def main(argv: list[str] | None = None) -> dict[int, dict[Setting, list[dict]]]:
    """Run the comparison once per seed; return each seed's rows by setting."""
    options = ex.parser(__doc__.split("\n\n")[0])
    add_arguments(options)
    args = options.parse_args(argv)
    base = ex.prepare(args)
    started = time.monotonic()
    if args.report_only:
        csv = args.out / "error_feedback.csv"
        results = {seed: ex.load_results([csv], settings(args), seed=seed) for seed in args.seeds}
    else:
        results = {
            seed: ex.run_many(settings(args), {**base, "seed": seed}, args.jobs)
            for seed in args.seeds
        }
    report(results, args, base)
    print(f"{NAME}: done in {(time.monotonic() - started) / 60:.1f} min")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

"""Per-round tables, CSV files and plots of a SecCL run."""

import csv
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from .strategy import PHASES, SecCLResult


def round_rows(result: SecCLResult, attackers: Collection[str] = ()) -> list[dict]:
    """Return one flat row per round: test metrics, candidates, gas, seconds per phase.

    With ``attackers`` (addresses), each row also counts the attackers elected.
    """
    rows = []
    for record in result.rounds:
        test = dict(result.evaluate_metrics_serverapp.get(record.round, {}))
        row = {
            "round": record.round,
            "test_accuracy": test.get("accuracy", float("nan")),
            "test_macro_f1": test.get("macro-f1", float("nan")),
            "fed_macro_f1": record.evaluate_metrics.get("macro-f1", float("nan")),
            "candidates": " ".join(a[:8] for a in record.candidates),
            "gas": sum(record.gas.values()),
            "dropped": len(record.dropped),
        }
        if attackers:
            row["attackers_elected"] = len(set(record.candidates) & set(attackers))
        for phase in PHASES:
            row[f"s_{phase}"] = record.seconds.get(phase, 0.0)
        row["s_chain"] = record.chain_seconds
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """Return the rows as an aligned text table."""
    attacked = bool(rows) and "attackers_elected" in rows[0]
    header = ["round", "acc", "F1", "candidates"] + (["att"] if attacked else [])
    header += ["gas", "drop"] + [f"{p[:5]} s" for p in PHASES]
    lines = []
    for row in rows:
        lines.append(
            [
                str(row["round"]),
                f"{row['test_accuracy']:.3f}",
                f"{row['test_macro_f1']:.3f}",
                row["candidates"],
                *([str(row["attackers_elected"])] if attacked else []),
                f"{row['gas']:,}",
                str(row["dropped"]),
                *[f"{row[f's_{p}']:.2f}" for p in PHASES],
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*line) for line in lines])


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write the rows to ``path``; return it.

    The columns are every key of every row, in first-seen order. The file is
    complete or absent: it is written beside ``path`` and then renamed.
    """
    path = Path(path)
    fields = list(dict.fromkeys(key for row in rows for key in row))
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def plot_rounds(rows: list[dict], path: Path, title: str, data_note: str) -> None:
    """Plot test accuracy / macro F1 per round and the time per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r["round"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(rounds, [r["test_accuracy"] for r in rows], "o-", label="test accuracy")
    left.plot(rounds, [r["test_macro_f1"] for r in rows], "s--", label="test macro F1")
    left.set_xlabel("round")
    left.set_ylim(0, 1)
    left.set_xticks(rounds)
    left.grid(alpha=0.3)
    left.legend(loc="lower right")
    left.set_title("global model on the held-out test set")
    bottom = [0.0] * len(rows)
    for phase in PHASES:
        values = [r[f"s_{phase}"] for r in rows]
        right.bar(rounds, values, bottom=bottom, label=phase)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.set_xlabel("round")
    right.set_ylabel("seconds")
    right.set_xticks(rounds)
    right.set_title("wall time per phase")
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title)
    fig.text(0.5, 0.01, f"Data: {data_note}", ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)

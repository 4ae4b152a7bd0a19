"""SecCL against FedAvg as participants grow: time and peak memory per round (issue 16, item 2).

For each participant count ``n`` and committee size ``k`` (each update scored by
``k`` evaluators; ``full``: the paper's protocol, every author scores every other,
run and written as ``k = 0`` like the gas rows; ``n - 1`` or more is run as
``full``) this runs Flower's FedAvg and SecCL on the same clients (the MNIST
example app, the paper's CNN), rounds and data, each in a fresh worker process (so
each reports its own peak memory), FedAvg before and after the SecCL runs of an
``n`` (their mean is the baseline, so drift over the run hits both sides alike).
All clients of a run are simulated in one process, one after the
other (:class:`~seccl_flwr.inprocess.InProcessGrid`, torch on 1 thread), on the
anvil node; peak memory is the worker's peak RSS (anvil's own is not included).

Rows are appended to ``benchmarks/results/scale.csv`` (``source=time``; the gas
columns are another benchmark's) and the table is printed and written to
``--table`` (default ``benchmarks/results/scale_time.txt``, appended). Times are
wall seconds per round (SecCL: the sum of its phases; FedAvg: its run over its
rounds); on a machine shared with other jobs the table also gives CPU seconds per
round (the worker's, plus its anvil node's; SecCL's include its set-up: contract,
registration), which load moves less than wall time (not nothing: FedAvg took 12.2
CPU s per round at load 5, 9.1-9.5 at load 2-3), and the cross-evaluation scorer's
milliseconds per scored peer.

Usage::

    # n = 20 on the paper's workload (3,000 digits per client), k in {n-1, 10, 5}
    python benchmarks/scale.py --clients 20 --k full 10 5 --per-client 3000 --rounds 3
    # n = 50 and 100, the reproduction's equal split of 8,000 digits
    python benchmarks/scale.py --clients 50 100 --k full --per-client 0 --rounds 1
"""

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
HEADER = (
    "n",
    "k",
    "rule",
    "ratio",
    "seccl_s_per_round",
    "fedavg_s_per_round",
    "peak_rss_mb",
    "max_tx_gas",
    "gas_per_round",
    "source",
)
"""The columns of ``scale.csv``, shared with the gas benchmark (``source=gas``)."""


def worker(spec: dict) -> dict:
    """Run one strategy as ``spec`` says, in this process; return its timings and peak RSS."""
    import logging

    import torch

    sys.path.insert(0, str(HERE))
    import seccl_vs_fedavg as bench

    from seccl_flwr.chain.anvil import AnvilNode

    logging.getLogger("flwr").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    work = bench.Workload("mnist", spec["seed"], 0, spec["local_epochs"], spec["per_client"])
    n, rounds = spec["n"], spec["rounds"]
    bench.warm_up(n, work)
    out = {"rss_after_warm_up_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    cpu = time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if spec["strategy"] == "fedavg":
        result = bench.run_fedavg(n, rounds, work)
        out["s_per_round"] = result.wall / rounds
    else:
        with AnvilNode() as node:
            result = bench.run_seccl(
                n,
                rounds,
                work,
                node.url,
                committee_size=spec["committee_size"],
                app_config={"score-batch": spec["score_batch"]},
            )
        out["s_per_round"] = sum(result.phases.values())
        out["phases"] = result.phases
        out["gas_per_round"] = result.gas
        out["client"] = result.client
    done = resource.getrusage(resource.RUSAGE_CHILDREN)  # anvil, once it has exited
    node_cpu = done.ru_utime + done.ru_stime - children.ru_utime - children.ru_stime
    out["cpu_s_per_round"] = (time.process_time() - cpu + node_cpu) / rounds
    out["wall"] = result.wall
    out["val_accuracy"] = result.final_val_accuracy
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_worker(spec: dict) -> dict:
    """Run :func:`worker` in a fresh ``nice``d process; return what it reports."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def committee_of(k: str, n: int) -> tuple[int, int]:
    """Return ``(evaluators per update, committee_size run)`` of a ``--k`` value at ``n``.

    ``full`` (or ``k >= n - 1``) is the paper's full cross-evaluation: ``n - 1``
    evaluators per update, run as ``committee_size = 0``.
    """
    if k == "full" or int(k) >= n - 1:
        return n - 1, 0
    return int(k), int(k)


def append_rows(rows: list[dict], path: Path) -> None:
    """Append rows to ``path`` (header written if the file is new or empty)."""
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the sweep, print and record it; return the CSV rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[20])
    parser.add_argument("--k", nargs="+", default=["full"], help="committee sizes; full = n-1")
    parser.add_argument("--per-client", type=int, default=3000, help="0: equal split of 8,000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--score-batch",
        nargs="+",
        default=["off"],
        choices=["off", "loop", "vmap"],
        help="the MNIST app's cross-evaluation scorers to run (off: its evaluate handler "
        "per peer; loop/vmap: the opt-in batched scorer); rows of another than off say "
        "so in their source (time:score-batch=loop)",
    )
    parser.add_argument("--csv", default=str(RESULTS / "scale.csv"))
    parser.add_argument("--table", default=str(RESULTS / "scale_time.txt"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return []
    base = {
        "seed": args.seed,
        "local_epochs": args.local_epochs,
        "per_client": args.per_client,
        "rounds": args.rounds,
    }
    workload = (
        f"{args.per_client:,} digits per client (drawn from the 8,000-digit pool, overlapping)"
        if args.per_client
        else "the equal split of the 8,000-digit pool"
    )
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    record(
        args.table,
        f"# scale.py {' '.join(argv if argv is not None else sys.argv[1:])}",
        f"# started {started}; MNIST example CNN, {workload}, {args.local_epochs} local epochs,"
        f" {args.rounds} rounds, lambda 0.4, share 0.1, Borda, anvil",
        f"# machine: {os.cpu_count()} CPUs shared with other jobs; load average (1 min)"
        f" {os.getloadavg()[0]:.2f} at start; one process per run, clients one after the"
        " other, torch 1 thread; cpu = CPU seconds per round incl. anvil's (SecCL: and its"
        " set-up); ms/peer = wall ms of the scorer per scored peer",
        f"{'n':>4} {'k':>4} {'c.size':>5} {'scorer':>6} {'FedAvg s/rd':>9} (first/last)"
        f" {'SecCL s/rd':>9} {'ratio':>6} {'SecCL MB':>8} {'FedAvg MB':>8} {'F cpu/rd':>8}"
        f" {'S cpu/rd':>8} {'cpu ratio':>6} {'ms/peer':>7} | SecCL phases s/rd (wall)",
    )
    rows = []
    for n in args.clients:
        lines, new_rows = sweep(n, args.k, args.score_batch, base)
        lines.append(
            f"# n={n} done {time.strftime('%H:%M UTC', time.gmtime())}, load average"
            f" {os.getloadavg()[0]:.2f}"
        )
        record(args.table, *lines)
        if args.csv:
            append_rows(new_rows, Path(args.csv))
        rows += new_rows
    record(args.table, "")
    if args.csv:
        print(f"rows appended to {args.csv}")
    return rows


def record(path: str | None, *lines: str) -> None:
    """Print table lines and append them to ``path`` (if given) at once."""
    text = "\n".join(lines) + "\n"
    print(text, end="", flush=True)
    if path:
        with open(path, "a") as handle:
            handle.write(text)


def sweep(n: int, ks: list[str], scorers: list[str], base: dict) -> tuple[list[str], list[dict]]:
    """Run FedAvg, SecCL at each ``k`` and scorer, FedAvg again; return table lines and rows."""
    lines, rows = [], []
    print(f"[n={n}] FedAvg ...", flush=True)
    fedavg = [run_worker({**base, "strategy": "fedavg", "n": n})]
    seccl = {}
    for k, scorer in [(k, scorer) for k in ks for scorer in scorers]:
        shown, committee_size = committee_of(k, n)
        tag = f"k={shown} (committee_size={committee_size}, scorer {scorer})"
        print(f"[n={n}] SecCL {tag} ...", flush=True)
        spec = {"strategy": "seccl", "n": n, "committee_size": committee_size}
        try:
            out = run_worker({**base, **spec, "score_batch": scorer})
        except RuntimeError as exc:  # e.g. committees not there yet: keep the other rows
            reason = str(exc).strip().splitlines()[-1]
            print(f"[n={n}] SecCL {tag} failed: {reason}", flush=True)
            lines.append(f"{n:>4} {shown:>4} {committee_size:>5} {scorer:>6} FAILED: {reason}")
            continue
        seccl[shown, scorer] = (committee_size, out)
        print(f"[n={n}] SecCL {tag}: {out['s_per_round']:.2f} s/round", flush=True)
    print(f"[n={n}] FedAvg again ...", flush=True)
    fedavg.append(run_worker({**base, "strategy": "fedavg", "n": n}))
    f_round = sum(f["s_per_round"] for f in fedavg) / len(fedavg)
    f_cpu = sum(f["cpu_s_per_round"] for f in fedavg) / len(fedavg)
    for (shown, scorer), (committee_size, out) in seccl.items():
        ratio = out["s_per_round"] / f_round
        rows.append(
            {
                "n": n,
                "k": committee_size,  # 0: full cross-evaluation, as in the gas rows
                "rule": "borda",
                "ratio": f"{ratio:.3f}",
                "seccl_s_per_round": f"{out['s_per_round']:.3f}",
                "fedavg_s_per_round": f"{f_round:.3f}",
                "peak_rss_mb": f"{out['peak_rss_mb']:.0f}",
                "max_tx_gas": "",
                "gas_per_round": "",
                "source": "time" if scorer == "off" else f"time:score-batch={scorer}",
            }
        )
        phases = " ".join(f"{p} {s:.2f}" for p, s in out["phases"].items())
        scored = n * min(shown, n - 1)  # peers scored per round
        per_peer = 1e3 * out["client"]["ce.score"] / scored
        lines.append(
            f"{n:>4} {shown:>4} {committee_size:>5} {scorer:>6} {f_round:>9.2f} "
            f"({fedavg[0]['s_per_round']:.2f}/{fedavg[1]['s_per_round']:.2f}) "
            f"{out['s_per_round']:>9.2f} {ratio:>6.2f} {out['peak_rss_mb']:>8.0f} "
            f"{max(f['peak_rss_mb'] for f in fedavg):>8.0f} {f_cpu:>8.2f} "
            f"{out['cpu_s_per_round']:>8.2f} {out['cpu_s_per_round'] / f_cpu:>6.2f} "
            f"{per_peer:>7.2f} | {phases}"
        )
    return lines, rows


if __name__ == "__main__":
    main()

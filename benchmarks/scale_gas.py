"""Gas per round and the largest transaction of the CSC under evaluator committees.

Usage (from the repository root)::

    PYTHONPATH=$PWD python benchmarks/scale_gas.py              # anvil, every (n, k)
    PYTHONPATH=$PWD python benchmarks/scale_gas.py --chain embedded --n 20 50

For each ``n`` in {20, 50, 100, 256}, each committee size ``k`` in {5, 10, n - 1}
and 0 (full cross-evaluation, the SecCL paper's protocol, for comparison) and each
election rule, it opens a run (``M = ceil(0.2 n)``, every participant registered
in batches sized by ``seccl_flwr.chain.gas``) and plays one round in which every
participant anchors an update and casts its ballot: UPDATE anchors, ``sealUpdates``
(committee runs), ballot batches, the election and the global model's anchor (the
EVALUATION anchors of federated evaluation are not counted). A run the contract
refuses to open is reported with the contract's reason. On anvil the EIP-7825 cap
is enforced (``--enable-tx-gas-limit``): any transaction above 2^24 fails the run.

It then projects the chain cost of one round to n = 1,000 from the measured
per-anchor and per-ballot gas (the contract itself stops at 256 participants).

Writes ``benchmarks/results/scale.csv`` (rows of this script: ``source`` =
``scale_gas/<chain>``; the time benchmark's rows, if any, are kept) and
``benchmarks/results/scale_gas.txt`` (the printed table).
"""

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np
from web3 import EthereumTesterProvider, HTTPProvider, Web3

from benchmarks.scale import HEADER  # the columns of scale.csv, one list for both benchmarks
from seccl_flwr.chain import gas
from seccl_flwr.chain.anvil import AnvilNode
from seccl_flwr.protocol import borda
from seccl_flwr.protocol.eip712 import Kind
from seccl_flwr.protocol.params import (
    ELECTION_RULES,
    MAX_MEDIAN_PARTICIPANTS,
    MAX_MEDIAN_WORDS,
    MEDIAN_SCORE,
    TRUNCATED_BORDA,
    median_words,
)
from tests.gas_measure import RoundGas, measure_round

RESULTS = Path(__file__).parent / "results"
CSV_PATH = RESULTS / "scale.csv"
TXT_PATH = RESULTS / "scale_gas.txt"
CAP = gas.TX_GAS_CAP
TARGET_AT_100 = 10_000_000
PROJECT_N = 1_000


def refusal(n: int, k: int, rule: int) -> str | None:
    """Return why the contract refuses to open this run (its ``open()`` checks), or None."""
    if rule != MEDIAN_SCORE:
        return None
    if k == 0 and n > MAX_MEDIAN_PARTICIPANTS:
        return f"TooManyParticipantsForRule: median with k=0 needs n <= {MAX_MEDIAN_PARTICIPANTS}"
    if k and median_words(n, k) > MAX_MEDIAN_WORDS:
        return (
            f"TooManyScoresForMedian: electByMedian would read n*ceil(k/8) = "
            f"{median_words(n, k)} words > {MAX_MEDIAN_WORDS}"
        )
    return None


def play(w3: Web3, n: int, k: int, rule: int) -> RoundGas:
    """Open a run of ``n`` and play one round with library-sized batches."""
    m = math.ceil(0.2 * n)
    peers = n - 1 if k == 0 else min(k, n - 1)
    bounds: list[int] = []

    def committee_sizes(table: dict, seed: bytes) -> list[int]:
        """Batch sizes as ``CandidateSelection.submit_ballots`` cuts them; keeps the bounds."""
        points_to = [
            list(borda.ballot_points(row, m, seed)) if rule == TRUNCATED_BORDA else []
            for row in table.values()
        ]
        sizes = gas.committee_batch_sizes(points_to, peers, m, rule, n)
        have: set[str] = set()
        start = 0
        for i, size in enumerate(sizes):
            fresh = set().union(*points_to[start : start + size]) - have
            bounds.append(
                gas.committee_ballot_batch_gas(size, peers, m, rule, n, i == 0, len(fresh))
            )
            have |= fresh
            start += size
        return sizes

    if k:
        batch = committee_sizes
    else:
        batch = gas.ballot_batch_size(peers, gas.ballot_model_candidates(peers, m, rule))
    result = measure_round(
        w3,
        w3.eth.accounts[0],
        n,
        m,
        register_batch=gas.register_batch_size(),
        anchor_batch=gas.anchor_batch_size(Kind.UPDATE),
        ballot_batches=batch,
        election_rule=rule,
        committee_size=k,
    )
    result.bounds = bounds  # the committee batches' gas bounds, in order
    return result


def round_gas(r: RoundGas) -> int:
    """Gas of one round: UPDATE anchors, seal, ballots, election, global model."""
    return (
        sum(g for _, g in r.anchor)
        + r.seal
        + sum(g for *_, g in r.ballots)
        + r.elect
        + (r.global_model)
    )


def per_ballot(rows: list[dict]) -> tuple[float, float]:
    """Least-squares ``a + b k`` of the gas per ballot over the measured committee rounds."""
    ks = np.array([row["peers"] for row in rows], dtype=float)
    per = np.array([row["ballot_gas"] / row["n"] for row in rows], dtype=float)
    b, a = np.polyfit(ks, per, 1)
    return float(a), float(b)


def main(argv: list[str] | None = None) -> int:
    """Measure, print and write the table; return 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chain", choices=["anvil", "embedded"], default="anvil")
    parser.add_argument("--n", type=int, nargs="+", default=[20, 50, 100, 256])
    parser.add_argument("--k", type=int, nargs="*", help="committee sizes (default 5 10 n-1 0)")
    args = parser.parse_args(argv)

    node = None
    if args.chain == "anvil":
        node = AnvilNode(extra_args=["--enable-tx-gas-limit"]).start()
        w3 = Web3(HTTPProvider(node.url, request_kwargs={"timeout": 300}))
    else:
        w3 = Web3(EthereumTesterProvider())
    source = f"scale_gas/{args.chain}"
    rows, lines = [], []
    try:
        for n in args.n:
            for k in args.k if args.k else [5, 10, n - 1, 0]:
                if k > n - 1:
                    continue
                for rule in (TRUNCATED_BORDA, MEDIAN_SCORE):
                    name = ELECTION_RULES[rule]
                    why = refusal(n, k, rule)
                    if why:
                        lines.append(f"{n:>4} {k:>4} {name:<7} refused by open(): {why}")
                        print(lines[-1], flush=True)
                        continue
                    start = time.monotonic()
                    r = play(w3, n, k, rule)
                    peers = n - 1 if k == 0 else min(k, n - 1)
                    row = {
                        "n": n,
                        "k": k,
                        "rule": name,
                        "peers": peers,
                        "max_tx_gas": max(r.all_gas()),
                        "max_round_tx_gas": max(
                            [g for *_, g in r.ballots]
                            + [r.elect, r.seal, r.global_model]
                            + [g for _, g in r.anchor]
                        ),
                        "gas_per_round": round_gas(r),
                        "ballot_gas": sum(g for *_, g in r.ballots),
                        "ballot_batches": len(r.ballots),
                        "largest_ballot_batch": max(g for *_, g in r.ballots),
                        "anchor_gas": sum(g for _, g in r.anchor),
                        "seal": r.seal,
                        "elect": r.elect,
                        "seconds": time.monotonic() - start,
                    }
                    over = [
                        f"{used:,} > {bound:,}"
                        for (*_, used), bound in zip(r.ballots, r.bounds, strict=False)
                        if used > bound
                    ]
                    if over:
                        lines.append(f"     ballot batches above their gas bound: {over}")
                    rows.append(row)
                    lines.append(
                        f"{n:>4} {k:>4} {name:<7} round {row['gas_per_round']:>12,}  "
                        f"max tx {row['max_tx_gas']:>11,}  ballots {row['ballot_gas']:>11,} "
                        f"in {row['ballot_batches']:>2} tx "
                        f"(largest {row['largest_ballot_batch']:,})  "
                        f"anchors {row['anchor_gas']:,}  seal {row['seal']:,}  "
                        f"elect {row['elect']:,}  [{row['seconds']:.0f} s]"
                    )
                    print(lines[-1], flush=True)
    finally:
        if node is not None:
            node.stop()

    missed = []
    for row in rows:
        if row["k"] and row["n"] <= 100 and row["max_tx_gas"] > TARGET_AT_100:
            missed.append(f"n={row['n']} k={row['k']} {row['rule']}: {row['max_tx_gas']:,} > 10 M")
        if row["max_tx_gas"] >= CAP:
            missed.append(f"n={row['n']} k={row['k']} {row['rule']}: {row['max_tx_gas']:,} >= 2^24")

    projection = project(rows)
    header = (
        f"CSC gas per round on {args.chain}"
        + (" (--enable-tx-gas-limit: the 2^24 cap enforced)" if args.chain == "anvil" else "")
        + "; M = ceil(0.2 n), every participant votes; round = UPDATE anchors + seal + "
        "ballots + election + global model; max tx = largest transaction of the opening "
        "(registration batches) and the round. k = 0: full cross-evaluation (the paper's)."
    )
    text = "\n".join(
        [
            header,
            "   n    k rule",
            *lines,
            "",
            *projection,
            "",
            "targets: every tx <= 10 M gas at n <= 100 with committees (k >= 1; k = 0 rows, "
            "the paper's protocol, size their ballot batches to 80 % of 2^24 as before), "
            "< 2^24 at n = 256: " + ("met" if not missed else "MISSED: " + "; ".join(missed)),
        ]
    )
    print("\n" + "\n".join(projection))
    print(text.splitlines()[-1])
    write(rows, source, text)
    return 1 if missed else 0


def project(rows: list[dict]) -> list[str]:
    """Project one round's gas to n = 1,000 from the measured per-anchor and per-ballot gas."""
    committee_rows = [r for r in rows if r["k"] and r["rule"] == "borda"]
    if len(committee_rows) < 2:
        return ["(too few committee rounds measured to project)"]
    a, b = per_ballot(committee_rows)
    anchor_per = max(r["anchor_gas"] / r["n"] for r in rows)
    elect_per = max(r["elect"] / (r["n"] * math.log2(r["n"])) for r in committee_rows)
    out = [
        f"projection to n = {PROJECT_N:,} (the contract stops at 256 participants: a larger "
        "run needs wider position fields and bitmaps; this projects the marginal costs):",
        f"  per UPDATE anchor {anchor_per:,.0f} gas (largest measured per author); per ballot "
        f"{a:,.0f} + {b:,.0f} * k gas (least squares over the Borda committee rounds); "
        f"election {elect_per:,.0f} * n log2 n gas (largest measured)",
    ]
    for k in (5, 10, PROJECT_N - 1):
        ballots = PROJECT_N * (a + b * k)
        total = PROJECT_N * anchor_per + ballots + elect_per * PROJECT_N * math.log2(PROJECT_N)
        out.append(
            f"  n = {PROJECT_N}, k = {k:>3}: {total / 1e6:,.0f} M gas per round "
            f"(ballots {ballots / 1e6:,.0f} M, at least "
            f"{math.ceil(ballots / gas.COMMITTEE_BUDGET)} transactions of at most "
            f"{gas.COMMITTEE_BUDGET / 1e6:.0f} M)"
        )
    return out


def write(rows: list[dict], source: str, text: str) -> None:
    """Write this script's rows into scale.csv (other sources' rows kept) and the table."""
    RESULTS.mkdir(exist_ok=True)
    kept = []
    if CSV_PATH.exists():
        with CSV_PATH.open(newline="") as f:
            kept = [r for r in csv.DictReader(f) if r.get("source") != source]
    with CSV_PATH.open("w", newline="") as f:
        writer = csv.DictWriter(f, HEADER)
        writer.writeheader()
        writer.writerows(kept)
        for row in rows:
            writer.writerow(
                {
                    "n": row["n"],
                    "k": row["k"],
                    "rule": row["rule"],
                    "max_tx_gas": row["max_tx_gas"],
                    "gas_per_round": row["gas_per_round"],
                    "source": source,
                }
            )
    TXT_PATH.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())

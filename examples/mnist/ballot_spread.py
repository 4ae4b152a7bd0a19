"""Why stealthy colluders win under the median rule: the spread of one update's scores.

Runs one SecCL run of the collusion sweep in the off-chain fast mode (median rule,
stealthy colluders, ε = 0.4, seed 0 unless told otherwise; MNIST test-set split) and
reads its ballots. For rounds from the attack on it prints, per round:

* how far honest evaluators score a colluder's update below an honest one (the mean
  gap of their scores);
* how widely one update's honest scores spread (sd across evaluators, mean over
  updates), and what is left of that spread once every evaluator's own offset (the
  mean of its scores that round) is removed;
* how many colluders each election rule would seat on that round's ballots: the
  median rule, rank-median (rule 2), Copeland, and the honest evaluators' mean score
  (what an election without colluding votes would do).

Usage::

    python examples/mnist/ballot_spread.py [--epsilon 0.4] [--seed 0] [--data-dir DIR]
"""

import argparse
import statistics
import sys

import numpy as np
from collusion import LAMBDA, ROUNDS, START, Cell, N
from mnist_seccl import experiments as ex
from mnist_seccl.offchain import run_offchain

from seccl_flwr.attacks import attacker_addresses
from seccl_flwr.protocol.election import standings
from seccl_flwr.protocol.params import num_candidates


def spread(ballots: dict[str, dict[str, int]], honest: set[str]) -> tuple[float, float]:
    """Return (sd of an update's honest scores, the same once each evaluator's mean is
    removed), in F1 points, each the mean over updates."""
    evaluators = sorted(e for e in ballots if e in honest)
    authors = sorted({p for row in ballots.values() for p in row})
    scores = np.full((len(evaluators), len(authors)), np.nan)
    for i, e in enumerate(evaluators):
        for j, a in enumerate(authors):
            if a in ballots[e]:
                scores[i, j] = ballots[e][a] / 1e4
    raw = float(np.nanmean(np.nanstd(scores, axis=0)))
    centred = scores - np.nanmean(scores, axis=1, keepdims=True)
    return raw, float(np.nanmean(np.nanstd(centred, axis=0)))


def seats(
    ballots: dict[str, dict[str, int]], honest: set[str], colluders: set[str], m: int
) -> dict[str, int]:
    """Return the colluders each rule would seat on these ballots (ties: by address)."""
    updates = {a: b"" for row in ballots.values() for a in row} | dict.fromkeys(ballots, b"")
    out = {}
    for rule in ("median", "rank-median", "copeland"):
        result = standings(updates, ballots, m, rule)
        top = sorted(result, key=lambda a: (-result[a], a))[:m]
        out[rule] = sum(a in colluders for a in top)
    mean = {
        a: statistics.mean(ballots[e][a] for e in honest if a in ballots.get(e, {}))
        for a in updates
    }
    top = sorted(mean, key=lambda a: (-mean[a], a))[:m]
    out["honest mean"] = sum(a in colluders for a in top)
    return out


def main(argv: list[str]) -> None:
    """Run the run, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epsilon", type=float, default=0.4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default="")
    args = p.parse_args(argv)
    cell = Cell("median", "stealthy", args.epsilon, args.seed)
    config = ex.run_config_of(cell.setting(), cell.base(args.data_dir))
    config["seccl-key-seed"] = cell.seed
    colluders = set(attacker_addresses(config, N))
    seen: dict[int, dict[str, dict[str, int]]] = {}
    run_offchain(
        config, N, ROUNDS, LAMBDA, "median", "collude", on_ballots=lambda r, b: seen.update({r: b})
    )
    m = num_candidates(LAMBDA, N)
    print(f"{ex.data_note({**ex.BASE_CONFIG, 'data-dir': args.data_dir})}")
    print(f"stealthy colluders, ε = {args.epsilon}, seed {args.seed}, n = {N}, M = {m}")
    header = "round  gap  spread  w/o offset  median  rank-median  copeland  honest mean"
    print(header)
    totals: dict[str, int] = {}
    for rnd in range(START, ROUNDS + 1):
        ballots = seen[rnd]
        honest = set(ballots) - colluders
        gap = statistics.mean(
            ballots[e][a] / 1e4 for e in honest for a in ballots[e] if a not in colluders
        ) - statistics.mean(
            ballots[e][a] / 1e4 for e in honest for a in ballots[e] if a in colluders
        )
        raw, centred = spread(ballots, honest)
        won = seats(ballots, honest, colluders, m)
        for rule, count in won.items():
            totals[rule] = totals.get(rule, 0) + count
        print(
            f"{rnd:5d} {gap:5.1f} {raw:7.1f} {centred:11.1f} "
            + "  ".join(f"{won[r]:>{len(r)}}" for r in won)
        )
    print("seats in all: " + ", ".join(f"{r} {c}" for r, c in totals.items()))


if __name__ == "__main__":
    main(sys.argv[1:])

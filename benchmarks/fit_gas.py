"""Fit the constants of ``seccl_flwr.chain.gas`` from gas measured on eth-tester.

Usage (from the repository root)::

    PYTHONPATH=$PWD python benchmarks/fit_gas.py

Plays one opening and one round of the CSC for each ``n`` in ``N`` and each ``M`` in
``{1, ceil(0.4 n), n}`` on the embedded EVM (py-evm), with registration and anchor
batches of 1, 16, 64 and 175 and ballot batches of 1, 2, 4 and 8 ballots (in this
order or the reverse, so that first batches, which also write array lengths, come
in every size), then fits
each cost model by least squares of the relative error and scales it by the largest
under-estimate, so the fitted model bounds every measurement from above. Prints the
constants to paste into ``seccl_flwr/chain/gas.py``.
"""

import math
import sys
import time

import numpy as np
from web3 import EthereumTesterProvider, Web3

from seccl_flwr.chain import gas
from tests.gas_measure import measure_round

N = (8, 40, 100, 180, 256)
BLOCK_GAS = 29_000_000


def upper_fit(features: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Least squares of the relative error, then scaled so no measurement exceeds it."""
    weights = 1.0 / measured
    coef, *_ = np.linalg.lstsq(features * weights[:, None], np.ones_like(measured), rcond=None)
    coef[1:] = np.maximum(coef[1:], 0.0)  # no term may make a larger batch cheaper
    coef *= float(np.max(measured / (features @ coef)))
    return np.round(coef * 1.0001, 4)


def main() -> int:
    """Measure, fit and print the constants."""
    w3 = Web3(EthereumTesterProvider())
    owner = w3.eth.accounts[0]
    register, anchor, evaluation, ballots = [], [], [], []
    for n in N:
        for i, m in enumerate(sorted({1, math.ceil(0.4 * n), n})):
            # the first batch of a phase also writes the arrays' lengths: first batches
            # are small in one run, large in the next
            order = slice(None) if i % 2 == 0 else slice(None, None, -1)
            start = time.monotonic()
            r = measure_round(
                w3,
                owner,
                n,
                m,
                register_batch=[1, 16, 64, 175][order],
                anchor_batch=[1, 16, 64, 175][order],
                ballot_batches=[1, 2, 4, 8][order],
                voters=min(n, 15),
                gas=BLOCK_GAS,
            )
            register += r.register
            anchor += r.anchor
            evaluation += r.evaluation
            ballots += r.ballots
            print(
                f"n={n:3} M={m:3}: elect {r.elect:,}, open {r.open:,} "
                f"({time.monotonic() - start:.0f} s)",
                file=sys.stderr,
            )

    def linear(rows):
        x = np.array([gas.batch_features(b) for b, _ in rows])
        return upper_fit(x, np.array([g for _, g in rows], dtype=float))

    x = np.array([gas.ballot_features(b, k, m) for b, k, m, _ in ballots])
    ballot = upper_fit(x, np.array([g for *_, g in ballots], dtype=float))
    print(f"REGISTER = {tuple(float(c) for c in linear(register))}")
    print(f"ANCHOR_UPDATE = {tuple(float(c) for c in linear(anchor))}")
    print(f"ANCHOR_EVALUATION = {tuple(float(c) for c in linear(evaluation))}")
    print(f"BALLOTS = {tuple(float(c) for c in ballot)}")
    worst = max(g / float(np.dot(ballot, gas.ballot_features(b, k, m))) for b, k, m, g in ballots)
    for name, rows in [("register", register), ("anchor", anchor), ("evaluation", evaluation)]:
        c = linear(rows)
        ratios = [g / float(np.dot(c, gas.batch_features(b))) for b, g in rows]
        print(f"measured/model of {name}: {min(ratios):.3f} to {max(ratios):.3f}", file=sys.stderr)
    best = min(g / float(np.dot(ballot, gas.ballot_features(b, k, m))) for b, k, m, g in ballots)
    print(f"measured/model of the ballot batches: {best:.3f} to {worst:.3f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

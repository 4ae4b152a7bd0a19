"""Measure the gas of the CSC's batch transactions on a chain (eth-tester or anvil).

Used by ``benchmarks/fit_gas.py`` (which fits the constants of
:mod:`seccl_flwr.chain.gas`) and by the gas tests (which check the model against
fresh measurements). Every function returns what it measured, nothing is asserted.
"""

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak
from web3 import Web3

from seccl_flwr.protocol import committee as committees
from seccl_flwr.protocol.eip712 import Kind
from seccl_flwr.protocol.election import MEDIAN_RULES
from seccl_flwr.protocol.params import TRUNCATED_BORDA, RunParams
from tests.conftest_contract import (
    binding_of,
    create,
    digest,
    join_signatures,
    make_keys,
    send,
    signed_ballot,
)

RUN_ID = keccak(text="gas")


@dataclass
class RoundGas:
    """Gas used by each transaction of one run opening and one round.

    ``register``, ``anchor`` and ``evaluation`` hold ``(batch size, gas)``; ``ballots``
    holds ``(ballots in the batch, peers per ballot, M, gas)``; ``seal`` is the gas of
    ``sealUpdates`` (0 if the round was not sealed); the first ballot batch of a
    committee run includes the committee draw.
    """

    n: int
    m: int
    register: list[tuple[int, int]] = field(default_factory=list)
    open: int = 0
    anchor: list[tuple[int, int]] = field(default_factory=list)
    seal: int = 0
    ballots: list[tuple[int, int, int, int]] = field(default_factory=list)
    elect: int = 0
    global_model: int = 0
    evaluation: list[tuple[int, int]] = field(default_factory=list)
    contract: Any = None

    def all_gas(self) -> list[int]:
        """Return the gas of every transaction."""
        return [
            *(g for _, g in self.register),
            self.open,
            *(g for _, g in self.anchor),
            *([self.seal] if self.seal else []),
            *(g for *_, g in self.ballots),
            self.elect,
            self.global_model,
            *(g for _, g in self.evaluation),
        ]


def _chunks(items: Sequence[Any], sizes: Sequence[int] | int) -> list[Sequence[Any]]:
    """Split ``items`` into consecutive chunks of the given size(s); the last one repeats."""
    out, start, i = [], 0, 0
    while start < len(items):
        size = sizes if isinstance(sizes, int) else sizes[min(i, len(sizes) - 1)]
        out.append(items[start : start + size])
        start, i = start + size, i + 1
    return out


def measure_round(
    w3: Web3,
    owner: str,
    n: int,
    m: int,
    *,
    register_batch: int,
    anchor_batch: int,
    ballot_batches: Sequence[int] | int | Callable[[dict, bytes], Sequence[int]],
    voters: int | None = None,
    seed: int = 0,
    gas: int | None = None,
    election_rule: int = 0,
    committee_size: int = 0,
    seal: bool | None = None,
) -> RoundGas:
    """Open a run of ``n`` participants and play round 1 with every batch measured.

    Parameters
    ----------
    w3, owner
        The chain and the (funded) server account.
    n, m
        Participants and candidates ``M``.
    register_batch, anchor_batch
        Batch sizes of ``register`` and of the UPDATE/EVALUATION anchors.
    ballot_batches
        Ballots per ``submitBallots``: one size, or the sizes in order (the last repeats),
        or a function of the ballots (evaluator -> peer -> score, in submission order)
        and the round seed that returns the sizes.
    voters
        How many participants vote (all by default).
    seed
        Seed of the random scores (drawn from 0..2, so ballots tie often).
    gas
        The gas limit of every transaction; estimated by the node if ``None``.
    election_rule
        The run's election rule (0 truncated Borda, 1 median score).
    committee_size
        The run's committee size ``k`` (0: full cross-evaluation): each voter's
        ballot scores its assigned peers (:mod:`seccl_flwr.protocol.committee`).
    seal
        Whether to call ``sealUpdates`` before the ballots (default: in committee
        runs, where it is required).
    """
    rng = random.Random(seed)
    tx = {} if gas is None else {"gas": gas}
    accounts = make_keys(n, f"gas/{n}")
    addresses = [a.address for a in accounts]
    result = RoundGas(n, m)
    params = RunParams(m, 1, 100_000, False, election_rule, committee_size)
    csc = create(w3, owner, RUN_ID, params)
    result.contract = csc
    signatures = join_signatures(RUN_ID, w3.eth.chain_id, accounts)
    for chunk in _chunks(range(n), register_batch):
        sel = slice(chunk[0], chunk[-1] + 1)
        receipt = send(csc.functions.register(addresses[sel], signatures[sel]), owner, **tx)
        result.register.append((len(chunk), receipt.gasUsed))
    result.open = send(csc.functions.open(), owner, **tx).gasUsed
    for chunk in _chunks(addresses, anchor_batch):
        digests = [digest(f"update/{a}") for a in chunk]
        receipt = send(csc.functions.anchor(1, Kind.UPDATE, list(chunk), digests), owner, **tx)
        result.anchor.append((len(chunk), receipt.gasUsed))

    assigned = committees.assignments(addresses, None, 0)
    if committee_size if seal is None else seal:
        result.seal = send(csc.functions.sealUpdates(1), owner, **tx).gasUsed
        w3.provider.make_request("evm_mine", [])  # calls run in the latest block
        block_hash = w3.eth.get_block(csc.functions.sealBlockOf(1).call())["hash"]
        seed = committees.committee_seed(bytes(block_hash), csc.functions.roundSeed(1).call())
        assigned = committees.assignments(addresses, seed, committee_size)
    binding = binding_of(w3, csc)
    ballots, table = [], {}
    for voter in accounts[: voters or n]:
        peers = list(assigned[voter.address])
        rng.shuffle(peers)
        scores = [rng.randrange(3) for _ in peers]
        table[voter.address] = dict(zip(peers, scores, strict=True))
        ballots.append(signed_ballot(binding, 1, voter, peers, scores))
    if callable(ballot_batches):
        ballot_batches = ballot_batches(table, csc.functions.roundSeed(1).call())
    for chunk in _chunks(ballots, ballot_batches):
        receipt = send(csc.functions.submitBallots(1, list(chunk)), owner, **tx)
        result.ballots.append((len(chunk), len(chunk[0][1]), m, receipt.gasUsed))
    if election_rule != TRUNCATED_BORDA:
        medians = MEDIAN_RULES[election_rule](dict.fromkeys(addresses, b""), table)
        elect = csc.functions.electByMedian(1, [medians[a] for a in addresses])
    else:
        elect = csc.functions.elect(1)
    result.elect = send(elect, owner, **tx).gasUsed
    result.global_model = send(
        csc.functions.anchor(1, Kind.GLOBAL_MODEL, [owner], [digest("g1")]), owner, **tx
    ).gasUsed
    for chunk in _chunks(addresses, anchor_batch):
        digests = [digest(f"evaluation/{a}") for a in chunk]
        receipt = send(csc.functions.anchor(1, Kind.EVALUATION, list(chunk), digests), owner, **tx)
        result.evaluation.append((len(chunk), receipt.gasUsed))
    return result

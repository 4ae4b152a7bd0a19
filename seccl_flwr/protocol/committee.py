"""Evaluator committees: which peers each author scores in a round (no I/O).

A run fixes its committee size ``k`` on chain (``Params.committeeSize``). ``k = 0`` is
the paper's protocol: every author scores every other author. With ``k >= 1`` each
update is scored by ``k_eff = min(k, m - 1)`` evaluators, where ``m`` is the number
of the round's anchored updates, and each author scores ``k_eff`` peers.

The assignment (identical in ``contracts/CandidateSelection.sol``):

* The server *seals* the round's updates (``sealUpdates``) in block ``B``; no update
  can be anchored afterwards. The *committee seed* is
  ``keccak256(abi.encode(blockhash(B), roundSeed))``, where ``roundSeed`` is the XOR
  of the anchored update digests (:func:`seccl_flwr.protocol.borda.round_seed`).
* The *committee order* is a Fisher-Yates shuffle of the anchoring positions
  ``0..m-1``: for ``i = m-1`` down to ``1``, ``j = keccak256(abi.encode(seed, i)) mod
  (i + 1)`` and ``order[i]`` swaps with ``order[j]``. ``order[t]`` is the anchoring
  position of the author at *slot* ``t``.
* The author at slot ``t`` scores the authors at slots ``t+1, ..., t+k_eff`` (mod
  ``m``); the author at slot ``u`` is scored by those at ``u-1, ..., u-k_eff``. Every
  update has exactly ``k_eff`` evaluators, every evaluator exactly ``k_eff`` peers,
  and an update's committee is a uniformly random ``k_eff``-subset of the other
  authors.

Why the server cannot choose or grind it: the update set is fixed by the seal before
block ``B`` exists, and ``blockhash(B)`` is unknown to anyone but the producer of
block ``B`` until it is published. A server that does not produce the chain's blocks
can neither choose the seed nor retry it: the seal cannot be undone, and a round's
updates cannot be re-anchored. A server that *does* produce the blocks (a private
anvil it runs, a proof-of-authority chain it validates) could withhold block ``B``
and try again; the trust model therefore needs a chain the server does not produce
(README, "Trust model").
"""

from collections.abc import Mapping, Sequence

from eth_utils import keccak, to_checksum_address

from .borda import ElectionError

FULL_CROSS_EVALUATION = 0
"""Committee size 0: every author scores every other author (the SecCL paper)."""


class CommitteeError(ElectionError):
    """A committee input is malformed (a seed that is not 32 bytes, a negative size)."""


def _bytes32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise CommitteeError(f"{what} must be 32 bytes, got {value!r:.80}")
    return bytes(value)


def committee_seed(seal_block_hash: bytes, round_seed: bytes) -> bytes:
    """Return ``keccak256(abi.encode(blockhash(B), roundSeed))``, the assignment's seed.

    Parameters
    ----------
    seal_block_hash : bytes
        The hash of the block ``B`` whose transaction sealed the round's updates.
    round_seed : bytes
        The XOR of the round's anchored update digests (``roundSeed(round)``).

    Raises
    ------
    CommitteeError
        If either is not 32 bytes.
    """
    block_hash = _bytes32(seal_block_hash, "the seal block hash")
    return keccak(block_hash + _bytes32(round_seed, "the round seed"))


def effective_size(committee_size: int, num_authors: int) -> int:
    """Return ``k_eff``: the peers each author scores (``m - 1`` for size 0).

    Raises
    ------
    CommitteeError
        If ``committee_size`` is negative.
    """
    if committee_size < 0:
        raise CommitteeError(f"the committee size must be at least 0, got {committee_size}")
    full = max(num_authors - 1, 0)
    return full if committee_size == FULL_CROSS_EVALUATION else min(committee_size, full)


def committee_order(seed: bytes, num_authors: int) -> list[int]:
    """Return the committee order: ``order[slot]`` = anchoring position (Fisher-Yates).

    Raises
    ------
    CommitteeError
        If ``seed`` is not 32 bytes or ``num_authors`` is negative.
    """
    seed = _bytes32(seed, "the committee seed")
    if num_authors < 0:
        raise CommitteeError(f"the number of authors must be at least 0, got {num_authors}")
    order = list(range(num_authors))
    for i in range(num_authors - 1, 0, -1):
        j = int.from_bytes(keccak(seed + i.to_bytes(32, "big")), "big") % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def assignments(
    authors: Sequence[str], seed: bytes | None, committee_size: int
) -> dict[str, list[str]]:
    """Return every author's assigned peers, in slot order (checksummed addresses).

    Parameters
    ----------
    authors : Sequence[str]
        The round's update authors in anchoring order (``updateAuthors(round)``).
    seed : bytes | None
        The committee seed (:func:`committee_seed`); ignored (may be ``None``) for
        committee size 0, whose assignment is every other author.
    committee_size : int
        The run's committee size ``k`` (0: full cross-evaluation).

    Raises
    ------
    CommitteeError
        If the seed is missing or malformed for ``k >= 1``, or ``k`` is negative.
    """
    authors = [to_checksum_address(a) for a in authors]
    k = effective_size(committee_size, len(authors))
    if committee_size == FULL_CROSS_EVALUATION:
        return {a: [p for p in authors if p != a] for a in authors}
    if seed is None:
        raise CommitteeError(f"a committee of size {committee_size} needs the committee seed")
    order = [authors[position] for position in committee_order(seed, len(authors))]
    m = len(order)
    return {order[t]: [order[(t + j) % m] for j in range(1, k + 1)] for t in range(m)}


def evaluators_of(assigned: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Invert :func:`assignments`: every author -> the evaluators assigned to score it."""
    out: dict[str, list[str]] = {author: [] for author in assigned}
    for evaluator, peers in assigned.items():
        for peer in peers:
            out[peer].append(evaluator)
    return out

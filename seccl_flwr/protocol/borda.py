"""Pure-Python reference of the truncated Borda election run by the CSC contract.

This module is the oracle the contract is tested against: for the same anchored
updates and ballots it must elect the same candidates with the same totals, and
refuse the same inputs, every time.

Rules (identical in ``contracts/CandidateSelection.sol``):

* Participants are identified by their addresses. The round's *updates* are the
  anchored UPDATE digests, author -> digest.
* The round's *seed* is the XOR of its update digests; the *tie order* ranks a
  participant ``p`` before ``q`` if ``keccak256(abi.encode(seed, p))`` is lower. The
  authors' signatures fix the digests, so the server cannot choose this order.
* A ballot maps peer -> score (integer in ``[0, MAX_SCORE]``, macro F1 x 1e6). Its
  peers must be exactly the round's update authors other than the evaluator
  (complete ballots only); an evaluator never scores itself. In a committee run
  (:mod:`seccl_flwr.protocol.committee`) they must be exactly the evaluator's
  assigned peers, and only the round's authors cast ballots.
* Per ballot, peers are ranked by score, highest first, ties in the tie order. The
  ballot's top ``M`` peers get ``M, M-1, ..., 1`` points (a ballot with ``k < M``
  peers hands out ``M, ..., M-k+1``).
* In a committee run an author's standing is normalised for partial ballots:
  ``floor(points * 1_000_000 / received)``, where ``received`` counts the ballots
  that scored it (0 if none); in a full run it is the total.
* The election needs at least ``quorum`` ballots. It ranks the round's update
  authors by standing, highest first, ties in the tie order; the first
  ``min(M, number of authors)`` are the candidates.

The contract compares the first 216 bits of the tie hashes (then the anchoring
position); this module compares all 256. The two orders differ only if two of at
most 256 hashes share their first 216 bits, a keccak near-collision nobody can
produce.
"""

from collections.abc import Iterable, Mapping, Sequence

from eth_utils import keccak, to_checksum_address

from ..errors import SecCLError
from .eip712 import MAX_SCORE, address_bytes
from .params import PPM


class ElectionError(SecCLError, ValueError):
    """The election's inputs break a rule of the contract (the message names which)."""


class IncompleteBallotError(ElectionError):
    """A ballot does not score exactly the round's update authors other than its evaluator."""


class QuorumNotReachedError(ElectionError):
    """Fewer ballots than the run's quorum: the contract's ``elect`` refuses."""


def round_seed(update_digests: Iterable[bytes]) -> bytes:
    """Return the seed of a round's tie order: the XOR of its anchored update digests.

    Raises
    ------
    ElectionError
        If a digest is not 32 bytes.
    """
    seed = 0
    for digest in update_digests:
        if not isinstance(digest, bytes | bytearray) or len(digest) != 32:
            raise ElectionError(f"an update digest must be 32 bytes, got {digest!r:.80}")
        seed ^= int.from_bytes(digest, "big")
    return seed.to_bytes(32, "big")


def tie_key(seed: bytes, participant: str) -> bytes:
    """Return ``keccak256(abi.encode(seed, participant))``; lower ranks first on a tie."""
    return keccak(bytes(seed) + bytes(12) + address_bytes(participant))


def rank_ballot(scores: Mapping[str, int], seed: bytes) -> list[str]:
    """Return the peers of one ballot ordered best first (ties in the seed's tie order)."""
    return sorted(scores, key=lambda peer: (-scores[peer], tie_key(seed, peer)))


def ballot_points(scores: Mapping[str, int], num_candidates: int, seed: bytes) -> dict[str, int]:
    """Return the truncated Borda points one ballot gives to its top peers.

    Parameters
    ----------
    scores : Mapping[str, int]
        Peer address -> score of this ballot.
    num_candidates : int
        The number of candidates ``M`` (at least 1).
    seed : bytes
        The round's seed (:func:`round_seed`).

    Returns
    -------
    dict[str, int]
        Peer -> points, for the ballot's top ``min(M, len(scores))`` peers.

    Raises
    ------
    ElectionError
        If ``num_candidates`` is below 1.
    """
    if num_candidates < 1:
        raise ElectionError(f"num_candidates must be at least 1, got {num_candidates}")
    ranked = rank_ballot(scores, seed)[:num_candidates]
    return {peer: num_candidates - position for position, peer in enumerate(ranked)}


def check_ballot(
    authors: Iterable[str],
    evaluator: str,
    scores: Mapping[str, int],
    assigned: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Check one ballot against the round's update authors, as ``submitBallots`` does.

    Parameters
    ----------
    authors : Iterable[str]
        The round's update authors.
    evaluator : str
        The ballot's evaluator.
    scores : Mapping[str, int]
        Peer -> score.
    assigned : Mapping[str, Sequence[str]] | None
        In a committee run, every author's assigned peers
        (:func:`seccl_flwr.protocol.committee.assignments`): the ballot must score
        exactly the evaluator's, and only authors have one. ``None``: full
        cross-evaluation, every author other than the evaluator.

    Raises
    ------
    ElectionError
        If the ballot scores its evaluator or a non-author (a peer not assigned to it,
        in a committee run), its evaluator has no committee seat, or a score is
        outside ``[0, MAX_SCORE]``.
    IncompleteBallotError
        If it does not score every peer it must.
    """
    if evaluator in scores:
        raise ElectionError(f"ballot of {evaluator} scores itself")
    if assigned is None:
        expected, whom = set(authors) - {evaluator}, "the round's {} other authors"
    elif evaluator not in assigned:
        raise ElectionError(f"ballot of {evaluator}: not an author of the round, no committee seat")
    else:
        expected, whom = set(assigned[evaluator]), "its {} assigned peers"
    unknown = set(scores) - expected
    if unknown:
        what = "non-authors" if assigned is None else "peers not assigned to it"
        raise ElectionError(f"ballot of {evaluator} scores {what} {sorted(unknown)}")
    bad = {peer: s for peer, s in scores.items() if not 0 <= s <= MAX_SCORE}
    if bad:
        raise ElectionError(f"ballot of {evaluator} has scores outside [0, {MAX_SCORE}]: {bad}")
    missing = expected - set(scores)
    if missing:
        raise IncompleteBallotError(
            f"ballot of {evaluator} scores {len(scores)} peers, not "
            f"{whom.format(len(expected))}: missing {sorted(missing)}"
        )


def normalised(
    updates: Mapping[str, bytes],
    ballots: Mapping[str, Mapping[str, int]],
    assigned: Mapping[str, Sequence[str]] | None = None,
) -> tuple[dict[str, bytes], dict[str, dict[str, int]], dict[str, list[str]] | None]:
    """Checksum every address, so any spelling of one address is one participant."""
    return (
        {to_checksum_address(a): d for a, d in updates.items()},
        {
            to_checksum_address(ev): {to_checksum_address(p): s for p, s in row.items()}
            for ev, row in ballots.items()
        },
        None
        if assigned is None
        else {
            to_checksum_address(ev): [to_checksum_address(p) for p in peers]
            for ev, peers in assigned.items()
        },
    )


def borda_totals(
    updates: Mapping[str, bytes],
    ballots: Mapping[str, Mapping[str, int]],
    num_candidates: int,
    assigned: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, int]:
    """Return every update author's Borda standing over all ballots.

    Parameters
    ----------
    updates : Mapping[str, bytes]
        The round's anchored updates: author address -> 32-byte digest.
    ballots : Mapping[str, Mapping[str, int]]
        Evaluator address -> (peer address -> score).
    num_candidates : int
        The number of candidates ``M``.
    assigned : Mapping[str, Sequence[str]] | None
        ``None`` (full cross-evaluation): the standing is the total points. In a
        committee run, every author's assigned peers; the standing is then normalised
        for partial ballots: ``floor(points * 1_000_000 / received)``, the mean points
        per ballot that scored the author, in millionths (0 if none did).

    Returns
    -------
    dict[str, int]
        Author (checksummed) -> standing (0 for authors nobody ranked).

    Raises
    ------
    ElectionError
        If a ballot breaks a rule (:func:`check_ballot`) or ``num_candidates < 1``.
    """
    updates, ballots, assigned = normalised(updates, ballots, assigned)
    seed = round_seed(updates.values())
    totals = dict.fromkeys(updates, 0)
    received = dict.fromkeys(updates, 0)
    for evaluator, scores in ballots.items():
        check_ballot(updates, evaluator, scores, assigned)
        for peer in scores:
            received[peer] += 1
        for peer, points in ballot_points(scores, num_candidates, seed).items():
            totals[peer] += points
    if assigned is None:
        return totals
    return {a: totals[a] * PPM // received[a] if received[a] else 0 for a in totals}


def elect(
    updates: Mapping[str, bytes],
    ballots: Mapping[str, Mapping[str, int]],
    num_candidates: int,
    quorum: int,
    assigned: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[str], dict[str, int]]:
    """Run the truncated Borda election of one round.

    Parameters
    ----------
    updates : Mapping[str, bytes]
        The round's anchored updates: author address -> 32-byte digest.
    ballots : Mapping[str, Mapping[str, int]]
        Evaluator address -> (peer address -> score).
    num_candidates : int
        The number of candidates ``M``.
    quorum : int
        The least number of ballots the run accepts.
    assigned : Mapping[str, Sequence[str]] | None
        Every author's assigned peers in a committee run (:func:`borda_totals`).

    Returns
    -------
    tuple[list[str], dict[str, int]]
        The elected candidates, best first, and every author's standing: total
        points, normalised in a committee run (addresses checksummed).

    Raises
    ------
    QuorumNotReachedError
        If there are fewer than ``quorum`` ballots.
    ElectionError
        If there is no update, or a ballot breaks a rule.
    """
    if not updates:
        raise ElectionError("the round has no anchored update")
    totals = borda_totals(updates, ballots, num_candidates, assigned)  # ballots are checked first,
    if len(ballots) < quorum:  # as the contract checks them when they are submitted
        raise QuorumNotReachedError(f"{len(ballots)} ballots, below the quorum of {quorum}")
    return rank_standings(totals, round_seed(updates.values()), num_candidates), totals


def rank_standings(standings: Mapping[str, int], seed: bytes, num_candidates: int) -> list[str]:
    """Return the first ``num_candidates`` authors by standing, highest first.

    Ties go in the seed's tie order (:func:`tie_key`). Every election rule ends with
    this step; only how the standings are computed differs.
    """
    ranked = sorted(standings, key=lambda author: (-standings[author], tie_key(seed, author)))
    return ranked[:num_candidates]

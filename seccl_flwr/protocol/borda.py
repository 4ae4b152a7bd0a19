"""Pure-Python reference of the truncated Borda election run by the CSC contract.

This module is the oracle the contract is tested against: for the same ballots it
must elect the same candidates with the same totals, every time.

Rules (identical in ``contracts/CandidateSelection.sol``):

* Participants are identified by their registration index ``0..n-1``.
* A ballot maps peer index -> score (unsigned integer, macro F1 x 1e6). An evaluator
  never scores itself.
* Per ballot, peers are ranked by score, highest first; equal scores rank the lower
  participant index first. The ballot's top ``M`` peers get ``M, M-1, ..., 1``
  points (a ballot with ``k < M`` peers hands out ``M, ..., M-k+1``).
* The election ranks the round's update authors by total points, highest first;
  equal totals rank the lower participant index first. The first
  ``min(M, number of authors)`` are the candidates.
"""

from collections.abc import Mapping, Sequence


def rank_ballot(scores: Mapping[int, int]) -> list[int]:
    """Return the peers of one ballot ordered best first (ties: lower index first)."""
    return sorted(scores, key=lambda peer: (-scores[peer], peer))


def ballot_points(scores: Mapping[int, int], num_candidates: int) -> dict[int, int]:
    """Return the truncated Borda points one ballot gives to its top peers.

    Parameters
    ----------
    scores : Mapping[int, int]
        Peer index -> score of this ballot.
    num_candidates : int
        The number of candidates ``M`` (at least 1).

    Returns
    -------
    dict[int, int]
        Peer index -> points, for the ballot's top ``min(M, len(scores))`` peers.
    """
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be at least 1, got {num_candidates}")
    ranked = rank_ballot(scores)[:num_candidates]
    return {peer: num_candidates - position for position, peer in enumerate(ranked)}


def borda_totals(
    authors: Sequence[int],
    ballots: Mapping[int, Mapping[int, int]],
    num_candidates: int,
) -> dict[int, int]:
    """Return the total points of every author over all ballots.

    Parameters
    ----------
    authors : Sequence[int]
        Indices of the participants whose update was anchored in the round.
    ballots : Mapping[int, Mapping[int, int]]
        Evaluator index -> (peer index -> score).
    num_candidates : int
        The number of candidates ``M``.

    Returns
    -------
    dict[int, int]
        Author index -> total points (0 for authors nobody ranked).

    Raises
    ------
    ValueError
        If a ballot scores its own evaluator or a peer that is not an author.
    """
    author_set = set(authors)
    totals = dict.fromkeys(authors, 0)
    for evaluator, scores in ballots.items():
        if evaluator in scores:
            raise ValueError(f"ballot of participant {evaluator} scores itself")
        unknown = set(scores) - author_set
        if unknown:
            raise ValueError(
                f"ballot of participant {evaluator} scores non-authors {sorted(unknown)}"
            )
        for peer, points in ballot_points(scores, num_candidates).items():
            totals[peer] += points
    return totals


def elect(
    authors: Sequence[int],
    ballots: Mapping[int, Mapping[int, int]],
    num_candidates: int,
) -> tuple[list[int], dict[int, int]]:
    """Run the truncated Borda election of one round.

    Parameters
    ----------
    authors : Sequence[int]
        Indices of the participants whose update was anchored in the round.
    ballots : Mapping[int, Mapping[int, int]]
        Evaluator index -> (peer index -> score).
    num_candidates : int
        The number of candidates ``M``.

    Returns
    -------
    tuple[list[int], dict[int, int]]
        The elected candidates, best first, and every author's total points.
    """
    totals = borda_totals(authors, ballots, num_candidates)
    ranked = sorted(totals, key=lambda author: (-totals[author], author))
    return ranked[:num_candidates], totals

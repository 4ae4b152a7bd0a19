"""Run parameters of SecCL and the sizes derived from them (no I/O)."""

import math

from ..errors import ConfigurationError


def num_candidates(candidate_fraction: float, num_participants: int) -> int:
    """Return ``M = ceil(λ·n)``, the candidates elected per round: at least 1, at most ``n``.

    Raises
    ------
    ConfigurationError
        If ``candidate_fraction`` (λ) is not in ``(0, 1]``.
    """
    if not 0.0 < candidate_fraction <= 1.0:
        raise ConfigurationError(f"candidate_fraction must lie in (0, 1], got {candidate_fraction}")
    return max(1, min(num_participants, math.ceil(candidate_fraction * num_participants - 1e-9)))

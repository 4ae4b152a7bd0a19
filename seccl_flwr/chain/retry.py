"""Bounded retries with exponential backoff for calls to a chain endpoint.

A node that stops, restarts or answers slowly makes a call raise
:class:`~seccl_flwr.chain.errors.ChainUnreachableError`; :func:`retrying` tries
again after 0.5 s, 1 s, 2 s, ... (capped at 8 s), and gives up after a fixed number
of attempts (8 by default, so 31.5 s of back-off: :attr:`RetryPolicy.budget`) with
an error that says how long it waited. Only calls that are safe to
repeat go through it: views, and the sending of one already signed transaction
(same nonce, same hash, so a repeat can never have a second effect).
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from logging import WARNING
from typing import TypeVar

from flwr.common.logger import log

from ..errors import ConfigurationError
from .errors import ChainUnreachableError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a chain call that found the node down.

    Parameters
    ----------
    attempts : int (default: 8)
        Attempts in all (1 = no retry).
    first_delay : float (default: 0.5)
        Seconds before the second attempt; doubled before each further one.
    max_delay : float (default: 8.0)
        Cap of one delay.

    Notes
    -----
    The defaults sleep 0.5 + 1 + 2 + 4 + 8 + 8 + 8 = 31.5 s in all (:attr:`budget`)
    before giving up. The attempts themselves add their own time: a refused
    connection fails at once, a node that accepts but does not answer costs the
    transport's timeout (10 s by default) per attempt.

    Raises
    ------
    ConfigurationError
        If ``attempts`` is below 1 or a delay is negative.
    """

    attempts: int = 8
    first_delay: float = 0.5
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigurationError(f"attempts must be at least 1, got {self.attempts}")
        if self.first_delay < 0 or self.max_delay < 0:
            raise ConfigurationError(
                f"retry delays must be non-negative, got first_delay={self.first_delay}, "
                f"max_delay={self.max_delay}"
            )

    def delays(self) -> Iterator[float]:
        """Yield the sleep before each retry (``attempts - 1`` values)."""
        for i in range(self.attempts - 1):
            yield min(self.first_delay * 2**i, self.max_delay)

    @property
    def budget(self) -> float:
        """Total seconds slept between the attempts before giving up (31.5 by default).

        Errors and docs state this one number; the attempts' own time comes on top.
        """
        return sum(self.delays())


NO_RETRY = RetryPolicy(attempts=1)


def retrying(call: Callable[[], T], policy: RetryPolicy, what: str) -> T:
    """Return ``call()``, retried per ``policy`` while the node is unreachable.

    Raises
    ------
    ChainUnreachableError
        If every attempt found the node unreachable; names ``what`` and the time tried.
    """
    delays = policy.delays()
    while True:
        try:
            return call()
        except ChainUnreachableError as exc:
            delay = next(delays, None)
            if delay is None:
                raise ChainUnreachableError(
                    f"{what}: chain unreachable after {policy.attempts} attempts and "
                    f"{policy.budget:.1f}s of back-off: {exc}"
                ) from exc
            log(WARNING, "SecCL: %s: chain unreachable, retrying in %.1fs", what, delay)
            time.sleep(delay)

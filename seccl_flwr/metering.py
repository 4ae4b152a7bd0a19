"""A metering hook: where SecCL spends its time, for whoever wants to know.

Library code wraps its chain reads, its hash/sign/verify work and the calls of the
application's functions in ``with metered(CATEGORY):``. By default nothing is
measured (a no-op context). :func:`use_meter` installs a meter for the code run
inside its block, in the current thread or task only: the strategy counts its
signature checks into a round's chain time with it, and a benchmark counts the time
of the clients it calls in-process (``benchmarks/seccl_vs_fedavg.py``).
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar

CHAIN_READ = "chain-read"
"""Reading the chain: connecting, attaching to the contract, views and log queries."""
CRYPTO = "hash-sign-verify"
"""Hashing a message, signing it, or checking a signature."""
TRAIN = "train"
"""The application's training function."""
SCORE = "score"
"""The application's scoring function (cross-evaluation of one peer update)."""
EVALUATE = "evaluate"
"""The application's evaluation function."""

Meter = Callable[[str], AbstractContextManager]
"""``category -> context manager`` that measures the block it wraps."""

_METER: ContextVar[Meter | None] = ContextVar("seccl_meter", default=None)


def metered(category: str) -> AbstractContextManager:
    """Return the installed meter's context for ``category`` (a no-op without one)."""
    meter = _METER.get()
    return nullcontext() if meter is None else meter(category)


@contextmanager
def use_meter(meter: Meter | None) -> Iterator[None]:
    """Measure every :func:`metered` block run inside this one with ``meter``."""
    token = _METER.set(meter)
    try:
        yield
    finally:
        _METER.reset(token)

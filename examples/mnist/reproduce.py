"""Run Figure 4, Figure 5 and the baselines in one go (shared runs once).

Every distinct run of the three scripts goes through one pool of ``--jobs``
processes; then each script writes its CSV, PNG and markdown. The total time goes
to ``timing.md``.

Usage::

    python examples/mnist/reproduce.py --jobs 2     # the full reproduction
    python examples/mnist/reproduce.py --quick      # seconds: a smoke test
"""

import sys

import baselines
import fig4
import fig5
from mnist_seccl import experiments as ex

SCRIPTS = (fig4, fig5, baselines)


def main(argv: list[str] | None = None) -> dict:
    """Run every experiment; return the rows by setting."""
    return ex.main(SCRIPTS, __doc__, argv)


if __name__ == "__main__":
    main(sys.argv[1:])

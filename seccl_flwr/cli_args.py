"""The arguments of the ``seccl-flwr`` command line (:mod:`seccl_flwr.cli`).

Every value is checked as it is parsed: the argument types here (a number in its
range, a JSON-RPC URL, an address, a roster file, a directory) raise
:class:`argparse.ArgumentTypeError` with a message that names what is wrong and the
fix, and :class:`OneLineErrorParser` prints it as one line with exit code 2. One
builder per subcommand adds its options: :func:`add_simulate_command` and
:func:`add_audit_command`.
"""

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlparse

from .attacks import POISONS
from .chain.connection import EMBEDDED
from .errors import ConfigurationError
from .protocol.eip712 import bytes32_hex
from .protocol.params import election_rule_of, share_fraction_ppm

__all__ = [
    "OneLineErrorParser",
    "add_audit_command",
    "add_simulate_command",
    "one_line",
]

COUNT = "a whole number"


# ------------------------------------------------------------ argument types
class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: the option, what is wrong, the fix."""

    def error(self, message: str) -> NoReturn:  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def one_line(text: object) -> str:
    """Return ``text`` on one line, its runs of whitespace as one space."""
    return " ".join(str(text).split())


def number(
    convert: Callable[[str], float],
    low: float,
    high: float | None = None,
    *,
    open_low: bool = False,
    open_high: bool = False,
    fix: str,
) -> Callable[[str], float]:
    """Return an argparse ``type`` that parses a number and checks its range.

    Parameters
    ----------
    convert : Callable[[str], float]
        ``int`` or ``float``.
    low, high : float, float | None
        Bounds of the range (``high`` None: no upper bound).
    open_low, open_high : bool
        Whether the bound itself is excluded.
    fix : str
        What to give instead, appended to the error (e.g. "e.g. 0.4").
    """
    if high is None:
        rule = f"must be {'greater than' if open_low else 'at least'} {low}"
    else:
        rule = f"must lie in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    kind = "an integer" if convert is int else "a number"

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}; {fix}") from None
        below = value <= low if open_low else value < low
        above = high is not None and (value >= high if open_high else value > high)
        if not math.isfinite(value) or below or above:
            raise argparse.ArgumentTypeError(f"{rule}, got {text}; {fix}")
        return value

    parse.__name__ = convert.__name__
    return parse


def rpc_url(text: str) -> str:
    """Argparse ``type`` of a JSON-RPC URL: ``http(s)://host[:port]``."""
    parsed = urlparse(text)
    try:
        port_ok = parsed.port is None or 0 < parsed.port
    except ValueError:  # a port that is not a number or out of range
        port_ok = False
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not port_ok:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a JSON-RPC URL; give the chain node's http(s):// URL, "
            "e.g. http://127.0.0.1:8545"
        )
    return text


def simulate_chain(text: str) -> str:
    """Argparse ``type`` of ``simulate --chain``: ``embedded`` or a JSON-RPC URL."""
    if text == EMBEDDED:
        return text
    try:
        return rpc_url(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither 'embedded' nor a JSON-RPC URL; give 'embedded' (the "
            "default) or the chain node's http(s):// URL, e.g. http://127.0.0.1:8545"
        ) from None


def audit_chain(text: str) -> str:
    """Argparse ``type`` of ``audit --chain``: a JSON-RPC URL (never the embedded chain)."""
    if text == EMBEDDED:
        raise argparse.ArgumentTypeError(
            "an embedded chain ends with the process that ran it; give the JSON-RPC URL "
            "of the run's chain (runs on e.g. anvil can be audited)"
        )
    return rpc_url(text)


def contract_address(text: str) -> str:
    """Argparse ``type`` of a contract address (0x and 40 hex digits)."""
    from eth_utils import is_address

    if not is_address(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an address; give the run's contract address, 0x and 40 hex "
            "digits (simulate prints it)"
        )
    return text


def roster_digest(text: str) -> bytes:
    """Argparse ``type`` of ``audit --roster-digest``: 0x and 64 hex digits."""
    digest = bytes32_hex(text)
    if digest is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a roster digest; give the run's rosterDigest, 0x and 64 hex "
            "digits (the audit prints the one on chain)"
        )
    return digest


def roster_file(text: str) -> tuple[str, ...]:
    """Argparse ``type`` of ``audit --roster``: a file of addresses, one a line.

    Blank lines and ``#`` comments are skipped; an address twice, a line that is not
    an address or an empty roster is refused, naming the file and line.
    """
    from eth_utils import is_address, to_checksum_address

    try:
        lines = Path(text).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise argparse.ArgumentTypeError(
            f"cannot read {text!r} ({reason}); give a file with one participant address a line"
        ) from None
    roster: list[str] = []
    for number, line in enumerate(lines, start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if not is_address(entry):
            raise argparse.ArgumentTypeError(
                f"{text} line {number}: {entry!r} is not an address; give one participant "
                "address (0x and 40 hex digits) a line"
            )
        if to_checksum_address(entry) in roster:
            raise argparse.ArgumentTypeError(
                f"{text} line {number}: {entry} is listed twice; list each participant once"
            )
        roster.append(to_checksum_address(entry))
    if not roster:
        raise argparse.ArgumentTypeError(
            f"{text} lists no address; give one participant address a line"
        )
    return tuple(roster)


candidate_fraction = number(
    float, 0, 1, open_low=True, fix="λ is the fraction of participants elected, e.g. 0.4"
)
"""Argparse ``type`` of λ, the fraction of participants elected: in (0, 1]."""

share_fraction_in_range = number(
    float,
    0,
    1,
    open_low=True,
    fix="it is the fraction of its update's entries a client sends, e.g. 0.2",
)
"""Argparse ``type`` of a share fraction in (0, 1]."""


quorum = number(int, 1, fix="give the least number of ballots an election needs, e.g. 3")
"""Argparse ``type`` of a ballot quorum: a positive number of ballots."""


committee_size = number(
    int,
    0,
    255,
    fix="give the evaluators per update k, 0 (every author scores every other) to n - 1, e.g. 5",
)
"""Argparse ``type`` of an evaluator committee size k: 0 (full cross-evaluation) to 255."""


def election_rule(text: str) -> int:
    """Argparse ``type`` of an election rule: ``borda``, ``median``, ``rank-median`` (or 0-2)."""
    try:
        return election_rule_of(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def score_metric(text: str) -> str:
    """Argparse ``type`` of the metric clients score peers by (``--score-metric``)."""
    from .torch_task import check_score_metric  # torch: only for the commands that train

    try:
        check_score_metric(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def share_fraction(text: str) -> float:
    """Argparse ``type`` of a share fraction: in (0, 1] and at least 1 ppm."""
    value = share_fraction_in_range(text)
    try:
        share_fraction_ppm(value)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; the chain stores it in ppm") from None
    return value


def message_store(text: str) -> str:
    """Argparse ``type`` of an existing directory."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a directory; give the run's message store "
            "(simulate prints it: OUT/messages/<run label>)"
        )
    return text


# ------------------------------------------------------------------ simulate
def add_simulate_command(commands: argparse._SubParsersAction) -> None:
    """Add ``seccl-flwr simulate`` and its options to ``commands``."""
    simulate = commands.add_parser(
        "simulate",
        help="run a SecCL simulation and report per round",
        description="Run a SecCL simulation on scikit-learn's digits and report per "
        "round. Exit code 0 on success, 1 if the run or its --audit fails, 2 on a bad "
        "argument or a --chain that does not answer (checked before the run starts).",
    )
    _add_protocol_arguments(simulate)
    _add_execution_arguments(simulate)
    _add_attack_arguments(simulate)
    _add_output_arguments(simulate)


def _add_protocol_arguments(simulate: argparse.ArgumentParser) -> None:
    """Add the run's size and SecCL parameters: n, rounds, λ, share fraction, data."""
    simulate.add_argument(
        "--participants",
        type=number(int, 2, fix="SecCL needs 2 or more to cross-evaluate, e.g. 5"),
        default=5,
        help="number of participants n (at least 2; default 5)",
    )
    simulate.add_argument(
        "--rounds",
        type=number(int, 1, fix=f"give the number of rounds, {COUNT}, e.g. 8"),
        default=8,
        help="number of rounds (default 8)",
    )
    simulate.add_argument(
        "--candidate-fraction",
        type=candidate_fraction,
        default=0.4,
        help="λ, the fraction of participants elected each round, in (0, 1] (default 0.4)",
    )
    simulate.add_argument(
        "--share-fraction",
        type=share_fraction_in_range,
        default=0.2,
        help="fraction of its update's entries a client sends, in (0, 1] (default 0.2)",
    )
    simulate.add_argument(
        "--committee-size",
        type=committee_size,
        default=0,
        help="evaluator committees: each update scored by k peers, drawn per round from "
        "the seal block's hash (default 0: every author scores every other, the paper's)",
    )
    simulate.add_argument(
        "--election-rule",
        type=election_rule,
        default="borda",
        help="the rule that elects candidates from the ballots: borda (the paper's, "
        "default), median or rank-median (colluders below half cannot lift each other)",
    )
    simulate.add_argument(
        "--score-metric",
        type=score_metric,
        default=None,
        help="what clients score peers by on their validation split: macro-f1 (the "
        "paper's and the digits app's default), accuracy, or brier (also sees how sure an "
        "update is of the right label, which stealthy poison shows)",
    )
    simulate.add_argument("--dataset", choices=["digits"], default="digits")


def _add_execution_arguments(simulate: argparse.ArgumentParser) -> None:
    """Add where and how the run executes: chain, gas, seed, training, engine."""
    simulate.add_argument(
        "--chain",
        type=simulate_chain,
        default=EMBEDDED,
        help="'embedded' (default) or the JSON-RPC URL of a chain node, e.g. anvil's "
        "http://127.0.0.1:8545",
    )
    simulate.add_argument(
        "--gas-limit",
        type=number(int, 1, fix="give a gas amount, e.g. 20000000, or leave it out"),
        default=None,
        help="gas limit of every server transaction (default: estimated by the node); "
        "saves the estimate on a private chain",
    )
    simulate.add_argument(
        "--seed",
        type=number(int, 0, fix=f"give {COUNT} from 0 on"),
        default=0,
        help="seed of the data split, the model and the simulation keys (default 0)",
    )
    simulate.add_argument(
        "--lr",
        type=number(float, 0, open_low=True, fix="give the clients' learning rate, e.g. 0.1"),
        default=0.1,
        help="clients' learning rate (default 0.1)",
    )
    simulate.add_argument(
        "--local-epochs",
        type=number(int, 1, fix=f"give {COUNT}, e.g. 2"),
        default=2,
        help="epochs each client trains per round (default 2)",
    )
    simulate.add_argument(
        "--engine",
        choices=["ray", "inprocess"],
        default="ray",
        help="Flower's simulation engine (ray) or this process",
    )


def _add_attack_arguments(simulate: argparse.ArgumentParser) -> None:
    """Add the simulated attack: poison, attackers, first round, flipped share, collusion."""
    simulate.add_argument(
        "--attack",
        choices=["none", *(p for p in POISONS if p != "none")],
        default="none",
        help="poison the attackers send (label-flip, scale, random)",
    )
    simulate.add_argument(
        "--attackers",
        type=number(
            float,
            0,
            1,
            open_high=True,
            fix="ε is the fraction of participants that attack, e.g. 0.2",
        ),
        default=0.2,
        help="fraction ε of participants that attack, in [0, 1) (the first partitions; "
        "default 0.2)",
    )
    simulate.add_argument(
        "--attack-start",
        type=number(int, 1, fix="rounds count from 1"),
        default=1,
        help="first round of the attack (default 1)",
    )
    simulate.add_argument(
        "--flip-fraction",
        type=number(
            float,
            0,
            1,
            open_low=True,
            fix="the share of each batch's labels a label flipper flips, e.g. 0.4",
        ),
        default=1.0,
        help="share of each batch's labels the label-flip poison flips, in (0, 1]; below 1 "
        "a stealthier poison (default 1)",
    )
    simulate.add_argument(
        "--collude",
        action="store_true",
        help="attackers rank each other first and everyone else last",
    )


def _add_output_arguments(simulate: argparse.ArgumentParser) -> None:
    """Add the phase timeout and where the results and messages are written."""
    simulate.add_argument(
        "--timeout",
        type=number(float, 0, open_low=True, fix="give seconds, e.g. 600"),
        default=600.0,
        help="seconds per phase (default 600)",
    )
    simulate.add_argument("--out", default="seccl-runs/simulate", help="output directory")
    simulate.add_argument(
        "--store",
        default=None,
        help="where to publish the run's messages (default OUT/messages); each run gets "
        "its own subdirectory named by its run label",
    )
    simulate.add_argument("--no-plot", action="store_true")
    simulate.add_argument(
        "--audit",
        action="store_true",
        help="audit the run before it ends (as `seccl-flwr audit` does, pinning the "
        "simulation's roster and parameters) and print the verdict; exit code 1 if it "
        "fails. The embedded chain ends with the run, so this is the only way to audit "
        "an embedded-chain simulation",
    )


# --------------------------------------------------------------------- audit
def add_audit_command(commands: argparse._SubParsersAction) -> None:
    """Add ``seccl-flwr audit``, what it reads and the pins it checks, to ``commands``."""
    audit = commands.add_parser(
        "audit",
        help="re-verify a run from its chain and its published messages",
        description="Re-derive a SecCL run from the chain and the published messages: "
        "every digest against its anchor, every signature, every election (Python "
        "reference vs. contract), every global model (previous + merge of the elected "
        "updates), the quorum of every election, complete ballots, rounds left open, and "
        "the roster and parameters against the pins given. Prints the run's roster "
        "digest and parameters and a per-round verdict table; exit code 0 if everything "
        "matches (missing updates and ballots are notices), "
        "1 on a finding (each names round, node and message), 2 on a bad argument or "
        "if the chain or the store cannot be read. The embedded chain ends with the "
        "process that ran it, so only runs on a JSON-RPC chain (e.g. `simulate --chain "
        "URL` on anvil) can be audited afterwards.",
    )
    audit.add_argument(
        "--chain", type=audit_chain, required=True, help="JSON-RPC URL of the run's chain"
    )
    audit.add_argument(
        "--contract",
        type=contract_address,
        required=True,
        help="address of the run's contract (pin the one you trust, not the server's word)",
    )
    audit.add_argument(
        "--store",
        type=message_store,
        required=True,
        help="directory of the run's published messages",
    )
    audit.add_argument(
        "--shared-store",
        action="store_true",
        help="the store also holds other runs' messages: skip them instead of reporting them",
    )
    _add_audit_pins(audit)


def _add_audit_pins(audit: argparse.ArgumentParser) -> None:
    """Add the pins: the roster and the run parameters the auditor expects."""
    pins = audit.add_argument_group(
        "pins",
        "what you expect of the run; each one given is checked against the chain "
        "(roster-mismatch, parameter-mismatch), the others are printed as read",
    )
    roster = pins.add_mutually_exclusive_group()
    roster.add_argument(
        "--roster-digest",
        type=roster_digest,
        default=None,
        metavar="0x…",
        help="the run's rosterDigest (keccak of the participants in registration order)",
    )
    roster.add_argument(
        "--roster",
        type=roster_file,
        default=None,
        metavar="FILE",
        help="file with one participant address a line (any order; # comments)",
    )
    pins.add_argument(
        "--candidate-fraction",
        type=candidate_fraction,
        default=None,
        help="λ in (0, 1]: the run must elect M = ceil(λ·n) candidates a round",
    )
    pins.add_argument(
        "--share-fraction",
        type=share_fraction,
        default=None,
        help="the share fraction in (0, 1] the run must fix (compared in ppm)",
    )
    pins.add_argument(
        "--per-tensor",
        choices=["true", "false"],
        default=None,
        help="whether the share fraction must apply per tensor",
    )
    pins.add_argument(
        "--quorum",
        type=quorum,
        default=None,
        help="the least ballot quorum you accept; a round elected with fewer ballots fails",
    )
    pins.add_argument(
        "--election-rule",
        type=election_rule,
        default=None,
        help="the election rule the run must fix: borda (0), median (1) or rank-median (2)",
    )
    pins.add_argument(
        "--committee-size",
        type=committee_size,
        default=None,
        help="the evaluator committee size k the run must fix (0: full cross-evaluation); "
        "in a committee run every ballot must score its evaluator's assigned peers",
    )

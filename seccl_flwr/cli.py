"""The ``seccl-flwr`` command line.

``seccl-flwr simulate`` runs a SecCL simulation with Flower's simulation engine
(``flwr.simulation.run_simulation``: each ClientApp in a Ray actor) or in-process,
on the embedded chain (served on a free loopback port) or on a JSON-RPC URL, prints
one line per round and a table, and writes ``rounds.csv``, ``rounds.png`` and the
run's published messages (``messages/<run label>/``).

``seccl-flwr audit`` re-verifies a run from its chain and its published messages
(:mod:`seccl_flwr.audit`), checks the roster and parameters against the ones given
on the command line (``--roster-digest``/``--roster``, ``--candidate-fraction``,
``--share-fraction``, ``--per-tensor``, ``--quorum``), prints the run's roster digest
and parameters and a per-round verdict table and exits with 1 if anything does not
match (2 if the chain or the store cannot be read).

``seccl-flwr keys new --out FILE`` writes a new node key (mode 600) and prints its
address; ``seccl-flwr keys join --key FILE --run-label L --chain URL`` prints the
roster line (address and ``Join`` signature) a participant hands the operator.
``seccl-flwr open`` deploys a run's contract with the agreed roster and parameters
and prints what every SuperNode pins; ``seccl-flwr inspect`` prints a run's roster,
parameters, rounds, candidates and gas (:mod:`seccl_flwr.deploy`).

Errors are one line on stderr that names the input at fault and the fix, never a
traceback: arguments are checked as they are parsed (exit 2, as argparse does), a
JSON-RPC chain is probed before a simulation starts (exit 2), and any error of the
package (:class:`~seccl_flwr.errors.SecCLError`) found later ends ``simulate`` with
exit 1 and ``audit`` with exit 2.
"""

import argparse
import logging
import math
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlparse

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from .attacks import POISONS, attacker_addresses
from .chain.connection import EMBEDDED, connect
from .chain.errors import (
    ChainError,
    ChainUnreachableError,
    ContractCodeMismatchError,
    NoContractError,
)
from .chain.rpc_server import free_loopback_url
from .client_checks import pinned_run_config
from .errors import ConfigurationError, NotEnoughNodesError, SecCLError
from .identity import KEY_SEED
from .protocol.params import share_fraction_ppm
from .strategy import RoundRecord, SecCL, SecCLResult

PROG = "seccl-flwr"


# ------------------------------------------------------------------ arguments
class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: the option, what is wrong, the fix."""

    def error(self, message: str) -> NoReturn:  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _number(
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


_candidate_fraction = _number(
    float, 0, 1, open_low=True, fix="λ is the fraction of participants elected, e.g. 0.4"
)
"""Argparse ``type`` of ``--candidate-fraction`` (λ, in (0, 1])."""

_quorum = _number(int, 1, fix="give the least number of ballots an election needs, e.g. 3")
"""Argparse ``type`` of ``--quorum`` (a positive number of ballots)."""


def _rpc_url(text: str) -> str:
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


def _chain(text: str) -> str:
    """Argparse ``type`` of ``simulate --chain``: ``embedded`` or a JSON-RPC URL."""
    if text == EMBEDDED:
        return text
    try:
        return _rpc_url(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither 'embedded' nor a JSON-RPC URL; give 'embedded' (the "
            "default) or the chain node's http(s):// URL, e.g. http://127.0.0.1:8545"
        ) from None


def _audit_chain(text: str) -> str:
    """Argparse ``type`` of ``audit --chain``: a JSON-RPC URL (never the embedded chain)."""
    if text == EMBEDDED:
        raise argparse.ArgumentTypeError(
            "an embedded chain ends with the process that ran it; give the JSON-RPC URL "
            "of the run's chain (runs on e.g. anvil can be audited)"
        )
    return _rpc_url(text)


def _address(text: str) -> str:
    """Argparse ``type`` of a contract address (0x and 40 hex digits)."""
    from eth_utils import is_address

    if not is_address(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an address; give the run's contract address, 0x and 40 hex "
            "digits (simulate prints it)"
        )
    return text


def _roster_digest(text: str) -> bytes:
    """Argparse ``type`` of ``audit --roster-digest``: 0x and 64 hex digits."""
    try:
        digest = bytes.fromhex(text.removeprefix("0x")) if text.startswith("0x") else b""
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a roster digest; give the run's rosterDigest, 0x and 64 hex "
            "digits (the audit prints the one on chain)"
        )
    return digest


def _roster_file(text: str) -> tuple[str, ...]:
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


def _share_fraction(text: str) -> float:
    """Argparse ``type`` of a share fraction: in (0, 1] and at least 1 ppm."""
    value = _number(
        float,
        0,
        1,
        open_low=True,
        fix="it is the fraction of its update's entries a client sends, e.g. 0.2",
    )(text)
    try:
        share_fraction_ppm(value)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; the chain stores it in ppm") from None
    return value


def _directory(text: str) -> str:
    """Argparse ``type`` of an existing directory."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a directory; give the run's message store "
            "(simulate prints it: OUT/messages/<run label>)"
        )
    return text


def _make_directory(path: Path, option: str) -> None:
    """Create ``path`` now, so an unusable ``option`` fails before the run, not after."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"{option} {path}: cannot create the directory ({exc.strerror or exc}); "
            f"give a writable directory"
        ) from exc


def _connect(url: str):
    """Connect to the chain at ``url`` (``--chain``); if it is down, say so naming it."""
    try:
        return connect(url)
    except ChainUnreachableError as exc:
        raise ChainUnreachableError(
            f"--chain {url}: no chain node answers ({_root_cause(exc)})"
        ) from exc


def _root_cause(exc: BaseException) -> str:
    """Return the innermost cause of ``exc`` in a few words (e.g. "Connection refused")."""
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    return _one_line(getattr(exc, "strerror", None) or exc)


#: the fix appended to an error of the package, by type (the first that matches)
_FIXES: dict[type[SecCLError], str] = {
    ChainUnreachableError: "start the chain node (e.g. anvil) or fix --chain",
    ChainError: "check the chain node at --chain",
    NotEnoughNodesError: "see the log above; a longer --timeout helps slow nodes",
}


def _error_line(exc: SecCLError) -> str:
    """Return ``exc`` as one line: its type, its message (naming the input) and a fix."""
    name, text = type(exc).__name__, _one_line(exc)
    line = text if text.startswith(name) else f"{name}: {text}"
    fix = next((fix for kind, fix in _FIXES.items() if isinstance(exc, kind)), None)
    return line if fix is None else f"{line}; {fix}"


def _say_error(command: str, message: str) -> None:
    print(f"{PROG} {command}: error: {message}", file=sys.stderr)


def _guarded(command: str, run: Callable[[], int | None], exit_code: int) -> int:
    """Return ``run()`` (None as 0), or ``exit_code`` after one line on an error of the package."""
    try:
        return run() or 0
    except SecCLError as exc:
        _say_error(command, _error_line(exc))
        return exit_code


def _progress(num_rounds: int, started: float):
    def show(record: RoundRecord) -> None:
        acc = record.evaluate_metrics.get("accuracy", float("nan"))
        print(
            f"[{time.monotonic() - started:6.1f}s] round {record.round}/{num_rounds}: "
            f"{len(record.authors)} updates, {len(record.candidates)} candidates, "
            f"fed. accuracy {acc:.3f}, gas {sum(record.gas.values()):,}"
            + (f", dropped {len(record.dropped)}" if record.dropped else ""),
            flush=True,
        )

    return show


def check_simulate_inputs(args: argparse.Namespace) -> None:
    """Check what parsing cannot, before anything starts.

    A JSON-RPC ``--chain`` must answer (probed with
    :func:`~seccl_flwr.chain.connection.connect`) and the output directories must be
    creatable, so a wrong input fails in a second with its name, not inside the
    simulation engine or after the run.

    Raises
    ------
    ConfigurationError
        If ``--out`` or ``--store`` cannot be created.
    ChainUnreachableError
        If no chain node answers at ``--chain``.
    """
    if args.chain != EMBEDDED:
        _connect(args.chain)
    _make_directory(Path(args.out), "--out")
    if args.store:
        _make_directory(Path(args.store), "--store")


def simulate(args: argparse.Namespace) -> SecCLResult:
    """Run one simulation as ``args`` say; return its result."""
    from .apps import digits

    chain_url = free_loopback_url() if args.chain == EMBEDDED else args.chain
    run_config = {
        KEY_SEED: args.seed,
        "seccl-chain-url": chain_url,
        "seed": args.seed,
        "lr": args.lr,
        "local-epochs": args.local_epochs,
        **pinned_run_config(args.candidate_fraction, args.share_fraction),
        **_attack_config(args),
    }
    run_label = f"seccl-simulate-{args.seed}-{time.time_ns()}"
    args.store = str(Path(args.store or Path(args.out) / "messages") / run_label)
    strategy = SecCL(
        candidate_fraction=args.candidate_fraction,
        share_fraction=args.share_fraction,
        min_train_nodes=2,
        min_available_nodes=args.participants,
        chain=args.chain,
        chain_url=chain_url if args.chain == EMBEDDED else None,
        run_label=run_label,
        store=args.store,
        gas_limit=args.gas_limit,
    )
    started = time.monotonic()
    holder: list[SecCLResult] = []

    def main(grid: Grid, context: Context) -> None:
        holder.append(
            strategy.start(
                grid,
                ArrayRecord(digits.initial_model(args.seed).state_dict()),
                num_rounds=args.rounds,
                timeout=args.timeout,
                evaluate_fn=digits.server_evaluate_fn(args.seed),
                on_round=_progress(args.rounds, started),
            )
        )

    client_app = digits.make_client_app(run_config)
    if args.engine == "inprocess":
        from .inprocess import InProcessGrid

        main(InProcessGrid(client_app, args.participants, run_config), None)
    else:
        from flwr.simulation import run_simulation

        server_app = ServerApp()
        server_app.main()(main)
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=args.participants,
            backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
        )
    if not holder:
        raise SystemExit("the simulation ended without a result (see the log above)")
    return holder[0]


def _attack_config(args: argparse.Namespace) -> dict:
    """Return the run-config keys of the attack options (none without an attack)."""
    if args.attack == "none" and not args.collude:
        return {}
    return {
        "attack-poison": "" if args.attack == "none" else args.attack,
        "attack-fraction": args.attackers,
        "attack-start": args.attack_start,
        "attack-collude": args.collude,
    }


def _report(result: SecCLResult, args: argparse.Namespace) -> None:
    from .apps.digits import DATA_NOTE
    from .report import format_table, plot_rounds, round_rows, write_csv

    attackers = attacker_addresses({**_attack_config(args), KEY_SEED: args.seed}, args.participants)
    rows = round_rows(result, attackers)
    print()
    print(f"SecCL on chain {result.chain_id}, contract {result.contract}")
    print(f"Data: {DATA_NOTE}; accuracy/F1 on the held-out test set")
    print(format_table(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "rounds.csv")
    if not args.no_plot:
        title = (
            f"SecCL, {args.participants} participants, λ={args.candidate_fraction}, "
            f"share={args.share_fraction}"
        )
        plot_rounds(rows, out / "rounds.png", title, DATA_NOTE)
    print(f"wrote {out / 'rounds.csv'}" + ("" if args.no_plot else f" and {out / 'rounds.png'}"))
    print(f"published messages in {args.store}")
    if args.chain == EMBEDDED:
        print(
            "(the embedded chain is gone now, so this run cannot be audited; run with "
            "--chain http://127.0.0.1:8545 on anvil to audit it)"
        )
    else:
        print(
            f"audit: seccl-flwr audit --chain {shlex.quote(args.chain)} --contract "
            f"{result.contract} --store {shlex.quote(args.store)}"
        )


def audit(args: argparse.Namespace) -> int:
    """Audit a run as ``args`` say; print the verdicts; return the exit code.

    Returns 0 if everything matches, 1 on a finding (a contract that is not a SecCL
    contract is one), 2 if the chain cannot be read. An error of the store raises.
    """
    from .audit import AuditPins, audit_run, format_report
    from .chain.csc import CandidateSelection
    from .store import DirectoryStore

    pins = AuditPins(
        roster_digest=args.roster_digest,
        roster=args.roster,
        candidate_fraction=args.candidate_fraction,
        share_fraction=args.share_fraction,
        per_tensor=None if args.per_tensor is None else args.per_tensor == "true",
        quorum=args.quorum,
    )
    try:
        csc = CandidateSelection.attach(_connect(args.chain), args.contract)
        report = audit_run(
            csc, DirectoryStore(args.store), ignore_foreign=args.shared_store, pins=pins
        )
    except (NoContractError, ContractCodeMismatchError) as exc:  # only attach raises these
        print(f"audit FAILED: {args.contract} is not a SecCL contract: {exc}")
        return 1
    except ChainError as exc:
        _say_error("audit", f"cannot read the chain: {_error_line(exc)}")
        return 2
    print(format_report(report))
    return 0 if report.ok else 1


# ---------------------------------------------------------------- deployment
def _new_key_path(text: str) -> str:
    """Argparse ``type`` of ``keys new --out``: a path that does not exist yet."""
    if Path(text).exists():
        raise argparse.ArgumentTypeError(
            f"{text} exists; a key file is never overwritten: give a new path"
        )
    return text


def _key_file(text: str):
    """Argparse ``type`` of ``--key``: a readable key file; returns its account."""
    from .identity import read_key_file

    try:
        return read_key_file(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(
            f"{exc}; give a key file written by `seccl-flwr keys new`"
        ) from None


def _run_label(text: str) -> str:
    """Argparse ``type`` of ``--run-label``: a non-empty name."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "the run label is empty; give the name the participants agreed on, e.g. mnist-2026-11"
        )
    return text


def keys_new(args: argparse.Namespace) -> None:
    """Write a new key file (mode 600) and print its address."""
    from .deploy import new_key_file

    account = new_key_file(args.out)
    print(account.address)


def keys_join(args: argparse.Namespace) -> None:
    """Print the roster line (address and Join signature) of ``--key`` for the run."""
    from .deploy import join_entry

    print(join_entry(args.key, args.run_label, _connect(args.chain).eth.chain_id))


def open_run(args: argparse.Namespace) -> None:
    """Deploy and open a run with the agreed roster; print what every node pins."""
    from .chain.connection import ensure_funded
    from .deploy import node_config_line, open_deployment, read_join_file

    w3 = _connect(args.chain)
    roster = read_join_file(args.roster, args.run_label, w3.eth.chain_id)
    ensure_funded(w3, args.key)
    opening = open_deployment(
        w3,
        args.key,
        args.run_label,
        roster,
        args.candidate_fraction,
        args.share_fraction,
        args.per_tensor,
        args.quorum,
        args.gas_limit,
    )
    print(f"contract       {opening.contract}")
    print(f"roster digest  0x{opening.roster_digest.hex()}")
    print(f"opening block  {opening.opening_block}")
    print(
        f"parameters     n={len(opening.participants)} M={opening.params.num_candidates} "
        f"quorum={opening.params.quorum} share fraction={opening.params.share_fraction:g} "
        f"per-tensor={'true' if opening.params.per_tensor else 'false'}"
    )
    print("node config (each SuperNode, with its own key file):")
    line = node_config_line(
        args.chain, opening, args.candidate_fraction, args.share_fraction, args.per_tensor
    )
    print(f"  --node-config {shlex.quote(line)}")
    print(
        f"server run config: seccl-chain={shlex.quote(args.chain)} "
        f"seccl-contract={opening.contract} (and the key file of {args.key.address})"
    )


def inspect_run(args: argparse.Namespace) -> None:
    """Print a run's roster, parameters, rounds, candidates and gas per round."""
    from .chain.csc import CandidateSelection
    from .deploy import format_summary, run_summary

    csc = CandidateSelection.attach(_connect(args.chain), args.contract)
    print(format_summary(run_summary(csc)))


_DEPLOYMENT_COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "keys": lambda args: (keys_new if args.keys_command == "new" else keys_join)(args),
    "open": open_run,
    "inspect": inspect_run,
}


def _run_arguments(parser: argparse.ArgumentParser, key_help: str) -> None:
    """Add ``--key``, ``--run-label`` and ``--chain``, which name who joins which run where."""
    parser.add_argument("--key", type=_key_file, required=True, help=key_help)
    parser.add_argument("--run-label", type=_run_label, required=True, help="the agreed run label")
    parser.add_argument(
        "--chain", type=_rpc_url, required=True, help="JSON-RPC URL of the run's chain"
    )


def _add_deployment_commands(commands) -> None:
    """Add ``keys new``, ``keys join``, ``open`` and ``inspect`` to the parser."""
    keys = commands.add_parser("keys", help="make a node key, sign a run's Join")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_commands.add_parser(
        "new",
        help="write a new private key (mode 600) and print its address",
        description="Write a new private key to --out, readable by you only (mode "
        "600), and print its address. An existing file is never overwritten.",
    )
    new.add_argument("--out", type=_new_key_path, required=True, help="the key file to write")
    join = keys_commands.add_parser(
        "join",
        help="print the address and Join signature to hand the operator",
        description="Sign Join(keccak(run label), address) for the run's chain and print "
        "'<address> <signature>': one line of the roster file the operator opens the "
        "run with. The signature proves your key and only opens this run label on this "
        "chain.",
    )
    _run_arguments(join, "your key file")
    opener = commands.add_parser(
        "open",
        help="deploy a run's contract with the agreed roster and parameters",
        description="Deploy the SecCL contract on --chain with the agreed parameters, "
        "register the roster of --roster (the participants' `keys join` lines, checked "
        "before any transaction) and open the run. Prints the contract address, roster "
        "digest, opening block and the node config every SuperNode must use. The key "
        "owns the run: the ServerApp attaches with the same key.",
    )
    _run_arguments(opener, "the operator's key file (owns the run, pays gas)")
    opener.add_argument(
        "--roster",
        required=True,
        metavar="FILE",
        help="one '<address> <join signature>' line per participant (# comments)",
    )
    opener.add_argument(
        "--candidate-fraction",
        type=_candidate_fraction,
        default=0.2,
        help="λ in (0, 1]: M = ceil(λ·n) candidates a round (default 0.2)",
    )
    opener.add_argument(
        "--share-fraction",
        type=_share_fraction,
        default=0.1,
        help="fraction of its update's entries a client shares, in (0, 1] (default 0.1)",
    )
    opener.add_argument(
        "--per-tensor", action="store_true", help="apply the share fraction to each tensor"
    )
    opener.add_argument(
        "--quorum",
        type=_quorum,
        default=None,
        help="the least ballots an election needs (default a majority of the roster)",
    )
    opener.add_argument(
        "--gas-limit",
        type=_number(int, 1, fix="give a gas amount, e.g. 16777216, or leave it out"),
        default=None,
        help="gas limit of every transaction (default: estimated by the node)",
    )
    inspect = commands.add_parser(
        "inspect",
        help="print a run's roster, parameters, rounds, candidates and gas",
        description="Read a run from its contract alone: owner, roster (registration "
        "order), roster digest, parameters, opening block, rounds completed, and per "
        "round the ballots, the gas its transactions used and the elected candidates.",
    )
    inspect.add_argument(
        "--chain", type=_rpc_url, required=True, help="JSON-RPC URL of the run's chain"
    )
    inspect.add_argument(
        "--contract", type=_address, required=True, help="address of the run's contract"
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``seccl-flwr``.

    Every option is checked as it is parsed (range, URL, address, directory); a bad
    one ends the parse with one line naming it and the fix, and exit code 2.
    """
    parser = _Parser(prog=PROG, description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser(
        "simulate",
        help="run a SecCL simulation and report per round",
        description="Run a SecCL simulation on scikit-learn's digits and report per "
        "round. Exit code 0 on success, 1 if the run fails, 2 on a bad argument or "
        "a --chain that does not answer (checked before the run starts).",
    )
    count = "a whole number"
    sim.add_argument(
        "--participants",
        type=_number(int, 2, fix="SecCL needs 2 or more to cross-evaluate, e.g. 5"),
        default=5,
        help="number of participants n (at least 2; default 5)",
    )
    sim.add_argument(
        "--rounds",
        type=_number(int, 1, fix=f"give the number of rounds, {count}, e.g. 8"),
        default=8,
        help="number of rounds (default 8)",
    )
    sim.add_argument(
        "--candidate-fraction",
        type=_candidate_fraction,
        default=0.4,
        help="λ, the fraction of participants elected each round, in (0, 1] (default 0.4)",
    )
    sim.add_argument(
        "--share-fraction",
        type=_number(
            float,
            0,
            1,
            open_low=True,
            fix="it is the fraction of its update's entries a client sends, e.g. 0.2",
        ),
        default=0.2,
        help="fraction of its update's entries a client sends, in (0, 1] (default 0.2)",
    )
    sim.add_argument("--dataset", choices=["digits"], default="digits")
    sim.add_argument(
        "--chain",
        type=_chain,
        default=EMBEDDED,
        help="'embedded' (default) or the JSON-RPC URL of a chain node, e.g. anvil's "
        "http://127.0.0.1:8545",
    )
    sim.add_argument(
        "--gas-limit",
        type=_number(int, 1, fix="give a gas amount, e.g. 20000000, or leave it out"),
        default=None,
        help="gas limit of every server transaction (default: estimated by the node); "
        "saves the estimate on a private chain",
    )
    sim.add_argument(
        "--seed",
        type=_number(int, 0, fix=f"give {count} from 0 on"),
        default=0,
        help="seed of the data split, the model and the simulation keys (default 0)",
    )
    sim.add_argument(
        "--lr",
        type=_number(float, 0, open_low=True, fix="give the clients' learning rate, e.g. 0.1"),
        default=0.1,
        help="clients' learning rate (default 0.1)",
    )
    sim.add_argument(
        "--local-epochs",
        type=_number(int, 1, fix=f"give {count}, e.g. 2"),
        default=2,
        help="epochs each client trains per round (default 2)",
    )
    sim.add_argument(
        "--engine",
        choices=["ray", "inprocess"],
        default="ray",
        help="Flower's simulation engine (ray) or this process",
    )
    sim.add_argument(
        "--attack",
        choices=["none", *(p for p in POISONS if p != "none")],
        default="none",
        help="poison the attackers send (label-flip, scale, random)",
    )
    sim.add_argument(
        "--attackers",
        type=_number(
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
    sim.add_argument(
        "--attack-start",
        type=_number(int, 1, fix="rounds count from 1"),
        default=1,
        help="first round of the attack (default 1)",
    )
    sim.add_argument(
        "--collude",
        action="store_true",
        help="attackers rank each other first and everyone else last",
    )
    sim.add_argument(
        "--timeout",
        type=_number(float, 0, open_low=True, fix="give seconds, e.g. 600"),
        default=600.0,
        help="seconds per phase (default 600)",
    )
    sim.add_argument("--out", default="seccl-runs/simulate", help="output directory")
    sim.add_argument(
        "--store",
        default=None,
        help="where to publish the run's messages (default OUT/messages); each run gets "
        "its own subdirectory named by its run label",
    )
    sim.add_argument("--no-plot", action="store_true")
    aud = commands.add_parser(
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
    aud.add_argument(
        "--chain", type=_audit_chain, required=True, help="JSON-RPC URL of the run's chain"
    )
    aud.add_argument(
        "--contract",
        type=_address,
        required=True,
        help="address of the run's contract (pin the one you trust, not the server's word)",
    )
    aud.add_argument(
        "--store",
        type=_directory,
        required=True,
        help="directory of the run's published messages",
    )
    aud.add_argument(
        "--shared-store",
        action="store_true",
        help="the store also holds other runs' messages: skip them instead of reporting them",
    )
    pins = aud.add_argument_group(
        "pins",
        "what you expect of the run; each one given is checked against the chain "
        "(roster-mismatch, parameter-mismatch), the others are printed as read",
    )
    roster = pins.add_mutually_exclusive_group()
    roster.add_argument(
        "--roster-digest",
        type=_roster_digest,
        default=None,
        metavar="0x…",
        help="the run's rosterDigest (keccak of the participants in registration order)",
    )
    roster.add_argument(
        "--roster",
        type=_roster_file,
        default=None,
        metavar="FILE",
        help="file with one participant address a line (any order; # comments)",
    )
    pins.add_argument(
        "--candidate-fraction",
        type=_candidate_fraction,
        default=None,
        help="λ in (0, 1]: the run must elect M = ceil(λ·n) candidates a round",
    )
    pins.add_argument(
        "--share-fraction",
        type=_share_fraction,
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
        type=_quorum,
        default=None,
        help="the least ballot quorum you accept; a round elected with fewer ballots fails",
    )
    _add_deployment_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``seccl-flwr``; return the exit code.

    A bad argument gives exit code 2 (argparse's). An error of the package
    (:class:`~seccl_flwr.errors.SecCLError`) is printed as one line on stderr: exit
    code 2 before a simulation starts and in ``audit``, 1 once a simulation runs.
    Any other exception is a bug and keeps its traceback.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad argument already printed
        return exc.code if isinstance(exc.code, int) else 2
    logging.getLogger("flwr").setLevel(logging.WARNING)
    if args.command == "audit":
        return _guarded("audit", lambda: audit(args), exit_code=2)
    if args.command in _DEPLOYMENT_COMMANDS:
        name = f"keys {args.keys_command}" if args.command == "keys" else args.command
        return _guarded(name, lambda: _DEPLOYMENT_COMMANDS[args.command](args), exit_code=2)
    code = _guarded("simulate", lambda: check_simulate_inputs(args), exit_code=2)
    if code:
        return code
    return _guarded("simulate", lambda: _report(simulate(args), args), exit_code=1)


if __name__ == "__main__":
    sys.exit(main())

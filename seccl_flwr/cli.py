"""The ``seccl-flwr`` command line.

``seccl-flwr simulate`` runs a SecCL simulation with Flower's simulation engine
(:func:`seccl_flwr.simulation.run_simulation`: each ClientApp in a Ray actor) or in-process,
on the embedded chain (served on a free loopback port) or on a JSON-RPC URL, prints
one line per round and a table, and writes ``rounds.csv``, ``rounds.png`` and the
run's published messages (``messages/<run label>/``); with ``--audit`` it audits the
run before the embedded chain ends and prints the verdict (exit 1 if it fails).

``seccl-flwr audit`` re-verifies a run from its chain and its published messages
(:mod:`seccl_flwr.audit`), checks the roster and parameters against the ones given
on the command line (``--roster-digest``/``--roster``, ``--candidate-fraction``,
``--share-fraction``, ``--per-tensor``, ``--quorum``, ``--election-rule``,
``--committee-size``), prints
the run's roster digest and parameters and a per-round verdict table and exits with 1
if anything does not match (2 if the chain or the store cannot be read).

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
import os
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from .attacks import attacker_addresses
from .chain.connection import EMBEDDED, connect
from .chain.errors import (
    ChainError,
    ChainUnreachableError,
    ContractCodeMismatchError,
    NoContractError,
)
from .chain.rpc_server import free_loopback_url
from .cli_args import (
    OneLineErrorParser,
    add_audit_command,
    add_simulate_command,
    candidate_fraction,
    committee_size,
    contract_address,
    election_rule,
    number,
    one_line,
    quorum,
    rpc_url,
    share_fraction,
)
from .client_checks import pinned_run_config
from .errors import ConfigurationError, NotEnoughNodesError, SecCLError
from .identity import KEY_SEED
from .mod import SCORE_METRIC
from .protocol.params import ELECTION_RULES
from .strategy import RoundRecord, SecCL, SecCLResult

if TYPE_CHECKING:
    from .audit import AuditReport

PROG = "seccl-flwr"


# ------------------------------------------------------------------- errors
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
    return one_line(getattr(exc, "strerror", None) or exc)


#: the fix appended to an error of the package, by type (the first that matches)
_FIXES: dict[type[SecCLError], str] = {
    ChainUnreachableError: "start the chain node (e.g. anvil) or fix --chain",
    ChainError: "check the chain node at --chain",
    NotEnoughNodesError: "see the log above; a longer --timeout helps slow nodes",
}


def _error_line(exc: SecCLError) -> str:
    """Return ``exc`` as one line: its type, its message (naming the input) and a fix."""
    name, text = type(exc).__name__, one_line(exc)
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
    if args.committee_size > args.participants - 1:
        raise ConfigurationError(
            f"argument --committee-size: at most --participants - 1 = "
            f"{args.participants - 1} peers can score an update, got {args.committee_size}"
        )
    if args.chain != EMBEDDED:
        _connect(args.chain)
    _make_directory(Path(args.out), "--out")
    if args.store:
        _make_directory(Path(args.store), "--store")


def simulate(args: argparse.Namespace) -> tuple[SecCLResult, "AuditReport | None"]:
    """Run one simulation as ``args`` say; return its result and, with ``--audit``, its audit.

    The audit reads the run's chain (the embedded one in this process, before it
    ends) and published messages, and pins the simulation's own roster and
    parameters: see :func:`audit_simulation`.
    """
    from .apps import digits

    chain_url = free_loopback_url() if args.chain == EMBEDDED else args.chain
    run_config = {
        KEY_SEED: args.seed,
        "seccl-chain-url": chain_url,
        "seed": args.seed,
        "lr": args.lr,
        "local-epochs": args.local_epochs,
        **pinned_run_config(
            args.candidate_fraction,
            args.share_fraction,
            election_rule=args.election_rule,
            committee_size=args.committee_size,
        ),
        **({SCORE_METRIC: args.score_metric} if args.score_metric else {}),
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
        election_rule=args.election_rule,
        committee_size=args.committee_size,
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

    if args.engine == "inprocess":
        from .inprocess import InProcessGrid

        main(InProcessGrid(digits.app, args.participants, run_config), None)
    else:
        from .simulation import run_simulation

        _quiet_ray_engine()
        server_app = ServerApp()
        server_app.main()(main)
        run_simulation(
            server_app=server_app,
            client_app=digits.app,
            num_supernodes=args.participants,
            run_config=run_config,
            backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
        )
    if not holder:
        raise SystemExit("the simulation ended without a result (see the log above)")
    return holder[0], audit_simulation(strategy, args) if args.audit else None


def audit_simulation(strategy: SecCL, args: argparse.Namespace) -> "AuditReport":
    """Audit the run a simulation just made, as ``seccl-flwr audit`` would.

    The contract is attached afresh (its code checked) on the run's chain: the
    embedded one still lives in this process. The pins are the simulation's own:
    its roster (the simulation keys of ``--seed``), λ, share fraction, election
    rule, committee size and a majority quorum.
    """
    from .audit import AuditPins, audit_run
    from .chain.csc import CandidateSelection
    from .identity import simulation_addresses
    from .protocol.params import default_quorum
    from .store import DirectoryStore

    pins = AuditPins(
        roster=tuple(simulation_addresses(args.seed, range(args.participants))),
        candidate_fraction=args.candidate_fraction,
        share_fraction=args.share_fraction,
        per_tensor=False,
        quorum=default_quorum(args.participants),
        election_rule=args.election_rule,
        committee_size=args.committee_size,
    )
    csc = CandidateSelection.attach(strategy.csc.w3, strategy.csc.address)
    return audit_run(csc, DirectoryStore(args.store), pins=pins)


RAY_NOISE = (
    r"unclosed file <_io\.\w+ name='/dev/null'",
    r"subprocess \d+ is still running",
)
"""ResourceWarnings of Ray's node launcher (``ray._private.node``): it opens
``/dev/null`` for its processes' output and leaves the handles, and the ``Popen`` of
processes still running at shutdown, to the garbage collector. In ``simulate`` every
subprocess is Ray's."""

RUN_SIMULATION_DEPRECATED = "DEPRECATED FEATURE: The `run_simulation` function is deprecated"
"""Flower's log warning on ``run_simulation``, which ``simulate --engine ray`` uses."""


def _quiet_ray_engine() -> None:
    """Keep the Ray engine's known noise out of ``simulate``'s output, and only that.

    Ray's future default for actors without GPUs (leave ``CUDA_VISIBLE_DEVICES``
    alone) is chosen, which is what its ``FutureWarning`` asks for; the
    ResourceWarnings of :data:`RAY_NOISE` and Flower's deprecation notice of
    ``run_simulation`` (this command's deliberate choice) are filtered by message.
    Every other warning, ours included, still shows.
    """
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    for message in RAY_NOISE:
        warnings.filterwarnings("ignore", message=message, category=ResourceWarning)
    logging.getLogger("flwr").addFilter(_not_run_simulation_deprecation)  # once per process


def _not_run_simulation_deprecation(record: logging.LogRecord) -> bool:
    """Whether a log record is anything but Flower's ``run_simulation`` deprecation notice."""
    return not record.getMessage().startswith(RUN_SIMULATION_DEPRECATED)


def _attack_config(args: argparse.Namespace) -> dict:
    """Return the run-config keys of the attack options (none without an attack)."""
    if args.attack == "none" and not args.collude:
        return {}
    return {
        "attack-poison": "" if args.attack == "none" else args.attack,
        "attack-fraction": args.attackers,
        "attack-start": args.attack_start,
        "attack-flip-fraction": args.flip_fraction,
        "attack-collude": args.collude,
    }


def _simulate_and_report(args: argparse.Namespace) -> int:
    """Run the simulation, report it and its audit; return the exit code (1: audit failed)."""
    result, audit_report = simulate(args)
    _report(result, args)
    if audit_report is None:
        return 0
    from .audit import format_report

    print()
    print(format_report(audit_report))
    return 0 if audit_report.ok else 1


def _report(result: SecCLResult, args: argparse.Namespace) -> None:
    from .apps.digits import DATA_NOTE
    from .apps.digits import SCORE_METRIC as APP_SCORE_METRIC
    from .report import format_table, plot_rounds, round_rows, write_csv

    attackers = attacker_addresses({**_attack_config(args), KEY_SEED: args.seed}, args.participants)
    rows = round_rows(result, attackers)
    print()
    print(f"SecCL on chain {result.chain_id}, contract {result.contract}")
    print(
        f"Election rule: {ELECTION_RULES[args.election_rule]}; peers scored by "
        f"{args.score_metric or APP_SCORE_METRIC} on each client's validation split"
    )
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
    if args.chain != EMBEDDED:
        print(f"audit: {result.audit_hint()}")
    elif not args.audit:
        print(
            "(the embedded chain is gone now, so this run cannot be audited; run with "
            "--audit to audit it before it ends, or with --chain http://127.0.0.1:8545 "
            "on anvil to audit it any time)"
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
        election_rule=args.election_rule,
        committee_size=args.committee_size,
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
        args.election_rule,
        args.committee_size,
    )
    print(f"contract       {opening.contract}")
    print(f"roster digest  0x{opening.roster_digest.hex()}")
    print(f"opening block  {opening.opening_block}")
    print(
        f"parameters     n={len(opening.participants)} M={opening.params.num_candidates} "
        f"quorum={opening.params.quorum} share fraction={opening.params.share_fraction:g} "
        f"per-tensor={'true' if opening.params.per_tensor else 'false'} "
        f"election rule={ELECTION_RULES[opening.params.election_rule]} "
        f"committee size={opening.params.committee_size}"
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
        "--chain", type=rpc_url, required=True, help="JSON-RPC URL of the run's chain"
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
        type=candidate_fraction,
        default=0.2,
        help="λ in (0, 1]: M = ceil(λ·n) candidates a round (default 0.2)",
    )
    opener.add_argument(
        "--share-fraction",
        type=share_fraction,
        default=0.1,
        help="fraction of its update's entries a client shares, in (0, 1] (default 0.1)",
    )
    opener.add_argument(
        "--per-tensor", action="store_true", help="apply the share fraction to each tensor"
    )
    opener.add_argument(
        "--quorum",
        type=quorum,
        default=None,
        help="the least ballots an election needs (default a majority of the roster)",
    )
    opener.add_argument(
        "--election-rule",
        type=election_rule,
        default=0,
        help="borda (0, the paper's truncated Borda; default), median (1: each "
        "author's median received score; colluders below half of the evaluators "
        "cannot lift each other) or rank-median (2: the median of the ranks each "
        "ballot gives the author; also holds far better against stealthy colluders; "
        "costlier ballots); the median rules take at most 104 participants",
    )
    opener.add_argument(
        "--committee-size",
        type=committee_size,
        default=0,
        help="evaluator committees: each update scored by k <= n - 1 peers, drawn per "
        "round from the hash of the block sealing the round's updates (default 0: every "
        "author scores every other, the paper's protocol)",
    )
    opener.add_argument(
        "--gas-limit",
        type=number(int, 1, fix="give a gas amount, e.g. 16777216, or leave it out"),
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
        "--chain", type=rpc_url, required=True, help="JSON-RPC URL of the run's chain"
    )
    inspect.add_argument(
        "--contract", type=contract_address, required=True, help="address of the run's contract"
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``seccl-flwr``.

    Every option is checked as it is parsed (range, URL, address, directory; see
    :mod:`seccl_flwr.cli_args`); a bad one ends the parse with one line naming it and
    the fix, and exit code 2.
    """
    parser = OneLineErrorParser(prog=PROG, description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_simulate_command(commands)
    add_audit_command(commands)
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
    return _guarded("simulate", lambda: _simulate_and_report(args), exit_code=1)


if __name__ == "__main__":
    sys.exit(main())

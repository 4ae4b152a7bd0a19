"""The ``seccl-flwr`` command line.

``seccl-flwr simulate`` runs a SecCL simulation with Flower's simulation engine
(``flwr.simulation.run_simulation``: each ClientApp in a Ray actor) or in-process,
on the embedded chain (served on a free loopback port) or on a JSON-RPC URL, prints
one line per round and a table, and writes ``rounds.csv``, ``rounds.png`` and the
run's published messages (``messages/<run label>/``).

``seccl-flwr audit`` re-verifies a run from its chain and its published messages
(:mod:`seccl_flwr.audit`), prints a per-round verdict table and exits with 1 if
anything does not match (2 if the chain or the store cannot be read).
"""

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from .attacks import POISONS, attacker_addresses
from .chain.connection import EMBEDDED
from .chain.errors import ChainError, ContractCodeMismatchError, NoContractError
from .chain.rpc_server import free_loopback_url
from .identity import KEY_SEED
from .strategy import RoundRecord, SecCL, SecCLResult


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


def simulate(args: argparse.Namespace) -> SecCLResult:
    """Run one simulation as ``args`` say; return its result."""
    from .apps import digits

    if args.participants < 2:
        raise SystemExit("--participants must be at least 2")
    if not 0.0 <= args.attackers < 1.0:
        raise SystemExit(f"--attackers must lie in [0, 1), got {args.attackers}")
    if args.attack_start < 1:
        raise SystemExit(f"--attack-start must be at least 1, got {args.attack_start}")
    if args.gas_limit is not None and args.gas_limit <= 0:
        raise SystemExit(f"--gas-limit must be positive, got {args.gas_limit}")
    chain_url = free_loopback_url() if args.chain == EMBEDDED else args.chain
    run_config = {
        KEY_SEED: args.seed,
        "seccl-chain-url": chain_url,
        "seed": args.seed,
        "lr": args.lr,
        "local-epochs": args.local_epochs,
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
    """Audit a run as ``args`` say; print the verdicts; return the exit code."""
    from eth_utils import is_address

    from .audit import audit_run, format_report
    from .chain.connection import connect
    from .chain.csc import CandidateSelection
    from .store import DirectoryStore

    if args.chain == EMBEDDED:
        print(
            "seccl-flwr audit: --chain must be the JSON-RPC URL of the run's chain (an "
            "embedded chain ends with the process that ran it)",
            file=sys.stderr,
        )
        return 2
    if not is_address(args.contract):
        print(f"seccl-flwr audit: --contract {args.contract!r} is not an address", file=sys.stderr)
        return 2
    if not Path(args.store).is_dir():
        print(f"seccl-flwr audit: message store {args.store} is not a directory", file=sys.stderr)
        return 2
    try:
        csc = CandidateSelection.attach(connect(args.chain), args.contract)
    except (NoContractError, ContractCodeMismatchError) as exc:
        print(f"audit FAILED: {args.contract} is not a SecCL contract: {exc}")
        return 1
    except (ChainError, ValueError) as exc:
        print(f"seccl-flwr audit: cannot read the chain: {exc}", file=sys.stderr)
        return 2
    try:
        report = audit_run(csc, DirectoryStore(args.store), ignore_foreign=args.shared_store)
    except ChainError as exc:
        print(f"seccl-flwr audit: cannot read the chain: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``seccl-flwr``."""
    parser = argparse.ArgumentParser(prog="seccl-flwr", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("simulate", help="run a SecCL simulation and report per round")
    sim.add_argument("--participants", type=int, default=5)
    sim.add_argument("--rounds", type=int, default=8)
    sim.add_argument("--candidate-fraction", type=float, default=0.4, help="λ")
    sim.add_argument("--share-fraction", type=float, default=0.2)
    sim.add_argument("--dataset", choices=["digits"], default="digits")
    sim.add_argument("--chain", default=EMBEDDED, help="'embedded' or a JSON-RPC URL")
    sim.add_argument(
        "--gas-limit",
        type=int,
        default=None,
        help="gas limit of every server transaction (default: estimated by the node); "
        "saves the estimate on a private chain",
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--lr", type=float, default=0.1)
    sim.add_argument("--local-epochs", type=int, default=2)
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
        type=float,
        default=0.2,
        help="fraction ε of participants that attack (the first partitions; default 0.2)",
    )
    sim.add_argument("--attack-start", type=int, default=1, help="first round of the attack")
    sim.add_argument(
        "--collude",
        action="store_true",
        help="attackers rank each other first and everyone else last",
    )
    sim.add_argument("--timeout", type=float, default=600.0, help="seconds per phase")
    sim.add_argument("--out", default="seccl-runs/simulate")
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
        "updates). Prints a per-round verdict table; exit code 0 if everything matches, "
        "1 on a finding (each names round, node and message), 2 if the chain or the "
        "store cannot be read. The embedded chain ends with the process that ran it, so "
        "only runs on a JSON-RPC chain (e.g. `simulate --chain URL` on anvil) can be "
        "audited afterwards.",
    )
    aud.add_argument("--chain", required=True, help="JSON-RPC URL of the run's chain")
    aud.add_argument(
        "--contract",
        required=True,
        help="address of the run's contract (pin the one you trust, not the server's word)",
    )
    aud.add_argument("--store", required=True, help="directory of the run's published messages")
    aud.add_argument(
        "--shared-store",
        action="store_true",
        help="the store also holds other runs' messages: skip them instead of reporting them",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``seccl-flwr``."""
    args = build_parser().parse_args(argv)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    if args.command == "simulate":
        _report(simulate(args), args)
    elif args.command == "audit":
        return audit(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

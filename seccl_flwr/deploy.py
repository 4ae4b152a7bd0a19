"""Opening a SecCL run for Flower's deployment engine, before any server starts.

In deployment the participants agree on the run before it starts: each makes a key
(:func:`new_key_file`) and signs ``Join(run id, address)`` for the run's label on the
run's chain (:func:`join_entry`); the operator collects one ``address signature``
line per participant (:func:`read_join_file`), deploys the contract with the agreed
parameters, registers the roster and opens the run (:func:`open_deployment`), and
hands every SuperNode the node config that pins it (:func:`node_config_line`).
The ServerApp then attaches to the opened run (``SecCL(contract=...)``).

:func:`run_summary` reads back what a run is: roster, parameters, opening block,
rounds completed, candidates and gas per round.
"""

import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, keccak, to_checksum_address

from .chain.csc import CandidateSelection, open_run
from .errors import ConfigurationError, SignatureError
from .identity import (
    CANDIDATE_FRACTION,
    CHAIN_URL,
    COMMITTEE_SIZE,
    CONTRACT,
    ELECTION_RULE,
    KEY_FILE,
    PER_TENSOR,
    QUORUM,
    ROSTER_DIGEST,
    SHARE_FRACTION,
)
from .protocol.eip712 import sign_join, verify_join
from .protocol.params import ELECTION_RULES, RunParams, run_params


def run_id_of_label(run_label: str) -> bytes:
    """Return the run id of a label: its keccak-256 (what every Join signature names)."""
    return keccak(text=run_label)


def new_key_file(path: str | os.PathLike) -> LocalAccount:
    """Write a fresh private key (hex) to ``path``, readable by its owner only (mode 600).

    Raises
    ------
    ConfigurationError
        If ``path`` exists (a key is never overwritten) or cannot be created.
    """
    account = Account.create()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigurationError(
            f"{path} exists; a key file is never overwritten: give a new path"
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"cannot create {path} ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "w") as out:
        out.write("0x" + account.key.hex().removeprefix("0x") + "\n")
    return account


def join_entry(account: LocalAccount, run_label: str, chain_id: int) -> str:
    """Return a participant's roster line: ``<address> 0x<Join signature>``.

    The signature is ``Join(keccak(run_label), address)`` under the domain
    ("SecCL", "1", ``chain_id``): it proves the key and can open the run on that
    chain only, and it can be made before the contract exists.
    """
    signature = sign_join(account.key, run_id_of_label(run_label), chain_id)
    return f"{account.address} 0x{signature.hex()}"


def read_join_file(path: str | os.PathLike, run_label: str, chain_id: int) -> dict[str, bytes]:
    """Return the roster of a join file: address -> Join signature, in file order.

    One ``<address> <signature>`` line per participant (what ``seccl-flwr keys
    join`` prints); blank lines and ``#`` comments are skipped. Every signature is
    checked here, so a bad line stops the opening before any transaction.

    Raises
    ------
    ConfigurationError
        Naming the file and line: unreadable file, a malformed line, an address
        listed twice, a signature that does not prove its address for this run label
        and chain, or no participant at all.
    """
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigurationError(f"cannot read {path} ({reason})") from None
    run_id = run_id_of_label(run_label)
    roster: dict[str, bytes] = {}
    for number, line in enumerate(lines, start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{path} line {number}"
        try:
            address, signature = words[0], bytes.fromhex(words[1].removeprefix("0x"))
        except (IndexError, ValueError):
            signature = None
        if len(words) != 2 or signature is None or not is_address(address):
            raise ConfigurationError(
                f"{where}: expected '<address> <join signature>' (as `seccl-flwr keys join` "
                f"prints), got {line.strip()!r:.120}"
            )
        address = to_checksum_address(address)
        if address in roster:
            raise ConfigurationError(f"{where}: {address} is listed twice; list each once")
        try:
            verify_join(run_id, chain_id, address, signature)
        except SignatureError as exc:
            raise ConfigurationError(
                f"{where}: the signature does not prove {address} joins run {run_label!r} on "
                f"chain {chain_id} ({exc}); ask the participant for `seccl-flwr keys join` "
                f"with this run label and chain"
            ) from None
        roster[address] = signature
    if not roster:
        raise ConfigurationError(f"{path} lists no participant; give one line per participant")
    return roster


@dataclass(frozen=True)
class Opening:
    """What the operator tells every participant after opening a run."""

    contract: str
    roster_digest: bytes
    opening_block: int
    params: RunParams
    participants: tuple[str, ...]


def open_deployment(  # noqa: PLR0913 - the run's agreed settings
    w3,
    operator: LocalAccount,
    run_label: str,
    roster: Mapping[str, bytes],
    candidate_fraction: float,
    share_fraction: float,
    per_tensor: bool = False,
    quorum: int | None = None,
    gas_limit: int | None = None,
    election_rule: int = 0,
    committee_size: int = 0,
) -> Opening:
    """Deploy the run's contract, register ``roster`` and open it; return what to pin.

    The operator's account owns the run: the ServerApp must use the same key to
    attach (``SecCL(contract=..., server_key=...)``).

    Raises
    ------
    ConfigurationError
        If the parameters do not fit the roster (checked before any transaction).
    ContractRevertError
        If the contract refuses the opening.
    """
    params = run_params(
        len(roster),
        candidate_fraction,
        share_fraction,
        per_tensor,
        quorum,
        election_rule,
        committee_size,
    )
    csc, _ = open_run(
        w3,
        operator,
        run_id_of_label(run_label),
        params,
        roster,
        gas_limit=gas_limit,
    )
    return Opening(
        contract=csc.address,
        roster_digest=csc.roster_digest(),
        opening_block=csc.opening_block(),
        params=csc.params(),
        participants=tuple(csc.participants()),
    )


def node_config_line(  # noqa: PLR0913 - every pin of a node
    chain_url: str,
    opening: Opening,
    candidate_fraction: float,
    share_fraction: float,
    per_tensor: bool,
    key_file: str = "/path/to/node.key",
) -> str:
    """Return the ``--node-config`` value every SuperNode of the run uses (its key file aside).

    It pins the chain endpoint, the contract, the roster digest and the parameters
    (λ, share fraction, per-tensor, quorum, election rule, committee size), so that a
    node checks the
    run on chain
    against what it agreed to, never against the server's word.
    """
    pins = {
        KEY_FILE: f'"{key_file}"',
        CHAIN_URL: f'"{chain_url}"',
        CONTRACT: f'"{opening.contract}"',
        ROSTER_DIGEST: f'"0x{opening.roster_digest.hex()}"',
        CANDIDATE_FRACTION: repr(float(candidate_fraction)),
        SHARE_FRACTION: repr(float(share_fraction)),
        PER_TENSOR: "true" if per_tensor else "false",
        QUORUM: str(opening.params.quorum),
        ELECTION_RULE: f'"{ELECTION_RULES[opening.params.election_rule]}"',
        COMMITTEE_SIZE: str(opening.params.committee_size),
    }
    return " ".join(f"{key}={value}" for key, value in pins.items())


@dataclass
class RunSummary:
    """What ``seccl-flwr inspect`` shows of a run, read from the chain alone."""

    contract: str
    chain_id: int
    run_id: bytes
    owner: str
    is_open: bool
    roster_digest: bytes
    opening_block: int
    params: RunParams
    participants: list[str]
    last_completed: int
    opening_gas: int = 0
    candidates: dict[int, list[str]] = field(default_factory=dict)
    ballots: dict[int, int] = field(default_factory=dict)
    gas: dict[int, int] = field(default_factory=dict)


_ROUND_EVENTS = ("Anchored", "BallotCast", "Elected")
"""Events whose first argument is the round; their transactions are the round's gas."""


def run_summary(csc: CandidateSelection) -> RunSummary:
    """Return roster, parameters, rounds, candidates and gas per round of ``csc``'s run.

    Gas is each transaction's ``gasUsed`` (from its receipt), counted once, for the
    round its events name; opening gas is the deployment, registration and opening.
    Every log query starts at the run's opening block.
    """
    summary = RunSummary(
        contract=csc.address,
        chain_id=csc.binding.chain_id,
        run_id=csc.binding.run_id,
        owner=csc.owner(),
        is_open=csc.is_open(),
        roster_digest=csc.roster_digest(),
        opening_block=csc.opening_block(),
        params=csc.params(),
        participants=csc.participants(),
        last_completed=csc.last_completed_round(),
    )
    rounds: dict[bytes, int] = {}
    for name in _ROUND_EVENTS:
        for event in csc.events(name):
            rounds[bytes(event["transactionHash"])] = int(event["args"]["round"])
            if name == "BallotCast":
                round_ = int(event["args"]["round"])
                summary.ballots[round_] = summary.ballots.get(round_, 0) + 1
    opening = {
        bytes(e["transactionHash"])
        for name in ("Registered", "RunOpened")
        for e in csc.events(name)
    }
    gas: dict[int, int] = defaultdict(int)
    for tx_hash, round_ in rounds.items():
        gas[round_] += int(csc.w3.eth.get_transaction_receipt(tx_hash)["gasUsed"])
    summary.gas = dict(sorted(gas.items()))
    summary.opening_gas = sum(
        int(csc.w3.eth.get_transaction_receipt(h)["gasUsed"]) for h in opening
    ) + _deployment_gas(csc)
    for round_ in summary.gas:
        if round_ >= 1:
            summary.candidates[round_] = csc.candidates_of(round_)
    return summary


def _deployment_gas(csc: CandidateSelection) -> int:
    """Return the gas of the transaction that created ``csc`` (in its opening block)."""
    block = csc.w3.eth.get_block(csc.opening_block(), full_transactions=True)
    for tx in block["transactions"]:
        if tx.get("to") is None:
            receipt = csc.w3.eth.get_transaction_receipt(tx["hash"])
            if receipt.get("contractAddress") == csc.address:
                return int(receipt["gasUsed"])
    return 0


def format_summary(summary: RunSummary) -> str:
    """Return a run summary as the lines ``seccl-flwr inspect`` prints."""
    params = summary.params
    lines = [
        f"contract       {summary.contract} on chain {summary.chain_id}",
        f"run id         0x{summary.run_id.hex()}",
        f"owner          {summary.owner}",
        f"open           {'yes' if summary.is_open else 'no (roster not sealed)'}",
        f"opening block  {summary.opening_block}",
        f"roster digest  0x{summary.roster_digest.hex()}",
        f"parameters     n={len(summary.participants)} M={params.num_candidates} "
        f"quorum={params.quorum} share fraction={params.share_fraction:g} "
        f"per-tensor={'true' if params.per_tensor else 'false'} "
        f"election rule={params.election_rule} "
        f"committee size={params.committee_size}",
        f"roster ({len(summary.participants)}, registration order):",
        *(f"  {i:3d}  {p}" for i, p in enumerate(summary.participants)),
        f"rounds completed {summary.last_completed}",
        f"gas to open    {summary.opening_gas:,}",
    ]
    if summary.gas:
        lines.append("round  ballots  gas          candidates")
        for round_, gas in summary.gas.items():
            elected = summary.candidates.get(round_)
            lines.append(
                f"{round_:5d}  {summary.ballots.get(round_, 0):7d}  {gas:11,}  "
                + (", ".join(elected) if elected else "-")
            )
    return "\n".join(lines)

"""Opening a SecCL run on the server: the chain, the server's account, the nodes.

What :meth:`seccl_flwr.strategy.SecCL.start` does once before the first round:
open the chain (and serve the embedded one on loopback), derive or load the
server's account, ask every node for its address and its signature of
``Join(run id, address)`` (only proven addresses join), then deploy the contract
with the run's parameters, register the roster and open the run, or, for an
attached contract, check it is this server's run and find where the run stands.
"""

import os
from dataclasses import dataclass
from logging import INFO, WARNING
from typing import NamedTuple
from urllib.parse import urlparse

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from flwr.app import Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import sample_nodes
from web3 import Web3

from . import wire
from .chain.connection import EMBEDDED, connect, embedded_web3, ensure_funded
from .chain.csc import CandidateSelection, open_run
from .chain.rpc_server import LoopbackRPCServer
from .errors import (
    ConfigurationError,
    NotEnoughNodesError,
    UntrustedContractError,
    VerificationError,
)
from .protocol.params import ELECTION_RULES, run_params
from .resume import ResumePoint, resume_point
from .store import MessageStore
from .verify import verify_registration


def open_chain(chain: str, chain_url: str | None):
    """Return ``(web3, server)``: the chain, and the loopback server of an embedded one.

    ``chain`` is ``"embedded"`` or a JSON-RPC URL; with the embedded chain and a
    ``chain_url``, the chain is served on that loopback URL (the server is ``None``
    otherwise; stop it when the run ends).

    Raises
    ------
    ConfigurationError
        If ``chain_url`` is not a loopback URL.
    """
    if chain != EMBEDDED:
        return connect(chain), None
    w3 = embedded_web3()
    if not chain_url:
        return w3, None
    parsed = urlparse(chain_url)
    if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigurationError(f"the embedded chain is served on loopback only, got {chain_url}")
    server = LoopbackRPCServer(w3, "127.0.0.1", parsed.port or 0).start()
    log(INFO, "SecCL: embedded chain served at %s", server.url)
    return w3, server


def election_size_warning(num_candidates: int, num_participants: int) -> str | None:
    """Return why an election of ``M`` among ``n`` participants helps little, or ``None``.

    ``M = 1`` merges a single participant's sparse update per round: the model
    learns from one node's data at a time, and the same node may win every round.
    ``M >= n`` elects everyone: the vote filters nothing, so it does not keep out a
    poisoned update. Both are allowed (a test or a trusted federation may want them)
    but are seldom what a run means.
    """
    n, m = num_participants, num_candidates
    if m >= n:
        return (
            f"M = ceil(λn) = {m} of n = {n} participants: every update is elected, the "
            f"election filters nothing (no protection from a poisoned update); choose "
            f"λ <= {(n - 1) / n:.3g}"
            + ("" if n > 2 else " (with 2 participants M = 1 is the only other choice)")
        )
    if m == 1:
        return (
            f"M = ceil(λn) = 1 of n = {n} participants: each round merges one "
            f"participant's update (the model learns from one node's data at a time, "
            f"and the same node may win every round); choose λ > {1 / n:.3g} for M >= 2"
        )
    return None


def server_account(server_key: str | bytes | None, run_label: str) -> LocalAccount:
    """Return the server's account: ``server_key``, or a key derived from the run label."""
    return Account.from_key(server_key or keccak(text=f"seccl-server:{run_label}"))


class Registration(NamedTuple):
    """A node's proven registration: its address and its ``Join`` signature."""

    address: str
    join_signature: bytes


def register_nodes(
    grid: Grid, run_id: bytes, chain_id: int, min_available_nodes: int, timeout: float
) -> dict[int, Registration]:
    """Ask every connected node for its address and Join signature; return them by node id.

    The message names the run id; each node signs ``Join(run_id, address)`` on the
    chain id of its own endpoint. A node that fails, answers without a valid address
    or with a signature that does not prove the address it claims
    (:class:`~seccl_flwr.errors.JoinSignatureError`, naming that node) is left out,
    and so is a second node claiming an address already proven (logged).

    Raises
    ------
    NotEnoughNodesError
        If fewer than ``min_available_nodes`` nodes register.
    """
    sample_nodes(grid, min_available_nodes, min_available_nodes)  # waits
    fields = wire.register_fields(run_id)
    messages = [
        Message(
            RecordDict({wire.SECCL_KEY: fields}),
            message_type=wire.MESSAGE_TYPE[wire.REGISTER],
            dst_node_id=node_id,
        )
        for node_id in grid.get_node_ids()
    ]
    roster: dict[int, Registration] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        node_id = reply.metadata.src_node_id
        try:
            address, signature = verify_registration(run_id, chain_id, reply)
        except VerificationError as exc:
            log(WARNING, "SecCL: node %s failed to register: %s", node_id, exc)
            continue
        holder = next((n for n, r in roster.items() if r.address == address), None)
        if holder is not None:
            log(
                WARNING,
                "SecCL: node %s registers address %s, already proven by node %s; ignored",
                node_id,
                address,
                holder,
            )
            continue
        roster[node_id] = Registration(address, signature)
    if len(roster) < min_available_nodes:
        raise NotEnoughNodesError(
            f"{len(roster)} nodes registered, fewer than min_available_nodes={min_available_nodes}"
        )
    return dict(sorted(roster.items()))


@dataclass(frozen=True)
class RunSettings:
    """What the server opens a run with.

    Attributes
    ----------
    run_label : str
        The run's name; its keccak-256 is the run id of a new contract.
    candidate_fraction : float
        λ; ``M = num_candidates(λ, n)``.
    share_fraction : float
        The fraction of an update's entries a client shares (stored in ppm).
    per_tensor : bool
        Whether the share fraction applies per tensor.
    quorum : int | None
        The least ballots per election; ``None``: a majority of the roster.
    contract : str | None
        Attach to this contract instead of deploying one.
    gas_limit : int | None
        Gas limit of every transaction (``None``: estimated).
    election_rule : int
        The election rule (:data:`~seccl_flwr.protocol.params.ELECTION_RULES`).
    committee_size : int
        The evaluator committee size k (0: every author scores every other).
    """

    run_label: str
    candidate_fraction: float
    share_fraction: float = 0.1
    per_tensor: bool = False
    quorum: int | None = None
    contract: str | None = None
    gas_limit: int | None = None
    election_rule: int = 0
    committee_size: int = 0


def open_run_on(  # noqa: PLR0913 - what a run is opened with
    w3: Web3,
    grid: Grid,
    server_key: str | bytes | None,
    settings: RunSettings,
    min_available_nodes: int,
    timeout: float,
    store: MessageStore | None,
) -> tuple[CandidateSelection, dict[int, str], ResumePoint]:
    """Open the run on the chain ``w3``; return its contract, its roster and where it stands.

    The server's account (:func:`server_account`) is funded by a dev chain, the
    nodes register (:func:`register_nodes`, for the run id of the attached contract
    or of ``settings.run_label``), and the contract is deployed and opened, or the
    attached one checked (:func:`open_contract`).

    Raises
    ------
    NotEnoughNodesError
        If fewer than ``min_available_nodes`` nodes register within ``timeout``.
    """
    server = server_account(server_key, settings.run_label)
    ensure_funded(w3, server)
    attached = attach_contract(w3, server, settings)
    run_id = run_id_of(attached, settings)
    roster = register_nodes(grid, run_id, w3.eth.chain_id, min_available_nodes, timeout)
    return open_contract(w3, server, roster, settings, store, attached, run_id)


def attach_contract(w3, server: LocalAccount, settings: RunSettings) -> CandidateSelection | None:
    """Return the contract of ``settings.contract``, attached, or ``None`` for a new run."""
    if not settings.contract:
        return None
    return CandidateSelection.attach(w3, settings.contract, server, gas_limit=settings.gas_limit)


def run_id_of(csc: CandidateSelection | None, settings: RunSettings) -> bytes:
    """Return the run id nodes sign: the attached contract's, else a fresh one.

    A new run's id is keccak-256 of its label and 16 random bytes. It must be fresh:
    a Join signature binds the run id and chain id but no contract, and every
    registered signature is public in its ``register`` transaction, so under a
    reused id a node could replay another node's Join signature from an earlier run
    and claim its address. The label stays readable in the server's log and store.
    """
    if csc is not None:
        return csc.binding.run_id
    return keccak(settings.run_label.encode() + os.urandom(16))


def open_contract(
    w3,
    server: LocalAccount,
    roster: dict[int, Registration],
    settings: RunSettings,
    store: MessageStore | None,
    attached: CandidateSelection | None = None,
    run_id: bytes | None = None,
) -> tuple[CandidateSelection, dict[int, str], ResumePoint]:
    """Deploy, register ``roster`` and open the run's contract, or go on with ``attached``.

    ``run_id`` is the id the roster's Join signatures were made for (a new run's,
    from :func:`run_id_of`); it is required for a new run.

    Returns the contract, the participants it lists (by node id) and where the run
    stands (fresh for a new contract).

    Raises
    ------
    ConfigurationError
        If the run's parameters do not fit the roster (e.g. a quorum above ``n``).
    UntrustedContractError, ResumeError
        As :func:`attached_run`.
    """
    resume = ResumePoint()
    if attached is not None:
        csc = attached
        participants, resume = attached_run(csc, roster, store, server.address)
    else:
        if run_id is None:
            raise ConfigurationError("a new run needs the run id its nodes signed (run_id_of)")
        params = run_params(
            len(roster),
            settings.candidate_fraction,
            settings.share_fraction,
            settings.per_tensor,
            settings.quorum,
            settings.election_rule,
            settings.committee_size,
        )
        csc, _ = open_run(
            w3,
            server,
            run_id,
            params,
            {r.address: r.join_signature for r in roster.values()},
            gas_limit=settings.gas_limit,
        )
        participants = {node: r.address for node, r in roster.items()}
    params = csc.params()
    warning = election_size_warning(params.num_candidates, len(participants))
    if warning is not None:
        log(WARNING, "SecCL: %s", warning)
    log(
        INFO,
        "SecCL: run %s on chain %s, contract %s (from block %d), %d participants, M=%d, "
        "quorum=%d, share fraction=%g%s, election rule %s, committee size %s",
        settings.run_label,
        csc.binding.chain_id,
        csc.address,
        csc.opening_block(),
        len(participants),
        params.num_candidates,
        params.quorum,
        params.share_fraction,
        " per tensor" if params.per_tensor else "",
        ELECTION_RULES.get(params.election_rule, params.election_rule),
        params.committee_size or "0 (every author scores every other)",
    )
    return csc, participants, resume


def attached_run(
    csc: CandidateSelection,
    roster: dict[int, Registration],
    store: MessageStore | None,
    owner: str,
) -> tuple[dict[int, str], ResumePoint]:
    """Check an attached contract is ``owner``'s run; return its members and where it stands.

    A run that is not open yet (the server stopped while opening it) gets the
    roster's nodes it does not list yet registered, then is opened. Registered nodes
    whose address an open run does not list are left out (logged).

    Raises
    ------
    UntrustedContractError
        If another account owns the contract.
    ResumeError
        If the run cannot be resumed from ``store``.
    """
    if csc.owner() != owner:
        raise UntrustedContractError(
            f"contract {csc.address} is owned by {csc.owner()}, not by this server ({owner})"
        )
    if not csc.is_open():
        listed = set(csc.participants())
        joining = {r.address: r.join_signature for r in roster.values() if r.address not in listed}
        csc.register(list(joining), list(joining.values()))
        csc.open()
    members = set(csc.participants())
    participants = {node: r.address for node, r in roster.items()}
    for node, address in participants.items():
        if address not in members:
            log(WARNING, "SecCL: node %s (%s) is not in the run; ignored", node, address)
    resume = resume_point(csc, store, owner)
    if not resume.fresh:
        log(
            INFO,
            "SecCL: resuming run at contract %s after round %d%s",
            csc.address,
            resume.last_completed,
            f" ({len(resume.open_updates)} updates of round "
            f"{resume.last_completed + 1} already anchored)"
            if resume.open_updates
            else "",
        )
    return {n: a for n, a in participants.items() if a in members}, resume

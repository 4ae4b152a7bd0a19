"""Opening a SecCL run on the server: the chain, the server's account, the nodes.

What :meth:`seccl_flwr.strategy.SecCL.start` does once before the first round:
open the chain (and serve the embedded one on loopback), derive or load the
server's account, ask every node for its address, and, for an attached contract,
check it is this server's run and find where the run stands.
"""

from dataclasses import dataclass
from logging import INFO, WARNING
from urllib.parse import urlparse

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, keccak
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import sample_nodes

from . import wire
from .chain.connection import EMBEDDED, connect, embedded_web3
from .chain.csc import CandidateSelection
from .chain.rpc_server import LoopbackRPCServer
from .errors import (
    ConfigurationError,
    MalformedMessageError,
    NotEnoughNodesError,
    UntrustedContractError,
    VerificationError,
)
from .protocol.params import num_candidates
from .resume import ResumePoint, resume_point
from .store import MessageStore
from .verify import seccl_fields


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


def server_account(server_key: str | bytes | None, run_label: str) -> LocalAccount:
    """Return the server's account: ``server_key``, or a key derived from the run label."""
    return Account.from_key(server_key or keccak(text=f"seccl-server:{run_label}"))


def register_nodes(
    grid: Grid, run_label: str, min_available_nodes: int, timeout: float
) -> dict[int, str]:
    """Ask every connected node for its address; return node id -> address, by node id.

    A node that fails, answers without a valid address or repeats another node's
    address is left out (logged).

    Raises
    ------
    NotEnoughNodesError
        If fewer than ``min_available_nodes`` nodes register.
    """
    sample_nodes(grid, min_available_nodes, min_available_nodes)  # waits
    messages = [
        Message(
            RecordDict({wire.SECCL_KEY: ConfigRecord({wire.RUN: run_label})}),
            message_type=wire.REGISTER,
            dst_node_id=node_id,
        )
        for node_id in grid.get_node_ids()
    ]
    participants: dict[int, str] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        node_id = reply.metadata.src_node_id
        try:
            fields = seccl_fields(0, str(node_id), reply)
            address = wire.typed_field(0, str(node_id), fields, wire.ADDRESS, str)
            if not is_address(address):
                raise MalformedMessageError(0, str(node_id), f"{address!r:.80} is no address")
        except VerificationError as exc:
            log(WARNING, "SecCL: node %s failed to register: %s", node_id, exc)
            continue
        if address in participants.values():
            log(WARNING, "SecCL: node %s repeats address %s; ignored", node_id, address)
            continue
        participants[node_id] = address
    if len(participants) < min_available_nodes:
        raise NotEnoughNodesError(
            f"{len(participants)} nodes registered, fewer than min_available_nodes="
            f"{min_available_nodes}"
        )
    return dict(sorted(participants.items()))


@dataclass(frozen=True)
class RunSettings:
    """What the server opens a run with: its label, λ, and the contract to attach to."""

    run_label: str
    candidate_fraction: float
    contract: str | None = None
    gas_limit: int | None = None


def open_contract(
    w3,
    server: LocalAccount,
    participants: dict[int, str],
    settings: RunSettings,
    store: MessageStore | None,
) -> tuple[CandidateSelection, dict[int, str], ResumePoint]:
    """Deploy the run's contract, or attach to ``settings.contract``.

    Returns the contract, the participants it lists (by node id) and where the run
    stands (fresh for a new contract).

    Raises
    ------
    UntrustedContractError, ResumeError
        As :func:`attached_run`.
    """
    resume = ResumePoint()
    if settings.contract:
        csc = CandidateSelection.attach(w3, settings.contract, server, gas_limit=settings.gas_limit)
        participants, resume = attached_run(csc, participants, store, server.address)
    else:
        addresses = list(participants.values())
        csc, _ = CandidateSelection.deploy(
            w3,
            server,
            keccak(text=settings.run_label),
            addresses,
            num_candidates(settings.candidate_fraction, len(addresses)),
            gas_limit=settings.gas_limit,
        )
    log(
        INFO,
        "SecCL: run %s on chain %s, contract %s, %d participants, M=%d",
        settings.run_label,
        csc.binding.chain_id,
        csc.address,
        len(participants),
        csc.num_candidates(),
    )
    return csc, participants, resume


def attached_run(
    csc: CandidateSelection,
    participants: dict[int, str],
    store: MessageStore | None,
    owner: str,
) -> tuple[dict[int, str], ResumePoint]:
    """Check an attached contract is ``owner``'s run; return its members and where it stands.

    Registered nodes whose address the run does not list are left out (logged).

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
    members = set(csc.participants())
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

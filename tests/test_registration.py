"""Registration: each node proves its address with a Join signature (issue 12, item 7).

A node that claims another node's address without its key is left out with a
``JoinSignatureError`` that names the impostor's node id; the victim stays.
"""

import itertools
import logging

import pytest
from eth_account import Account
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from seccl_flwr import wire
from seccl_flwr.apps import digits
from seccl_flwr.chain.connection import connect
from seccl_flwr.chain.rpc_server import LoopbackRPCServer, free_loopback_url
from seccl_flwr.client import handle_register
from seccl_flwr.errors import (
    JoinSignatureError,
    MalformedMessageError,
    NotEnoughNodesError,
    UntrustedContractError,
    VerificationError,
)
from seccl_flwr.identity import CHAIN_URL, simulation_key
from seccl_flwr.inprocess import InProcessGrid, new_run_id
from seccl_flwr.protocol.eip712 import (
    join_hash,
    run_id_from_label,
    sign_digest,
    sign_join,
    verify_join,
)
from seccl_flwr.run_setup import Registration, register_nodes
from seccl_flwr.strategy import SecCL
from seccl_flwr.verify import verify_registration
from tests.strategy_helpers import pins_of

TaskIdentity.run_id = TaskIdentity._run_id or 1  # messages built outside a Flower run
TaskIdentity.task_id = TaskIdentity._task_id or 1
TaskIdentity.node_id = TaskIdentity._node_id or 0
RUN_ID = run_id_from_label("registration")
CHAIN_ID = 131277322940537
VICTIM, IMPOSTOR, HONEST = (Account.from_key(bytes([i + 0x61]) * 32) for i in range(3))
_ids = itertools.count(1)


def registration_reply(node: int, address: str, signature: bytes) -> Message:
    """Return ``node``'s answer to the server's REGISTER message."""
    fields = wire.register_fields(RUN_ID)
    instruction = Message(
        RecordDict({wire.SECCL_KEY: fields}), message_type=wire.EVALUATE, dst_node_id=node
    )
    instruction.metadata.__dict__["_message_id"] = f"r{next(_ids)}"
    content = ConfigRecord({wire.ADDRESS: address, wire.JOIN_SIGNATURE: signature})
    return Message(RecordDict({wire.SECCL_KEY: content}), reply_to=instruction)


def proven(account, chain_id: int = CHAIN_ID) -> bytes:
    return sign_join(account.key, RUN_ID, chain_id)


def impostor_signature(chain_id: int = CHAIN_ID) -> bytes:
    """The impostor's own key over the victim's Join: all it can make without the key."""
    return sign_digest(IMPOSTOR.key, join_hash(RUN_ID, chain_id, VICTIM.address))


# ----------------------------------------------------------- the server's check
def test_a_join_signature_proves_the_address_it_is_sent_with():
    reply = registration_reply(7, VICTIM.address.lower(), proven(VICTIM))
    assert verify_registration(RUN_ID, CHAIN_ID, reply) == (VICTIM.address, proven(VICTIM))


@pytest.mark.parametrize(
    "signature",
    [
        impostor_signature(),  # another key
        proven(VICTIM, CHAIN_ID + 1),  # the victim's, but for another chain
        sign_join(VICTIM.key, run_id_from_label("other run"), CHAIN_ID),  # another run
        proven(IMPOSTOR),  # the impostor's own Join
        b"\x00" * 65,  # no signature at all
    ],
    ids=["other-key", "other-chain", "other-run", "own-join", "garbage"],
)
def test_a_signature_that_does_not_prove_the_claimed_address_names_the_sender(signature):
    with pytest.raises(JoinSignatureError) as info:
        verify_registration(RUN_ID, CHAIN_ID, registration_reply(2, VICTIM.address, signature))
    error = info.value
    assert isinstance(error, VerificationError)
    assert error.node == "2" and error.round == 0  # the sender's node id, not the victim
    assert f"claims address {VICTIM.address}" in error.detail


@pytest.mark.parametrize(
    "fields, message",
    [
        ({wire.ADDRESS: "0x1234", wire.JOIN_SIGNATURE: b"\x00" * 65}, "is no address"),
        ({wire.ADDRESS: VICTIM.address}, "'join-signature' is missing"),
        ({wire.ADDRESS: VICTIM.address, wire.JOIN_SIGNATURE: "0xab"}, "must be bytes"),
    ],
)
def test_a_malformed_registration_is_a_named_error(fields, message):
    reply = registration_reply(3, VICTIM.address, b"")
    reply.content[wire.SECCL_KEY] = ConfigRecord(fields)
    with pytest.raises(MalformedMessageError, match=message):
        verify_registration(RUN_ID, CHAIN_ID, reply)


class RegistrationGrid:
    """A grid whose nodes answer the REGISTER message with prepared replies."""

    def __init__(self, replies: list[Message]) -> None:
        self.replies = replies
        self.sent: list[Message] = []

    def get_node_ids(self) -> list[int]:
        return sorted({r.metadata.src_node_id for r in self.replies})

    def send_and_receive(self, messages, *, timeout=None) -> list[Message]:
        self.sent.extend(messages)
        return list(self.replies)


@pytest.mark.parametrize("impostor_first", [True, False])
def test_the_impostor_is_left_out_and_named_and_the_victim_stays(impostor_first, caplog):
    victim, impostor = (
        registration_reply(1, VICTIM.address, proven(VICTIM)),
        registration_reply(2, VICTIM.address, impostor_signature()),
    )
    honest = registration_reply(3, HONEST.address, proven(HONEST))
    replies = [impostor, victim, honest] if impostor_first else [victim, impostor, honest]
    grid = RegistrationGrid(replies)
    with caplog.at_level(logging.WARNING):
        roster = register_nodes(grid, RUN_ID, CHAIN_ID, 2, timeout=5)
    assert roster == {
        1: Registration(VICTIM.address, proven(VICTIM)),
        3: Registration(HONEST.address, proven(HONEST)),
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    (warning,) = warnings
    assert "node 2 failed to register: JoinSignatureError: round 0, node 2:" in warning
    assert "node 1" not in warning
    # the server asked for the run id only (marked as the registration phase);
    # nothing else a node must trust
    for message in grid.sent:
        assert dict(message.content[wire.SECCL_KEY]) == {
            wire.PHASE: wire.REGISTER,
            wire.RUN_ID: "0x" + RUN_ID.hex(),
        }


def test_a_second_registration_of_a_proven_address_is_ignored(caplog):
    """A replayed (valid) Join of an address already proven adds nobody."""
    replayed = registration_reply(4, VICTIM.address, proven(VICTIM))
    grid = RegistrationGrid(
        [registration_reply(1, VICTIM.address, proven(VICTIM)), replayed]
        + [registration_reply(3, HONEST.address, proven(HONEST))]
    )
    with caplog.at_level(logging.WARNING):
        roster = register_nodes(grid, RUN_ID, CHAIN_ID, 2, timeout=5)
    assert {node: r.address for node, r in roster.items()} == {
        1: VICTIM.address,
        3: HONEST.address,
    }
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"node 4 registers address {VICTIM.address}, already proven by node 1; ignored" in (
        warning
    )


def test_too_few_proven_nodes_stop_the_run():
    grid = RegistrationGrid(
        [
            registration_reply(1, VICTIM.address, proven(VICTIM)),
            registration_reply(2, VICTIM.address, impostor_signature()),
        ]
    )
    with pytest.raises(NotEnoughNodesError, match="1 nodes registered, fewer than"):
        register_nodes(grid, RUN_ID, CHAIN_ID, 2, timeout=5)


# ------------------------------------------------------------- the client's side
def node_context(url: str | None) -> Context:
    node_config = {"partition-id": 0} | ({CHAIN_URL: url} if url else {})
    return Context(
        run_id=new_run_id(),
        node_id=1,
        node_config=node_config,
        state=RecordDict(),
        run_config={"seccl-key-seed": 5},
    )


def register_message(fields: dict) -> Message:
    message = Message(
        RecordDict({wire.SECCL_KEY: ConfigRecord({wire.PHASE: wire.REGISTER, **fields})}),
        message_type=wire.EVALUATE,
        dst_node_id=1,
    )
    message.metadata.__dict__["_message_id"] = f"q{next(_ids)}"
    return message


def test_the_client_signs_the_join_on_its_own_endpoints_chain_id():
    me = Account.from_key(simulation_key(5, 0))
    with LoopbackRPCServer() as node:
        chain_id = node.w3.eth.chain_id
        # a chain id named by the server is not the client's to use
        message = register_message({wire.RUN_ID: "0x" + RUN_ID.hex(), "chain-id": chain_id + 1})
        reply = handle_register(message, node_context(node.url))
    fields = reply.content[wire.SECCL_KEY]
    assert fields[wire.ADDRESS] == me.address
    verify_join(RUN_ID, chain_id, me.address, fields[wire.JOIN_SIGNATURE])
    assert verify_registration(RUN_ID, chain_id, reply)[0] == me.address


@pytest.mark.parametrize("run_id", [None, "0x1234", "ab" * 32, 7])
def test_the_client_refuses_a_malformed_run_id(run_id):
    fields = {} if run_id is None else {wire.RUN_ID: run_id}
    with pytest.raises(MalformedMessageError, match="run-id"):
        handle_register(register_message(fields), node_context("http://127.0.0.1:1"))


def test_the_client_without_a_chain_endpoint_does_not_register():
    message = register_message({wire.RUN_ID: "0x" + RUN_ID.hex()})
    with pytest.raises(UntrustedContractError, match=CHAIN_URL):
        handle_register(message, node_context(None))


# ------------------------------------------------------------------ end to end
class ImpersonatingApp:
    """Node 2 registers node 1's address (with its own key); otherwise the digits app."""

    def __call__(self, message: Message, context: Context) -> Message:
        if wire.phase_of(message) == wire.REGISTER and context.node_id == 2:
            victim = Account.from_key(simulation_key(context.run_config["seccl-key-seed"], 0))
            own = Account.from_key(simulation_key(context.run_config["seccl-key-seed"], 1))
            run_id = bytes.fromhex(message.content[wire.SECCL_KEY][wire.RUN_ID][2:])
            chain_id = connect(context.run_config[CHAIN_URL]).eth.chain_id
            signature = sign_digest(own.key, join_hash(run_id, chain_id, victim.address))
            fields = ConfigRecord({wire.ADDRESS: victim.address, wire.JOIN_SIGNATURE: signature})
            return Message(RecordDict({wire.SECCL_KEY: fields}), reply_to=message)
        return digits.app(message, context)


@pytest.mark.slow
def test_an_impersonating_node_is_excluded_from_a_run_and_its_victim_takes_part(caplog):
    url = free_loopback_url()
    strategy = SecCL(chain_url=url, candidate_fraction=0.5, run_label="impersonation")
    config = {"seccl-key-seed": 11, "seccl-chain-url": url, "seed": 0, "lr": 0.1}
    grid = InProcessGrid(ImpersonatingApp(), 4, run_config={**config, **pins_of(strategy)})
    with caplog.at_level(logging.WARNING):
        result = strategy.start(grid, ArrayRecord(digits.initial_model().state_dict()), 1)
    victim = Account.from_key(simulation_key(11, 0)).address
    assert strategy.participants[1] == victim and 2 not in strategy.participants
    assert strategy.csc.participants() == [strategy.participants[n] for n in (1, 3, 4)]
    assert victim in result.rounds[0].authors
    warnings = [r.getMessage() for r in caplog.records if "failed to register" in r.getMessage()]
    (warning,) = warnings
    assert "node 2 failed to register: JoinSignatureError: round 0, node 2" in warning


def test_a_new_run_under_a_reused_label_has_a_fresh_run_id_so_old_joins_cannot_be_replayed():
    from seccl_flwr.run_setup import RunSettings, run_id_of

    settings = RunSettings("seccl", 0.4)
    first, second = run_id_of(None, settings), run_id_of(None, settings)
    assert first != second and len(first) == len(second) == 32
    # the victim's Join of the first run is public in its register calldata; replayed
    # in the second run by another node, it proves nothing
    replayed = sign_join(VICTIM.key, first, CHAIN_ID)
    reply = registration_reply(3, VICTIM.address, replayed)
    with pytest.raises(JoinSignatureError, match=f"claims address {VICTIM.address}"):
        verify_registration(second, CHAIN_ID, reply)

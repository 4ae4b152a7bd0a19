"""Chain faults: a node that stops, restarts or loses a reply, on a real anvil node."""

import threading
import time

import pytest
from eth_account import Account
from flwr.app import ArrayRecord

from seccl_flwr.apps import digits
from seccl_flwr.chain.anvil import AnvilNode, anvil_command
from seccl_flwr.chain.connection import connect, ensure_funded
from seccl_flwr.chain.csc import CandidateSelection
from seccl_flwr.chain.errors import ChainUnreachableError
from seccl_flwr.chain.jsonrpc import json_rpc_of
from seccl_flwr.chain.retry import RetryPolicy
from seccl_flwr.client_checks import pinned_run_config
from seccl_flwr.inprocess import InProcessGrid
from seccl_flwr.protocol.eip712 import Kind, run_id_from_label
from seccl_flwr.strategy import SecCL

from .conftest import skip_or_fail
from .csc_helpers import open_csc

pytestmark = pytest.mark.anvil

SERVER = Account.from_key(b"\x31" * 32)
MEMBERS = [Account.from_key(bytes([i + 40]) * 32) for i in range(3)]


@pytest.fixture
def node(tmp_path):
    """An anvil node whose chain survives a stop and start (``--state``)."""
    if anvil_command() is None:
        skip_or_fail("anvil not found; run `npm ci --prefix contracts`")
    anvil = AnvilNode(state=tmp_path / "state.json")
    with anvil:
        yield anvil


def restart_later(anvil: AnvilNode, delay: float) -> threading.Thread:
    """Stop the node now and start it again on the same port after ``delay`` s."""
    anvil.stop()
    thread = threading.Thread(target=lambda: (time.sleep(delay), anvil.start()), daemon=True)
    thread.start()
    return thread


def deployed(url: str, retry: RetryPolicy | None = None) -> CandidateSelection:
    w3 = connect(url)
    ensure_funded(w3, SERVER)
    csc, _ = open_csc(w3, SERVER, run_id_from_label("faults"), MEMBERS, 1, retry=retry)
    return csc


def test_retry_policy_backs_off_exponentially_up_to_a_cap():
    policy = RetryPolicy(attempts=6, first_delay=0.5, max_delay=3.0)
    assert list(policy.delays()) == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.budget == 9.5
    assert list(RetryPolicy(attempts=1).delays()) == []
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


def test_the_default_retry_waits_31_5_s_and_the_error_and_readme_say_so(monkeypatch):
    """The back-off total is one number (``RetryPolicy.budget``) stated everywhere."""
    from pathlib import Path

    from seccl_flwr.chain import retry

    assert RetryPolicy().budget == 31.5  # 0.5 + 1 + 2 + 4 + 8 + 8 + 8
    slept = []
    monkeypatch.setattr(retry.time, "sleep", slept.append)

    def down():
        raise ChainUnreachableError("refused")

    with pytest.raises(ChainUnreachableError) as info:
        retry.retrying(down, RetryPolicy(), "owner")
    assert slept == list(RetryPolicy().delays()) and sum(slept) == 31.5
    assert "owner: chain unreachable after 8 attempts and 31.5s of back-off" in str(info.value)
    readme = Path(__file__).resolve().parents[1] / "README.md"
    assert "31.5 s" in readme.read_text(encoding="utf-8")


def test_views_and_transactions_wait_for_a_restarted_node(node):
    csc = deployed(node.url)
    csc.anchor(0, Kind.GLOBAL_MODEL, [SERVER.address], [b"\x01" * 32])
    thread = restart_later(node, 1.5)
    # the node is down: both calls are retried until it is back with its chain
    assert csc.participants() == [m.address for m in MEMBERS]
    csc.anchor(1, Kind.UPDATE, [MEMBERS[0].address], [b"\x02" * 32])
    thread.join()
    assert csc.anchor_of(0, Kind.GLOBAL_MODEL, SERVER.address) == b"\x01" * 32
    assert csc.anchor_of(1, Kind.UPDATE, MEMBERS[0].address) == b"\x02" * 32


def test_a_node_that_stays_down_gives_a_clear_error_in_bounded_time(node):
    csc = deployed(node.url, RetryPolicy(attempts=3, first_delay=0.1))
    node.stop()
    started = time.monotonic()
    with pytest.raises(ChainUnreachableError, match="after 3 attempts") as info:
        csc.anchor(0, Kind.GLOBAL_MODEL, [SERVER.address], [b"\x01" * 32])
    assert "anchor" in str(info.value)
    assert time.monotonic() - started < 10


def test_a_lost_reply_resends_the_same_transaction_only(node, monkeypatch):
    deployer = deployed(node.url)
    w3 = deployer.w3
    eth = w3.eth
    transport = json_rpc_of(w3)
    real_request = transport.request
    sent = []

    def send_then_lose_the_reply(method, params):
        answer = real_request(method, params)  # the node gets it ...
        if method == "eth_sendRawTransaction":
            sent.append(params[0])
            if len(sent) == 1:  # ... but the first reply never arrives
                raise ChainUnreachableError("reply lost")
        return answer

    monkeypatch.setattr(transport, "request", send_then_lose_the_reply)
    retry = RetryPolicy(attempts=3, first_delay=0.1)
    csc = CandidateSelection(w3, deployer.address, SERVER, retry=retry, transport=transport)
    nonce = eth.get_transaction_count(SERVER.address)
    (info,) = csc.anchor(0, Kind.GLOBAL_MODEL, [SERVER.address], [b"\x05" * 32])
    assert len(sent) == 2 and sent[0] == sent[1]  # the very same signed bytes
    assert eth.get_transaction_count(SERVER.address) == nonce + 1  # one effect
    assert eth.get_transaction_receipt(info.tx_hash)["status"] == 1
    assert csc.anchor_of(0, Kind.GLOBAL_MODEL, SERVER.address) == b"\x05" * 32


@pytest.mark.slow
def test_a_run_goes_on_when_the_node_restarts_between_rounds(node):
    run_config = {"seccl-key-seed": 9, "seccl-chain-url": node.url, "seed": 0, "lr": 0.1}
    run_config.update(pinned_run_config(0.5))
    grid = InProcessGrid(digits.app, 4, run_config=run_config)
    strategy = SecCL(chain=node.url, candidate_fraction=0.5, run_label="faults-run")
    restarts = []

    def on_round(record):
        if record.round == 1:  # the node goes down as round 2 starts
            restarts.append(restart_later(node, 2.0))

    result = strategy.start(
        grid,
        ArrayRecord(digits.initial_model().state_dict()),
        num_rounds=3,
        on_round=on_round,
    )
    restarts[0].join()
    assert [r.round for r in result.rounds] == [1, 2, 3]
    assert strategy.csc.last_completed_round() == 3
    for record in result.rounds:
        assert record.dropped == {}
        assert record.candidates == strategy.csc.candidates_of(record.round)

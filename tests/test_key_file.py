"""Deployment identity: a node whose node config names a key file signs with that key."""

import pytest
from eth_account import Account
from flwr.app import ArrayRecord

from seccl_flwr.apps import digits
from seccl_flwr.chain.rpc_server import free_loopback_url
from seccl_flwr.client_checks import pinned_run_config
from seccl_flwr.identity import KEY_FILE, ROSTER_DIGEST
from seccl_flwr.inprocess import InProcessGrid
from seccl_flwr.protocol.params import roster_digest
from seccl_flwr.strategy import SecCL


def _key_files(tmp_path, count: int) -> tuple[list[str], list[str]]:
    paths, addresses = [], []
    for i in range(count):
        account = Account.create(f"node-{i}")
        path = tmp_path / f"node-{i}.key"
        # as written by hand or a tool: 0x prefix on some, trailing newline
        key = account.key.hex()
        path.write_text(("0x" + key.removeprefix("0x") if i % 2 else key.removeprefix("0x")) + "\n")
        paths.append(str(path))
        addresses.append(account.address)
    return paths, addresses


def test_nodes_sign_with_their_key_files(tmp_path):
    paths, addresses = _key_files(tmp_path, 3)
    url = free_loopback_url()
    # no seccl-key-seed anywhere: only the node config's key file gives a key; as in a
    # deployment, each node pins the roster it agreed to (registration order: node ids)
    pinned = roster_digest(addresses).hex()
    grid = InProcessGrid(
        digits.app,
        3,
        run_config={"seccl-chain-url": url, "seed": 0, "lr": 0.1, **pinned_run_config(0.4)},
        node_config=lambda partition: {KEY_FILE: paths[partition], ROSTER_DIGEST: pinned},
    )
    strategy = SecCL(candidate_fraction=0.4, chain_url=url, min_available_nodes=3)
    result = strategy.start(grid, ArrayRecord(digits.initial_model().state_dict()), num_rounds=1)
    assert result.participants == {node: addresses[node - 1] for node in (1, 2, 3)}
    assert sorted(strategy.csc.participants()) == sorted(addresses)
    (record,) = result.rounds
    # the server accepted every update and ballot: each signature recovered to the
    # address the node registered, i.e. the key in its file
    assert sorted(record.authors) == sorted(addresses)
    assert record.rejections == [] and record.dropped == {}
    assert sorted(strategy.csc.evaluators_of(1)) == sorted(addresses)


def test_node_without_key_is_named(caplog):
    url = free_loopback_url()
    grid = InProcessGrid(digits.app, 2, run_config={"seccl-chain-url": url})
    strategy = SecCL(chain_url=url, min_available_nodes=2)
    with pytest.raises(Exception):  # noqa: B017 - no participant: the run cannot start
        strategy.start(grid, ArrayRecord(digits.initial_model().state_dict()), num_rounds=1)
    assert f"node 1 has no key: set node config '{KEY_FILE}'" in caplog.text

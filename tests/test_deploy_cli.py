"""The deployment commands: ``keys new``, ``keys join``, ``open``, ``inspect``.

A participant makes a key and signs the run's Join; the operator opens the run on
anvil with the collected lines; the server then attaches to the opened run
(``SecCL(contract=..., server_key=...)``) and the nodes, configured with exactly
the node config ``open`` printed, accept it and play a round. A node pinned to
another roster refuses with ``RosterMismatchError``.
"""

import os
import re
import stat

import pytest
from eth_account import Account
from flwr.app import ArrayRecord
from flwr.common.config import parse_config_args

from seccl_flwr.apps import digits
from seccl_flwr.chain.connection import connect
from seccl_flwr.cli import main
from seccl_flwr.deploy import join_entry, read_join_file
from seccl_flwr.errors import ConfigurationError, NotEnoughNodesError
from seccl_flwr.identity import KEY_FILE, ROSTER_DIGEST
from seccl_flwr.inprocess import InProcessGrid
from seccl_flwr.protocol.params import roster_digest
from seccl_flwr.strategy import SecCL

from .test_cli_errors import error_line


def _lines(capsys) -> list[str]:
    captured = capsys.readouterr()
    assert captured.err == "", captured.err
    return captured.out.splitlines()


def _field(lines: list[str], label: str) -> str:
    return next(line.split()[-1] for line in lines if line.startswith(label))


def test_keys_new_writes_a_private_key_only_its_owner_reads(tmp_path, capsys):
    key = tmp_path / "node.key"
    assert main(["keys", "new", "--out", str(key)]) == 0
    (address,) = _lines(capsys)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert Account.from_key(key.read_text().strip()).address == address


def test_keys_new_never_overwrites_a_file(tmp_path, capsys):
    key = tmp_path / "node.key"
    key.write_text("precious")
    assert main(["keys", "new", "--out", str(key)]) == 2
    line = error_line(capsys)
    assert "--out" in line and "exists" in line and "give a new path" in line
    assert key.read_text() == "precious"


@pytest.mark.parametrize(
    "argv, says",
    [
        (["keys", "join", "--key", "missing.key"], "argument --key: cannot read key file"),
        (["open", "--chain", "embedded"], "argument --chain: 'embedded' is not a JSON-RPC URL"),
        (["inspect", "--contract", "0x12"], "argument --contract: '0x12' is not an address"),
        (["open", "--quorum", "0"], "argument --quorum: must be at least 1, got 0"),
    ],
)
def test_a_bad_deployment_argument_is_one_line_naming_it(argv, says, tmp_path, capsys):
    os.chdir(tmp_path)
    assert main(argv) == 2
    assert says in error_line(capsys)


@pytest.mark.anvil
def test_a_join_line_for_another_run_label_stops_the_opening_before_any_transaction(
    anvil_url, tmp_path, capsys
):
    operator, node = tmp_path / "operator.key", tmp_path / "node.key"
    for key in (operator, node):
        assert main(["keys", "new", "--out", str(key)]) == 0
    join = ["keys", "join", "--key", str(node), "--run-label", "other", "--chain", anvil_url]
    assert main(join) == 0
    roster = tmp_path / "roster.txt"
    roster.write_text(_lines(capsys)[-1] + "\n")
    block = connect(anvil_url).eth.block_number
    argv = ["open", "--chain", anvil_url, "--key", str(operator), "--run-label", "agreed"]
    assert main([*argv, "--roster", str(roster)]) == 2
    line = error_line(capsys)
    assert f"{roster} line 1" in line and "'agreed'" in line
    assert connect(anvil_url).eth.block_number == block


def _open_run(tmp_path, capsys, chain: str, nodes: int, label: str, *options: str):
    """Make node and operator keys, join and open the run; return keys, addresses, output."""
    keys = [tmp_path / f"node-{i}.key" for i in range(nodes)]
    operator = tmp_path / "operator.key"
    for key in (*keys, operator):
        assert main(["keys", "new", "--out", str(key)]) == 0
    addresses = _lines(capsys)[:nodes]
    roster = tmp_path / "roster.txt"
    for key in keys:
        assert (
            main(["keys", "join", "--key", str(key), "--run-label", label, "--chain", chain]) == 0
        )
        with roster.open("a") as out:
            out.write(_lines(capsys)[0] + "\n")
    argv = ["open", "--chain", chain, "--key", str(operator), "--run-label", label]
    assert main([*argv, "--roster", str(roster), *options]) == 0
    return keys, operator, addresses, _lines(capsys)


@pytest.mark.anvil
@pytest.mark.slow
def test_the_server_attaches_to_a_run_the_operator_opened(anvil_url, tmp_path, capsys):
    keys, operator, addresses, printed = _open_run(
        tmp_path, capsys, anvil_url, 3, "attach-trial", "--candidate-fraction", "0.4"
    )
    contract = _field(printed, "contract")
    assert _field(printed, "roster digest") == "0x" + roster_digest(addresses).hex()
    node_config_line = next(line for line in printed if "--node-config" in line)
    node_config = parse_config_args([node_config_line.split("--node-config ", 1)[1][1:-1]])
    assert node_config["seccl-contract"] == contract

    # nothing of the run is on chain yet: attaching starts it fresh, and registration
    # maps each node id to its pinned roster entry by the Join handshake
    grid = InProcessGrid(
        digits.app,
        3,
        run_config={"seed": 0, "lr": 0.1},
        node_config=lambda partition: {**node_config, KEY_FILE: str(keys[partition])},
    )
    strategy = SecCL(
        chain=anvil_url,
        contract=contract,
        server_key=operator.read_text().strip(),
        min_available_nodes=3,
    )
    result = strategy.start(grid, ArrayRecord(digits.initial_model().state_dict()), num_rounds=1)
    assert result.contract == contract
    assert result.participants == {node: addresses[node - 1] for node in (1, 2, 3)}
    (record,) = result.rounds
    assert sorted(record.authors) == sorted(addresses) and record.dropped == {}
    assert len(record.candidates) == 2  # M = ceil(0.4 · 3), as opened

    assert main(["inspect", "--chain", anvil_url, "--contract", contract]) == 0
    shown = "\n".join(_lines(capsys))
    assert "rounds completed 1" in shown
    assert all(address in shown for address in addresses)
    table = shown.split("round  ballots", 1)[1].splitlines()[1:]
    round_line = next(line for line in table if line.split()[0] == "1")
    assert int(round_line.split()[1]) == 3  # ballots
    assert all(candidate in round_line for candidate in record.candidates)
    assert int(round_line.split()[2].replace(",", "")) > 0  # the round's gas


@pytest.mark.anvil
def test_a_node_pinned_to_another_roster_refuses_the_opened_run(anvil_url, tmp_path, capsys):
    keys, operator, addresses, printed = _open_run(tmp_path, capsys, anvil_url, 2, "r")
    contract = _field(printed, "contract")
    other = "0x" + roster_digest(list(reversed(addresses))).hex()
    grid = InProcessGrid(
        digits.app,
        2,
        run_config={"seed": 0, "lr": 0.1, "seccl-chain-url": anvil_url, "seccl-contract": contract},
        node_config=lambda partition: {KEY_FILE: str(keys[partition]), ROSTER_DIGEST: other},
    )
    strategy = SecCL(chain=anvil_url, contract=contract, server_key=operator.read_text().strip())
    with pytest.raises(NotEnoughNodesError, match="RosterMismatchError") as stopped:
        strategy.start(grid, ArrayRecord(digits.initial_model().state_dict()), num_rounds=1)
    assert "fewer than min_train_nodes=2" in str(stopped.value)
    assert f"differs from the pinned {ROSTER_DIGEST} {other}" in str(stopped.value)


def _join_lines(label: str, chain_id: int, count: int) -> list[str]:
    return [join_entry(Account.create(f"p{i}"), label, chain_id) for i in range(count)]


def test_a_join_file_keeps_the_order_and_skips_comments(tmp_path):
    lines = _join_lines("run", 31337, 3)
    path = tmp_path / "roster.txt"
    path.write_text(f"# the agreed roster\n{lines[0]}\n\n{lines[1]}  # second\n{lines[2]}\n")
    roster = read_join_file(path, "run", 31337)
    assert list(roster) == [line.split()[0] for line in lines]


@pytest.mark.parametrize(
    "body, says",
    [
        ("{0}\n{0}\n", "line 2: {address} is listed twice"),
        ("{address}\n", "line 1: expected '<address> <join signature>'"),
        ("0x12 0xab\n", "line 1: expected '<address> <join signature>'"),
        ("{address} 0xzz\n", "line 1: expected '<address> <join signature>'"),
        ("# nobody\n", "lists no participant"),
    ],
)
def test_a_bad_join_file_is_refused_naming_the_line(tmp_path, body, says):
    (line,) = _join_lines("run", 31337, 1)
    address = line.split()[0]
    path = tmp_path / "roster.txt"
    path.write_text(body.format(line, address=address))
    with pytest.raises(ConfigurationError, match=re.escape(says.format(address=address))):
        read_join_file(path, "run", 31337)


def test_a_join_signature_for_another_chain_is_refused(tmp_path):
    path = tmp_path / "roster.txt"
    path.write_text("\n".join(_join_lines("run", 1, 1)) + "\n")
    with pytest.raises(ConfigurationError, match="does not prove .* on chain 31337"):
        read_join_file(path, "run", 31337)

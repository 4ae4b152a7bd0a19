"""SecCL on Flower's deployment engine: anvil, a SuperLink, SuperNodes, `flwr run`, audit.

What an operator and the participants do (docs/deployment.md), as processes on
loopback: each participant makes a key (``seccl-flwr keys new``) and signs the run's
Join (``keys join``); the operator opens the run on anvil (``seccl-flwr open``),
which prints the node config every SuperNode pins. A ``flower-superlink`` and one
``flower-supernode`` per participant start (insecure on loopback; TLS is
documented), the MNIST example is submitted with ``flwr run`` to that federation,
its ServerApp attaches to the opened run with the operator's key, and
``seccl-flwr audit`` checks the run from the chain and the published messages.

How the app's dependencies arrive: the SuperLink installs the ServerApp's with
``uv sync`` (Flower's default), torch from the local CPU wheel and seccl-flwr from a
wheel built here, both through ``UV_FIND_LINKS``; a SuperNode runs the ClientApp in
its own environment (Flower's default: no runtime installation), as a participant's
machine has the package installed.

The ``seccl-flwr`` commands run in this process (their ``main``, the console
script's code path), sparing an interpreter start each. Every other process is
started in its own process group and stopped by that group's id
in a ``finally`` (the SuperLink and SuperNodes each start a ``flower-superexec``).
"""

import contextlib
import io
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from seccl_flwr.chain.anvil import AnvilNode, anvil_command
from seccl_flwr.cli import main
from seccl_flwr.protocol.params import roster_digest

from .conftest import skip_or_fail
from .test_flwr_run import BIN, EXAMPLE, _app_inputs, _build_wheel, _free_port

pytestmark = [pytest.mark.slow, pytest.mark.anvil]

ROUNDS = 2


class Federation:
    """The processes of one deployment, each in its own process group, logged to files."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        """Start ``argv`` as ``name`` in a new session (its own process group)."""
        log = (self.root / f"{name}.log").open("w")
        process = subprocess.Popen(
            argv,
            cwd=self.root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def seccl(self, *args: str) -> tuple[int, str]:
        """Run ``seccl-flwr ARGS`` (its ``main``, in this process); return exit code, output.

        In process: each command is the console script's code path, without another
        interpreter start (seconds each on a loaded machine); its stderr is asserted
        empty on success.
        """
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
        assert code != 0 or err.getvalue() == "", err.getvalue()
        return code, out.getvalue() + err.getvalue()

    def stop(self) -> None:
        """Stop every process group this federation started: TERM, then KILL."""
        for process in self.processes.values():
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _alive_in_groups(pgids: set[int], wait: float = 10) -> list[str]:
    """Return the command lines of live (not zombie) processes in ``pgids``, after ``wait``."""
    deadline = time.monotonic() + wait
    while True:
        alive = []
        for proc in Path("/proc").iterdir():
            try:
                state, _, pgid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:3]
                if int(pgid) in pgids and state != "Z":
                    alive.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (OSError, ValueError):
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _check_tools() -> tuple[Path, list[str]]:
    """Return the MNIST data directory and the torch wheel dirs, or skip (fail in CI)."""
    data_dir, links = _app_inputs()
    if anvil_command() is None:
        skip_or_fail("anvil not found; run `npm ci --prefix contracts`")
    for tool in ("flower-superlink", "flower-supernode", "flwr"):
        if not (BIN / tool).exists():
            skip_or_fail(f"{tool} is not installed beside this Python")
    return data_dir, links


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    """A wheel of this package, built once for the module (the app depends on it)."""
    out = tmp_path_factory.mktemp("wheel")
    _build_wheel(out)
    return out / "wheels"


def _environment(root: Path, links: list[str], wheels: Path) -> dict[str, str]:
    home = root / "home"
    (home / ".flwr").mkdir(parents=True)
    return {
        **os.environ,
        "HOME": str(home),
        "FLWR_HOME": str(home / ".flwr"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "UV_FIND_LINKS": ",".join([*links, str(wheels)]),
        # the user's uv cache (a fresh HOME has none): unpacking torch and the
        # ServerApp's other dependencies again would take minutes
        "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv"),
    }


def _open_run(fed: Federation, chain: str, label: str, nodes: int) -> dict[str, str]:
    """Make the keys, collect the Join lines, open the run; return what ``open`` printed."""
    for name in ("operator", *(f"node-{i}" for i in range(nodes))):
        assert fed.seccl("keys", "new", "--out", str(fed.root / f"{name}.key"))[0] == 0
    lines = []
    for i in range(nodes):
        code, out = fed.seccl(
            *("keys", "join", "--key", str(fed.root / f"node-{i}.key")),
            *("--run-label", label, "--chain", chain),
        )
        assert code == 0, out
        lines.append(out.strip())
    roster = fed.root / "roster.txt"
    roster.write_text("\n".join(lines) + "\n")
    code, out = fed.seccl(
        "open",
        *("--chain", chain, "--key", str(fed.root / "operator.key"), "--run-label", label),
        *("--roster", str(roster), "--candidate-fraction", "0.4", "--share-fraction", "0.1"),
    )
    assert code == 0, out
    printed = out.splitlines()

    def value(label: str) -> str:
        return next(line for line in printed if line.startswith(label)).split()[-1]

    node_config = next(line for line in printed if "--node-config" in line)
    return {
        "contract": value("contract"),
        "roster digest": value("roster digest"),
        "node config": shlex.split(node_config.strip())[1],
        "addresses": [line.split()[0] for line in lines],
    }


def _start_federation(fed: Federation, node_configs: list[str]) -> int:
    """Start the SuperLink and one SuperNode per node config; return the SuperLink's port."""
    port = _free_port()
    superlink = fed.start(
        "superlink",
        [
            str(BIN / "flower-superlink"),
            *("--insecure", "--port", str(port), "--database", str(fed.root / "state.db")),
        ],
    )
    _wait_for_port(port, superlink)
    for i, node_config in enumerate(node_configs):
        fed.start(
            f"supernode-{i}",
            [
                str(BIN / "flower-supernode"),
                *("--insecure", "--superlink", f"127.0.0.1:{port}"),
                *("--port", str(_free_port()), "--node-config", node_config),
            ],
        )
    (fed.root / "home" / ".flwr" / "config.toml").write_text(
        f'[superlink.local-deployment]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    return port


def _flwr_run(fed: Federation, run_config: str, timeout: float = 600) -> str:
    """Submit the MNIST app to the federation, stream its logs; return them."""
    argv = [str(BIN / "flwr"), "run", str(EXAMPLE), "local-deployment", "--stream"]
    process = fed.start("flwr-run", [*argv, "--run-config", run_config])
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    out = fed.log("flwr-run")
    assert code == 0, f"flwr run: exit {code}\n{out[-5000:]}"
    return out


def _node_config(opened: dict, key: str, partition: int, nodes: int, digest: str | None = None):
    line = opened["node config"].replace('"/path/to/node.key"', f'"{key}"')
    if digest is not None:
        line = line.replace(opened["roster digest"], digest)
    return f"{line} partition-id={partition} num-partitions={nodes}"


def _run_config(chain: str, opened: dict, data_dir: Path, root: Path, rounds: int) -> str:
    return (
        f'num-server-rounds={rounds} min-nodes=3 pool-size=300 test-size=100 data-source="idx" '
        f'data-dir="{data_dir}" local-epochs=1 seccl-chain="{chain}" '
        f'seccl-contract="{opened["contract"]}" '
        f'seccl-server-key-file="{root / "operator.key"}" seccl-store="{root / "store"}" '
        "candidate-fraction=0.4 share-fraction=0.1"
    )


def test_three_supernodes_run_the_mnist_app_on_an_opened_run_and_it_audits_clean(tmp_path, wheels):
    data_dir, links = _check_tools()
    fed = Federation(tmp_path, _environment(tmp_path, links, wheels))
    try:
        with AnvilNode() as anvil:
            opened = _open_run(fed, anvil.url, "mnist-deployment", 3)
            _start_federation(
                fed,
                [_node_config(opened, str(tmp_path / f"node-{i}.key"), i, 3) for i in range(3)],
            )
            out = _flwr_run(fed, _run_config(anvil.url, opened, data_dir, tmp_path, ROUNDS))
            for round_ in range(1, ROUNDS + 1):
                assert f"round {round_}/{ROUNDS}: 3 updates, 2 candidates" in out, out[-5000:]
            assert "SecCL finished: final test accuracy" in out
            assert f"contract {opened['contract']}" in out  # attached, not deployed
            code, audit = fed.seccl(
                "audit",
                *("--chain", anvil.url, "--contract", opened["contract"]),
                *("--store", str(tmp_path / "store"), "--roster-digest", opened["roster digest"]),
                *("--candidate-fraction", "0.4", "--share-fraction", "0.1"),
            )
            assert code == 0, audit
            code, inspect = fed.seccl(
                "inspect", "--chain", anvil.url, "--contract", opened["contract"]
            )
            assert code == 0 and f"rounds completed {ROUNDS}" in inspect, inspect
    finally:
        fed.stop()
    assert _alive_in_groups({p.pid for p in fed.processes.values()}) == []


def test_a_supernode_pinned_to_another_roster_refuses_and_the_run_goes_on_without_it(
    tmp_path, wheels
):
    data_dir, links = _check_tools()
    fed = Federation(tmp_path, _environment(tmp_path, links, wheels))
    try:
        with AnvilNode() as anvil:
            opened = _open_run(fed, anvil.url, "mnist-wrong-roster", 3)
            # node 2 agreed to another roster (here: the same people in another order)
            other = "0x" + roster_digest(list(reversed(opened["addresses"]))).hex()
            configs = [
                _node_config(
                    opened, str(tmp_path / f"node-{i}.key"), i, 3, other if i == 2 else None
                )
                for i in range(3)
            ]
            _start_federation(fed, configs)
            out = _flwr_run(fed, _run_config(anvil.url, opened, data_dir, tmp_path, 1))
            # min_train_nodes = 2 and the quorum a majority (2): the run goes on with two,
            # both elected (M = 2)
            assert "round 1/1: 2 updates, 2 candidates" in out, out[-5000:]
            assert "RosterMismatchError" in out  # the server names why node 2 dropped out
            assert "RosterMismatchError" in fed.log("supernode-2")
            assert "RosterMismatchError" not in fed.log("supernode-0")
    finally:
        fed.stop()
    assert _alive_in_groups({p.pid for p in fed.processes.values()}) == []

"""Shared fixtures: ``anvil_url`` starts the npm-installed anvil node once per session."""

import glob
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = REPO / "contracts" / "node_modules"


def in_ci() -> bool:
    """Whether we run in CI, where missing tools fail instead of skipping."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip locally; fail in CI (a missing tool must not hide tests there)."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this is an error)")
    pytest.skip(reason)


def anvil_command() -> list[str] | None:
    """Return how to run anvil: ``$SECCL_ANVIL``, the npm platform binary or shim."""
    if os.environ.get("SECCL_ANVIL"):
        return [os.environ["SECCL_ANVIL"]]
    native = sorted(glob.glob(str(NODE_MODULES / "@foundry-rs" / "anvil-*" / "bin" / "anvil")))
    if native and os.access(native[0], os.X_OK):
        return [native[0]]
    shim = NODE_MODULES / ".bin" / "anvil"
    if shim.exists() and shutil.which("node"):
        return [str(shim)]
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _chain_id(url: str) -> int | None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return int(json.loads(response.read())["result"], 16)
    except OSError:
        return None


@pytest.fixture(scope="session")
def anvil_url(tmp_path_factory):
    """Start anvil on a free loopback port; yield its JSON-RPC URL; stop it after."""
    command = anvil_command()
    if command is None:
        skip_or_fail("anvil not found; run `npm ci --prefix contracts`")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("anvil") / "anvil.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed in the finalizer below
    proc = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while _chain_id(url) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"anvil did not answer on {url}:\n{log_path.read_text()[-2000:]}"
                )
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

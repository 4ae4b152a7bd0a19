"""Start and stop a local anvil node (Foundry's dev chain) on a free loopback port.

anvil is the real Ethereum node of the integration tests and benchmarks; foundry's
``cast`` is the independent JSON-RPC client that tests the embedded chain's loopback
endpoint. Each is found, in order, at ``$SECCL_ANVIL`` / ``$SECCL_CAST``, in the npm
package ``@foundry-rs/anvil`` / ``@foundry-rs/cast`` installed by
``npm ci --prefix contracts`` in a checkout, or on ``PATH``.
"""

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .connection import connect
from .errors import AnvilNotFoundError, ChainUnreachableError
from .rpc_server import free_loopback_url

_NODE_MODULES = Path(__file__).resolve().parents[2] / "contracts" / "node_modules"


def foundry_command(tool: str) -> list[str] | None:
    """Return how to run a foundry tool (``"anvil"``, ``"cast"``), or ``None`` if absent."""
    override = os.environ.get(f"SECCL_{tool.upper()}")
    if override:
        return [override]
    native = sorted(glob.glob(str(_NODE_MODULES / "@foundry-rs" / f"{tool}-*" / "bin" / tool)))
    if native and os.access(native[0], os.X_OK):
        return [native[0]]
    on_path = shutil.which(tool)
    if on_path:
        return [on_path]
    shim = _NODE_MODULES / ".bin" / tool
    if shim.exists() and shutil.which("node"):
        return [str(shim)]
    return None


def anvil_command() -> list[str] | None:
    """Return how to run anvil, or ``None`` if it is not installed."""
    return foundry_command("anvil")


def _answers(url: str) -> bool:
    try:
        connect(url, timeout=1.0)
    except ChainUnreachableError:
        return False
    return True


class AnvilNode:
    """A local anvil process; a context manager that starts and stops it.

    Parameters
    ----------
    url : str | None
        ``http://127.0.0.1:PORT`` to listen on; a free port if ``None``.
    state : str | Path | None
        anvil's ``--state`` file: loaded at start, written at stop, so a node that
        is stopped and started again keeps its chain.
    extra_args : list[str] | None
        More anvil arguments.
    """

    def __init__(
        self,
        url: str | None = None,
        state: str | Path | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.url = url or free_loopback_url()
        self.state = Path(state) if state is not None else None
        self.extra_args = list(extra_args or [])
        self.process: subprocess.Popen | None = None
        self._log = None
        self.log_path = Path(tempfile.mkstemp(prefix="anvil-", suffix=".log")[1])

    def start(self, timeout: float = 30.0) -> "AnvilNode":
        """Start anvil and wait until it answers.

        Raises
        ------
        AnvilNotFoundError
            If anvil is not installed.
        ChainUnreachableError
            If it exits or does not answer within ``timeout`` seconds (with the
            end of anvil's log).
        """
        command = anvil_command()
        if command is None:
            raise AnvilNotFoundError(
                "anvil not found: run `npm ci --prefix contracts`, put anvil on PATH, or set "
                "SECCL_ANVIL"
            )
        port = self.url.rsplit(":", 1)[1]
        args = [*command, "--host", "127.0.0.1", "--port", port, *self.extra_args]
        if self.state is not None:
            args += ["--state", str(self.state)]
        self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not _answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ChainUnreachableError(
                    f"anvil did not answer on {self.url}:\n{self.log_path.read_text()[-2000:]}"
                )
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        """Stop anvil (gracefully, so a ``state`` file is written)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "AnvilNode":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

"""`flwr run examples/mnist`: the example as a real Flower app (local SuperLink, Ray).

`flwr run` starts a local SuperLink in the background, submits the run and (with
``--stream``) prints its logs. The SuperLink syncs the app's dependencies into a
fresh environment with ``uv sync``: torch comes from the local CPU wheel and
seccl-flwr from a wheel built here, both through ``UV_FIND_LINKS``. HOME and
FLWR_HOME point into a temporary directory and the SuperLink gets free ports; the
SuperLink this test started is stopped by pid at the end.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seccl_flwr.chain.rpc_server import free_loopback_url

from .conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mnist"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    return int(free_loopback_url().rsplit(":", 1)[1])


def _find_links() -> list[str]:
    """Directories uv may search for the pinned CPU torch wheel."""
    dirs = []
    for name in ("UV_FIND_LINKS", "PIP_FIND_LINKS"):
        dirs += [d for d in os.environ.get(name, "").replace(",", " ").split() if d]
    return [d for d in dict.fromkeys(dirs) if any(Path(d).glob("torch-2.13.0*.whl"))]


def _processes_with(marker: str) -> list[int]:
    """Pids of processes whose command line contains ``marker``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline and "flower-superlink" in cmdline:
                pids.append(int(proc.name))
    return pids


def _children(pid: int) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out += [int(proc.name), *_children(int(proc.name))]
    return out


def _stop(pids: list[int]) -> None:
    for pid in pids:
        for target in (*_children(pid), pid):
            try:
                os.kill(target, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.2)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _build_wheel(out: Path) -> None:
    """Build seccl-flwr's wheel from a copy of the sources (the repo stays untouched)."""
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "seccl_flwr", src / "seccl_flwr", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(src),
            "-w",
            str(out / "wheels"),
        ],
        check=True,
        timeout=300,
    )


def _app_inputs() -> tuple[Path, list[str]]:
    """Return the MNIST data directory and the torch wheel dirs, or skip (fail in CI)."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        from mnist_seccl.task import resolve_data_dir

        try:
            data_dir = resolve_data_dir()
        except FileNotFoundError as exc:
            skip_or_fail(str(exc))
    finally:
        sys.path.remove(str(EXAMPLE))
    links = _find_links()
    if not links:
        skip_or_fail("no local torch 2.13.0 wheel in UV_FIND_LINKS/PIP_FIND_LINKS")
    return data_dir, links


def flwr_run_env(tmp_path: Path, links: list[str]) -> tuple[dict, str]:
    """Return the environment of ``flwr run`` (own HOME, free ports) and its SuperLink's marker.

    Builds seccl-flwr's wheel into ``tmp_path/wheels``, found by uv with the torch
    wheel through ``UV_FIND_LINKS``. Skips (fails in CI) without ``flower-superlink``.
    """
    if shutil.which("flower-superlink", path=str(BIN)) is None:
        skip_or_fail("flower-superlink is not installed beside this Python")
    _build_wheel(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    http_port, control_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "HOME": str(home),
        "FLWR_HOME": str(home / ".flwr"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "UV_FIND_LINKS": ",".join([*links, str(tmp_path / "wheels")]),
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(http_port),
        "FLWR_LOCAL_CONTROL_API_PORT": str(control_port),
    }
    return env, f"--control-api-address 127.0.0.1:{control_port}"


def flwr_run(app: Path, cwd: Path, env: dict, supernodes: int, run_config: str) -> str:
    """Run ``flwr run APP --stream`` in a local simulation federation; return its output.

    Fails the test (with the output's tail) if the run fails.
    """
    proc = subprocess.run(
        [
            str(BIN / "flwr"),
            "run",
            str(app),
            "--stream",
            "--federation-config",
            f"num-supernodes={supernodes}",
            "--run-config",
            run_config,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    return out


@pytest.mark.slow
def test_flwr_run_streams_seccl_rounds(tmp_path):
    data_dir, links = _app_inputs()
    env, marker = flwr_run_env(tmp_path, links)
    run_config = (
        f'num-server-rounds=1 min-nodes=3 pool-size=300 test-size=100 data-source="idx" '
        f'data-dir="{data_dir}" seccl-chain-url="http://127.0.0.1:{_free_port()}"'
    )
    try:
        out = flwr_run(EXAMPLE, tmp_path, env, 3, run_config)
    finally:
        _stop(_processes_with(marker))
    assert "Starting local SuperLink" in out, out[-5000:]
    assert "round 1/1: 3 updates, 1 candidates, test accuracy" in out, out[-5000:]
    assert "MNIST test set (10k) split: 300 digits for participants, 100 held out" in out
    assert "SecCL finished: final test accuracy" in out
    assert not _processes_with(marker)

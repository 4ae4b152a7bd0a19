"""README's "Use SecCL in your Flower app": its diff, applied to a quickstart-style app.

``tests/quickstart_app`` is a Flower app in quickstart-pytorch's layout (FedAvg,
quickstart-pytorch's ``Net``, its ``@app.train`` / ``@app.evaluate`` handlers and
centralized evaluation) on the MNIST test set from ``../shared/data/mnist``: 2,000
digits held out for the server's test, 3,000 split IID among 3 SuperNodes (each
keeps 20 % for its own evaluation), seed 0. The test takes the diff exactly as
README.md prints it, applies it to a copy with ``git apply``, runs both apps with
``flwr run`` (local simulation federation) for 3 rounds, and compares the final
centralized accuracy.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .test_flwr_run import _app_inputs, _free_port, _processes_with, _stop, flwr_run, flwr_run_env

ROOT = Path(__file__).resolve().parents[1]
APP = Path(__file__).resolve().parent / "quickstart_app"
SECTION = "## Use SecCL in your Flower app"
MAX_CHANGED_LINES = 15
FINAL = re.compile(r"final centralized accuracy (\d\.\d+)")


def readme_diff() -> str:
    """Return the first ``diff`` block of README.md's section on converting an app."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION) :]
    match = re.search(r"```diff\n(.*?)```", section, re.S)
    assert match, f"no diff block in README's {SECTION!r}"
    return match.group(1)


def changed_lines(diff: str) -> int:
    """Count the lines a diff adds or removes (file headers excluded)."""
    return sum(
        1
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++ ", "--- "))
    )


def copy_app(dst: Path) -> Path:
    shutil.copytree(APP, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_the_readme_diff_is_small_and_applies_to_the_quickstart_app(tmp_path):
    diff = readme_diff()
    assert changed_lines(diff) <= MAX_CHANGED_LINES
    app = copy_app(tmp_path / "app")
    (tmp_path / "readme.diff").write_text(diff)
    subprocess.run(["git", "apply", str(tmp_path / "readme.diff")], cwd=app, check=True)
    client = (app / "pytorchexample" / "client_app.py").read_text()
    assert "app = ClientApp(mods=[seccl_mod])" in client
    # the app's own handlers are untouched
    for handler in ("@app.train()\ndef train(", "@app.evaluate()\ndef evaluate("):
        assert handler in client


@pytest.mark.slow
def test_the_converted_quickstart_app_matches_fedavg_within_one_point(tmp_path):
    data_dir, links = _app_inputs()
    env, marker = flwr_run_env(tmp_path, links)
    fedavg = copy_app(tmp_path / "fedavg")
    seccl = copy_app(tmp_path / "seccl")
    (tmp_path / "readme.diff").write_text(readme_diff())
    subprocess.run(["git", "apply", str(tmp_path / "readme.diff")], cwd=seccl, check=True)
    data = f'data-dir="{data_dir}"'
    try:
        out_fedavg = flwr_run(fedavg, tmp_path, env, 3, data)
        chain = f'seccl-chain-url="http://127.0.0.1:{_free_port()}"'
        out_seccl = flwr_run(seccl, tmp_path, env, 3, f"{data} {chain}")
    finally:
        _stop(_processes_with(marker))
    accuracy = {}
    for name, out in (("fedavg", out_fedavg), ("seccl", out_seccl)):
        found = FINAL.findall(out)
        assert found, out[-5000:]
        accuracy[name] = float(found[-1])
    print(f"final centralized accuracy after 3 rounds: {accuracy}")  # shown with -s
    assert "Starting SecCL strategy" in out_seccl, out_seccl[-5000:]
    assert accuracy["fedavg"] > 0.5, accuracy  # the runs learned something
    assert abs(accuracy["seccl"] - accuracy["fedavg"]) <= 0.01, accuracy

#!/usr/bin/env bash
# Create .venv and install seccl-flwr into it. Usage: scripts/setup.sh [--test]
#   --test  also install the test tools (pytest, hypothesis, ruff) and the npm
#           packages of contracts/ (solc-js for the artifact check, anvil).
# torch is installed first, pinned: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
echo "==> installing torch==2.13.0 (CPU) and seccl-flwr"
$PIP install --quiet --disable-pip-version-check torch==2.13.0
if [ "${1:-}" = "--test" ]; then
  $PIP install --quiet --disable-pip-version-check -e ".[test]"
  echo "==> installing contracts/ npm packages (solc-js, anvil)"
  npm ci --prefix contracts --no-audit --no-fund --loglevel=error
else
  $PIP install --quiet --disable-pip-version-check -e .
fi

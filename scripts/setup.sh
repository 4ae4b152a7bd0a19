#!/usr/bin/env bash
# Create .venv and install seccl-flwr into it. Usage: scripts/setup.sh [--test]
#   --test  also install the test tools (pytest, hypothesis, ruff), the npm
#           packages of contracts/ (solc-js for the artifact check, anvil, solhint)
#           and slither (for scripts/analyze-contract.sh) in its own venv
#           .venv/slither: slither-analyzer requires web3 < 8, seccl-flwr's web3 may be newer.
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
  echo "==> installing contracts/ npm packages (solc-js, anvil, solhint)"
  npm ci --prefix contracts --no-audit --no-fund --loglevel=error
  echo "==> installing slither-analyzer==0.11.6 into .venv/slither"
  if [ ! -x .venv/slither/bin/python ]; then
    "$PYTHON" -m venv .venv/slither
  fi
  .venv/slither/bin/python -m pip install --quiet --disable-pip-version-check \
    slither-analyzer==0.11.6 crytic-compile==0.4.2
else
  $PIP install --quiet --disable-pip-version-check -e .
fi

#!/usr/bin/env bash
# Install what the tests need, then run lint, the artifact check, the contract analysis
# (scripts/analyze-contract.sh: slither, solhint) and the whole suite.
# In CI (CI=true) tests that need solc-js or anvil fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
echo "==> ruff"
.venv/bin/ruff check seccl_flwr tests benchmarks examples/mnist
.venv/bin/ruff format --check seccl_flwr tests benchmarks examples/mnist
echo "==> contract artifact matches contracts/CandidateSelection.sol"
.venv/bin/python -m seccl_flwr.chain.build --check
echo "==> contract analysis (slither, solhint)"
bash scripts/analyze-contract.sh
echo "==> pytest"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

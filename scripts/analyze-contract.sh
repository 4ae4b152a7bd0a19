#!/usr/bin/env bash
# Static analysis of contracts/CandidateSelection.sol. Usage: scripts/analyze-contract.sh
#
#   slither  (PyPI slither-analyzer, all detectors): fails on ANY finding, whatever its
#            impact, and on a `slither-disable` comment that suppresses nothing. A finding
#            that is kept on purpose carries `// slither-disable-...` in the contract,
#            directly under a comment giving the reason.
#   solhint  (npm, contracts/.solhint.json = solhint:recommended): fails on any warning.
#            The one rule changed: func-visibility ignores constructors (Solidity >= 0.7
#            forbids a constructor visibility, so the rule's default would flag every
#            constructor). Kept warnings carry `// solhint-disable...` under a reason.
#
# slither needs a solc: crytic-compile runs contracts/solc-wrapper.js (solc-js 0.8.28
# from contracts/node_modules) in standard-JSON mode, so no native solc and no download
# is needed. slither pins web3 < 8, so it lives in its own venv, .venv/slither
# (scripts/setup.sh --test creates it); override with SLITHER=/path/to/slither or
# VENV=/other/venv (uses $VENV/slither/bin/slither). solhint and solc-js come from
# `npm ci --prefix contracts`.
#
# A missing tool fails the script when CI is set (CI=true, as in .ci/run) and is
# skipped with a message otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

CONTRACT=contracts/CandidateSelection.sol
VENV=${VENV:-.venv}
status=0

in_ci() {
  case "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')" in
    1 | true | yes) return 0 ;;
    *) return 1 ;;
  esac
}

skip_or_fail() {
  if in_ci; then
    echo "error: $1 (CI is set, so this is an error)" >&2
    status=1
  else
    echo "skipped: $1" >&2
  fi
}

find_slither() {
  if [ -n "${SLITHER:-}" ]; then
    echo "$SLITHER"
  elif [ -x "$VENV/slither/bin/slither" ]; then
    echo "$VENV/slither/bin/slither"
  elif [ -x "$VENV/bin/slither" ]; then
    echo "$VENV/bin/slither"
  else
    command -v slither || true
  fi
}

have_node_package() {
  command -v node >/dev/null && [ -f "contracts/node_modules/$1/package.json" ]
}

echo "==> slither $CONTRACT"
slither=$(find_slither)
if [ -z "$slither" ] || [ ! -x "$slither" ]; then
  skip_or_fail "slither not found (run scripts/setup.sh --test, or set SLITHER=/path/to/slither)"
elif ! have_node_package solc; then
  skip_or_fail "node or solc-js missing; run \`npm ci --prefix contracts\`"
else
  # contracts/ as target: crytic-compile compiles contracts/*.sol (not node_modules) in
  # one standard-JSON run of the wrapper. Findings are printed on stderr.
  if ! "$slither" contracts/ \
    --solc-standard-json \
    --solc contracts/solc-wrapper.js \
    --fail-pedantic \
    --warn-unused-ignores; then
    echo "error: slither failed or reported findings: fix each one, or keep it with" \
      "a reasoned // slither-disable-next-line DETECTOR in $CONTRACT" >&2
    status=1
  else
    echo "slither: no findings"
  fi
fi

echo "==> solhint $CONTRACT"
if ! have_node_package solhint; then
  skip_or_fail "node or solhint missing; run \`npm ci --prefix contracts\`"
elif ! contracts/node_modules/.bin/solhint \
  --config contracts/.solhint.json \
  --max-warnings 0 \
  --disc \
  --noPoster \
  "$CONTRACT"; then
  echo "error: solhint reported problems in $CONTRACT" >&2
  status=1
else
  echo "solhint: no problems"
fi

exit "$status"

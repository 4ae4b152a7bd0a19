#!/usr/bin/env bash
# The main job: a short SecCL simulation on the embedded chain (Flower's simulation
# engine, 5 participants, 8 rounds, scikit-learn digits). Prints a per-round table,
# writes seccl-runs/simulate/rounds.csv and rounds.png, then audits the run before the
# embedded chain ends (--audit) and prints the verdict. Extra arguments go to
# `seccl-flwr simulate` (see `.venv/bin/seccl-flwr simulate --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/seccl-flwr simulate --audit "$@"

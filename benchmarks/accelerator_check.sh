#!/usr/bin/env bash
# The accelerator check (benchmarks/accelerator_check.py): at most 8 minutes, synthetic data,
# nothing downloaded. Run from anywhere: bash benchmarks/accelerator_check.sh [--steps=N]
# ($PYTHON: the Python to use; default: python on the PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
timeout 480 "${PYTHON:-python}" benchmarks/accelerator_check.py "$@"

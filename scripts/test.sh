#!/usr/bin/env bash
# Sets up .venv (and .venv-label for MONAI Label) and runs the whole test suite on the CPU. Extra arguments go to pytest.
# Without arguments (the full run, as in CI) it first runs ruff (lint + format check) and checks the built wheel in a
# fresh environment (scripts/check_wheel.sh, 2-4 minutes); with arguments it runs only pytest, e.g.
# `bash scripts/test.sh -m "not slow"` for the quick local loop.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/setup_label_env.sh   # separate env for the live MONAI Label server test (pydicom 2, numpy 1)
export MEDICAL_DENOISE_CACHE="${MEDICAL_DENOISE_CACHE:-$PWD/.venv/cache}"
if [ $# -eq 0 ]; then
  .venv/bin/ruff check . && .venv/bin/ruff format --check .
  bash scripts/check_wheel.sh
fi
exec .venv/bin/python -m pytest -q "$@"

#!/usr/bin/env bash
# Sets up .venv (and .venv-label for MONAI Label) and runs the whole test suite on the CPU. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/setup_label_env.sh   # separate env for the live MONAI Label server test (pydicom 2, numpy 1)
export MEDICAL_DENOISE_CACHE="${MEDICAL_DENOISE_CACHE:-$PWD/.venv/cache}"
exec .venv/bin/python -m pytest -q "$@"

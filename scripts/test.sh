#!/usr/bin/env bash
# Sets up .venv and runs the whole test suite on the CPU. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export MEDICAL_DENOISE_CACHE="${MEDICAL_DENOISE_CACHE:-$PWD/.venv/cache}"
exec .venv/bin/python -m pytest -q "$@"

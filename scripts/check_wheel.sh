#!/usr/bin/env bash
# CI step: build the wheel, install it WITHOUT extras into a fresh virtual environment (PyTorch first, as
# scripts/setup_env.sh does), and there run what the README tells pip users to run (scripts/check_wheel.py).
# Needs .venv (scripts/setup_env.sh) for the build. Takes 2-4 minutes on 2 cores; the environment is removed after.
# TORCH_SPEC as in setup_env.sh; KEEP_WHEEL_CHECK=1 keeps the work folder for a look.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
repo=$PWD
start=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/medical-denoise-wheel.XXXXXX")
[ "${KEEP_WHEEL_CHECK:-0}" = 1 ] && echo "wheel check: work folder $work" || trap 'rm -rf "$work"' EXIT

# sdist, then the wheel from the sdist (as `python -m build` does), so a file missing from the sdist shows too;
# no build isolation: .venv's setuptools builds it, without fetching build requirements
.venv/bin/python -m build --no-isolation --skip-dependency-check --outdir "$work/dist" . >"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/*.whl)
echo "wheel check: built $(basename "$wheel") ($(du -h "$wheel" | cut -f1)) in $((SECONDS - start)) s"

"$PYTHON" -m venv "$work/venv"
# this machine's pip config lists extra local indexes that may be absent; their warnings are noise
pip_install() {
  "$work/venv/bin/pip" install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
}
pip_install "$TORCH_SPEC"
pip_install "$wheel"
echo "wheel check: installed with no extras in $((SECONDS - start)) s"

# from outside the checkout, so nothing is imported from the repository
(cd "$work" && PATH="$work/venv/bin:$PATH" "$work/venv/bin/python" "$repo/scripts/check_wheel.py" "$work/check")
echo "wheel check: passed in $((SECONDS - start)) s"

#!/usr/bin/env bash
# Creates .venv with PyTorch and the project with all extras.
# Idempotent: reinstalls only when setup.cfg, setup.py or pyproject.toml change.
# TORCH_SPEC picks the PyTorch build (default torch==2.13.0: a CPU wheel on the project's machines; an
# unpinned "torch" pulls a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.installed-$(cat setup.cfg setup.py pyproject.toml | sha1sum | cut -c1-12)"
# this machine's pip config lists extra local indexes that may be absent; their warnings are noise
pip_install() { .venv/bin/pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
if [ ! -f "$stamp" ]; then
  echo "setting up .venv (first run takes a few minutes)"
  pip_install "$TORCH_SPEC"
  pip_install -e ".[clinical,export,bm3d,test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

#!/usr/bin/env bash
# Creates .venv-label: MONAI Label 0.8.5 + this project, to serve the bundle (docs/monai_label.md).
# Idempotent: reinstalls only when requirements-label.txt, setup.cfg, setup.py or pyproject.toml change.
# A fresh build takes ~3 min and ~2.6 GB on the project's machines (ITK and the CPU torch are most of it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
MONAILABEL_SPEC=${MONAILABEL_SPEC:-monailabel==0.8.5}
[ -x .venv-label/bin/python ] || "$PYTHON" -m venv .venv-label
[ -f .venv-label/.gitignore ] || echo "*" > .venv-label/.gitignore  # never committed (as Python 3.13's venv does)
stamp=".venv-label/.installed-$(cat requirements-label.txt setup.cfg setup.py pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "setting up .venv-label (first run takes a few minutes)"
  # this machine's pip config lists extra local indexes that may be absent; their warnings are noise
  pip_install() { .venv-label/bin/pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
  pip_install -r requirements-label.txt
  # --no-deps: see requirements-label.txt (monailabel pulls SAM2/MLflow/torchvision; the project pins pydicom>=3)
  pip_install --no-deps "$MONAILABEL_SPEC"
  pip_install --no-deps -e .
  .venv-label/bin/python -c "import monailabel.app, medical_denoise.label.main" >/dev/null
  rm -f .venv-label/.installed-*
  touch "$stamp"
fi

#!/usr/bin/env bash
# One-shot training of the dermoscopy GAN (or, with --clinical, the clinical CT/MR model) to a wall-clock budget,
# then evaluation of its best weights on the held-out split (configs/gpu.yaml: bf16, channels_last, images cached on
# the GPU, the largest batch that fits, the schedule fitted to the budget, a checkpoint at every epoch end). Runs on
# a CPU too, in float32 (tests/test_train_gpu.py).
#   scripts/train_gpu.sh MINUTES [--clinical] [bundle options]
#   scripts/train_gpu.sh 10 --dataset_dir /data/isic_train --output_dir runs/gpu_isic
#   scripts/train_gpu.sh 10 --clinical --datalist_file ../../docs/clinical_datalist.json --output_dir runs/gpu_ct
# Python: $PYTHON, else the repository's .venv, else python3; it needs PyTorch (CUDA build on a GPU machine), MONAI
# and this package's dependencies. Outputs: bundles/gan_denoise/runs/gpu (checkpoints, TensorBoard, triplets) and
# runs/gpu/eval (the evaluation), unless --output_dir / --eval_dir say otherwise.
set -euo pipefail
minutes=${1:?usage: scripts/train_gpu.sh MINUTES [--clinical] [bundle options]}
shift
configs="'configs/train.yaml','configs/gpu.yaml'"
if [ "${1:-}" = "--clinical" ]; then
  configs="$configs,'configs/clinical.yaml','configs/clinical_gpu.yaml'"
  shift
fi
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"   # this checkout's package when it is not installed
cd "$root/bundles/gan_denoise"
"$py" -m monai.bundle run training --config_file "[$configs]" --bundle_root . --time_budget_minutes "$minutes" "$@"
"$py" -m monai.bundle run evaluating --config_file "[$configs,'configs/evaluate.yaml']" --bundle_root . \
  --eval_dir "\$@output_dir + '/eval'" "$@"

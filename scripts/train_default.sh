#!/usr/bin/env bash
# Main job: set up, then train the GAN denoiser on the embedded default images (about 5 minutes on 2 CPU cores),
# then evaluate it on the held-out image. Outputs: bundles/gan_denoise/runs/{train,eval}.
# Extra arguments go to the training run, e.g. --dataset_dir /data/HAM10000 --num_epochs 200.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
cd bundles/gan_denoise
../../.venv/bin/python -m monai.bundle run training --config_file configs/train.yaml --bundle_root . \
  --logging_file configs/logging.conf "$@"
../../.venv/bin/python -m monai.bundle run evaluating --config_file "['configs/train.yaml','configs/evaluate.yaml']" \
  --bundle_root . --logging_file configs/logging.conf "$@"
echo "checkpoints, TensorBoard logs and triplet PNGs: bundles/gan_denoise/runs/train; evaluation: bundles/gan_denoise/runs/eval"

"""Time and peak memory of denoising a 512x512x300 CT volume with the bundle's default `inference` command.

The volume is built from a real CT series (its slices repeated to 300, stored as int16 NIfTI in HU) so the
network sees real anatomy; the run is the README's inference command in a child process, whose peak resident memory
(``ru_maxrss``) and wall time are reported.

    python benchmarks/clinical_volume.py --series ../shared/data/clinical_train/ct_abdomen_gepetct_cctumorhet \
        --slices 300 --work /tmp/ctvol
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from medical_denoise.io import read_image

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "gan_denoise"


def make_volume(series: Path, slices: int, out: Path) -> Path:
    image = read_image(series)
    hu = image.array[0]
    reps = -(-slices // hu.shape[-1])
    volume = np.concatenate([hu, hu[..., ::-1]] * reps, axis=-1)[..., :slices]  # mirrored: no jump between copies
    nifti = nib.Nifti1Image(np.round(volume).astype(np.int16), np.diag([0.94, 0.94, 2.5, 1.0]))
    nifti.header["descrip"] = b"CT HU"
    nib.save(nifti, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", required=True, help="a CT DICOM series folder")
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--work", default="/tmp/ctvol")
    ap.add_argument(
        "--clinical_checkpoint", default=None, help="weights other than the shipped models (CT then takes these)"
    )
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    volume = make_volume(Path(args.series), args.slices, work / "ct_volume.nii.gz")
    out = work / "out"
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "inference",
        "--config_file", "['configs/train.yaml','configs/inference.yaml']", "--bundle_root", ".",
        "--input", str(volume), "--output_dir", str(out), "--overwrite", "True",
    ]  # fmt: skip
    if args.clinical_checkpoint:
        cmd += ["--clinical_checkpoint", str(Path(args.clinical_checkpoint).resolve())]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=BUNDLE, env={**os.environ}, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
    if proc.returncode != 0:
        sys.exit(f"inference failed:\n{proc.stderr[-3000:]}")
    print(f"volume {volume} shape {nib.load(volume).shape}: {wall:.0f} s, peak RSS {peak_gib:.2f} GiB")


if __name__ == "__main__":
    main()

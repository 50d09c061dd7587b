"""What the 8-fold self-ensemble buys on lone clinical slices, and what it costs.

Inference averages the 8 flips/rotations for inputs up to ``clinical_ensemble_up_to_mp`` megavoxels (lone slices,
short series) and runs larger volumes in one pass. This scores both on pydicom's CT and MR slices (test inputs
only): the evaluation's conditions and seeded noise (``clinical_conditions``: Gaussian HU and low dose for CT,
Rician for MR), the model inference routes each file to (``clinical_ct.pt`` for CT, ``clinical.pt`` for MR),
blind, on the 2D path (the slice as every neighbour). Prints PSNR in the network range over the scored pixels, one
pass against the ensemble, and the wall time of each per slice.

    python benchmarks/clinical_self_ensemble.py [--seeds 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from pydicom.data import get_testdata_file

from medical_denoise.data import LoadClinicald
from medical_denoise.evaluation.clinical import clinical_conditions, model_method
from medical_denoise.evaluation.metrics import masked_psnr
from medical_denoise.networks.predictor import bundle_predictor
from medical_denoise.noise import stable_seed

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "gan_denoise"
FILES = ("CT_small.dcm", "J2K_pixelrep_mismatch.dcm", "693_UNCR.dcm", "MR_small.dcm")
WEIGHTS = {"CT": "clinical_ct.pt", "MR": "clinical.pt"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="independent noise draws per file and condition")
    args = parser.parse_args()
    methods = {
        (modality, ensemble): model_method(
            bundle_predictor(
                BUNDLE,
                BUNDLE / "models" / weights,
                self_ensemble=ensemble,
                config_file=["configs/train.yaml", "configs/clinical.yaml"],
            ).numpy
        )  # fmt: skip
        for modality, weights in WEIGHTS.items()
        for ensemble in (False, True)
    }
    print("| file | model | condition | one pass (dB) | 8-fold (dB) | gain (dB) | time one pass / 8-fold (s) |")
    print("|---|---|---|---:|---:|---:|---|")
    for name in FILES:
        path = get_testdata_file(name, download=False)
        if path is None:
            print(f"{name}: not installed (pydicom-data), skipped")
            continue
        loaded = LoadClinicald("image", clip=False)({"image": path})
        clean, info = np.asarray(loaded["image"], dtype=np.float32)[0], loaded["image_intensity"]
        clean = clean[..., 0] if clean.ndim == 3 else clean  # a lone slice: (H, W) or (H, W, 1)
        modality = "CT" if str(info["modality"]).upper() == "CT" else "MR"
        for condition in clinical_conditions(modality):
            mask = condition.score_mask(clean, info)
            scores, times = {False: [], True: []}, {False: [], True: []}
            for seed in range(args.seeds):
                rng = np.random.default_rng(stable_seed("clinical_self_ensemble", seed, name, condition.name))
                slab = np.stack([condition.degrade(clean, info, rng)] * 3)
                for ensemble in (False, True):
                    start = time.perf_counter()
                    out = methods[(modality, ensemble)](slab, 0.0)
                    times[ensemble].append(time.perf_counter() - start)
                    scores[ensemble].append(masked_psnr(clean, out, 1.0, mask))
            one, eight = np.mean(scores[False]), np.mean(scores[True])
            print(f"| {Path(name).stem} | {WEIGHTS[modality]} | {condition.label} | {one:.2f} | {eight:.2f} | "
                  f"{eight - one:+.2f} | {np.median(times[False]):.2f} / {np.median(times[True]):.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

"""How far each CT model moves the held-out low-dose scan as it is (nothing added): its own noise, scored as error.

The held-out abdomen CT carries about 17 HU of its own scanner noise, and the evaluation scores every model against
it. A model that removes more of that noise is scored lower on the held-out tables even where it is better on clean
references. This script runs each checkpoint blind on the evaluation's own sample of slices (seed 0, 20 slices, 2.5D
slabs, one pass) with no noise added and reports PSNR/SSIM of the output against the input, in the evaluation's
network range and field of view: what the held-out score charges each model for the scan's own noise it removes.

    python benchmarks/clinical_scan_as_is.py bundles/gan_denoise/models/clinical_ct.pt OTHER.pt ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medical_denoise.data import LoadClinicald
from medical_denoise.evaluation.clinical import FOV_MIN_HU, choose_slices, load_volume
from medical_denoise.evaluation.metrics import masked_psnr, masked_ssim
from medical_denoise.io.predict import slab_indices
from medical_denoise.networks import bundle_predictor

ROOT = Path(__file__).resolve().parents[1]
SERIES_ID = "ct_abdomen_gepetct_cctumorhet"  # the datalist id: it seeds the evaluation's slice sample
SERIES = ROOT.parent / "shared" / "data" / "clinical_train" / SERIES_ID


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", type=Path, nargs="+", help="clinical generator weights")
    p.add_argument("--series", type=Path, default=SERIES, help="a CT DICOM series folder or NIfTI (in HU)")
    p.add_argument("--max_slices", type=int, default=20, help="the evaluation's eval_max_slices")
    p.add_argument("--seed", type=int, default=0, help="the evaluation's seed")
    args = p.parse_args()

    item = {"image": str(args.series), "id": SERIES_ID if args.series == SERIES else args.series.name, "modality": "CT"}
    vol = load_volume(item, LoadClinicald("image", clip=False))
    depth = vol.clean.shape[-1]
    low, span = float(vol.info["low"]), float(vol.info["high"]) - float(vol.info["low"])
    slices = choose_slices(depth, args.max_slices, args.seed, vol.image_id)
    print(f"{vol.image_id}: {len(slices)} of {depth} slices {slices}, nothing added; output against the input\n")
    print("| checkpoint | PSNR dB | SSIM | RMSE HU |\n|---|---:|---:|---:|")
    for checkpoint in args.checkpoints:
        predictor = bundle_predictor(ROOT / "bundles" / "gan_denoise", checkpoint,
                                     ["configs/train.yaml", "configs/clinical.yaml"], self_ensemble=False)  # fmt: skip
        k = (predictor.network.in_channels - 1) // 2
        scores = []
        for z in slices:
            slab = np.moveaxis(vol.clean[..., slab_indices(depth, z, z + 1, k)[0]], -1, 0)  # (2k + 1, H, W)
            image, out = slab[k], predictor.numpy(slab)[0]
            fov = image * span + low > FOV_MIN_HU
            rmse = float(np.sqrt(np.mean((out[fov] - image[fov]).astype(np.float64) ** 2))) * span
            scores.append((masked_psnr(image, out, 1.0, fov), masked_ssim(image, out, 1.0, fov), rmse))
        psnr, ssim, rmse = np.mean(scores, axis=0)
        print(f"| `{checkpoint}` | {psnr:.2f} | {ssim:.4f} | {rmse:.1f} |")


if __name__ == "__main__":
    main()

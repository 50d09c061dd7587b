"""Where a clinical model leaves noise or shifts levels on CT: flat patches, and tissue classes of real slices vs BM3D.

A PSNR over the whole field of view hides where a CT denoiser falls short. This adds the evaluation's seeded
Gaussian noise (``NoiseCondition``, inside the field of view only) to pydicom's CT slices (test inputs only, never
training data), runs the bundle's clinical model blind on the 2D path (the slice as every neighbour, as for a lone
DICOM file) and BM3D given the true std (the evaluation's ``bm3d`` baseline), and prints the RMSE in HU of each
against the clean slice per class of the clean HU: air (< -900), lung (-900..-300), soft tissue (-300..300) and
bone (> 300), with the share of the added noise std each method removed (``1 - RMSE / std``). First, a table of
flat 128x128 patches at fixed HU with seeded Gaussian noise: the mean shift of the model's output (a flat region
must keep its level) and its RMSE, in HU; then the mean shift inside round fat and water inserts of a body phantom.

    python benchmarks/clinical_noise_by_region.py [--checkpoint bundles/gan_denoise/models/clinical_ct.pt] [--seeds 2] [--flat_only]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from pydicom.data import get_testdata_file

from medical_denoise.evaluation.clinical import NoiseCondition, NoiseKind, baseline_methods, model_method
from medical_denoise.io import CT_WINDOW, read_image
from medical_denoise.networks.predictor import bundle_predictor
from medical_denoise.noise import stable_seed

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "gan_denoise"
FILES = ("J2K_pixelrep_mismatch.dcm", "CT_small.dcm")
REGIONS = {"air": (-np.inf, -900.0), "lung": (-900.0, -300.0), "soft": (-300.0, 300.0), "bone": (300.0, np.inf)}
LEVELS_HU = (10.0, 25.0, 50.0)
FLAT_HU = (-1000.0, -300.0, -200.0, -150.0, -100.0, -50.0, 0.0, 40.0, 100.0, 700.0)


def flat_patches(model, span: float, low: float) -> None:
    """Mean shift (RMSE) in HU of the model's output on flat patches with seeded Gaussian noise."""
    print("| flat patch (HU) | " + " | ".join(f"{s:g} HU noise" for s in LEVELS_HU) + " |")
    print("|---:|" + "---|" * len(LEVELS_HU))
    for hu in FLAT_HU:
        clean = np.float32((hu - low) / span)
        cells = []
        for level in LEVELS_HU:
            rng = np.random.default_rng(stable_seed("flat_patch", hu, level))
            noisy = clean + rng.standard_normal((128, 128), dtype=np.float32) * np.float32(level / span)
            error = (model(np.stack([noisy] * 3), level / span)[16:-16, 16:-16] - clean) * span  # away from edges
            cells.append(f"{error.mean():+.1f} ({np.sqrt(np.mean(error**2)):.1f})")
        print(f"| {hu:g} | " + " | ".join(cells) + " |")
    print()


def phantom_inserts(model, span: float, low: float) -> None:
    """Mean shift in HU inside round inserts (-150, -100, 0 HU; 60 px across) of a 40 HU body (400 px) in air."""
    yy, xx = np.mgrid[:512, :512] - 255.5
    hu = np.where(np.hypot(yy, xx) < 200, 40.0, -1000.0)
    inserts = {-150.0: (0, -100), -100.0: (0, 100), 0.0: (100, 0)}
    for value, (cy, cx) in inserts.items():
        hu[np.hypot(yy - cy, xx - cx) < 30] = value
    clean = ((hu - low) / span).astype(np.float32)
    print("| insert (HU) | " + " | ".join(f"{s:g} HU noise" for s in LEVELS_HU) + " |")
    print("|---:|" + "---|" * len(LEVELS_HU))
    shifts = {value: [] for value in inserts}
    for level in LEVELS_HU:
        rng = np.random.default_rng(stable_seed("phantom_inserts", level))
        noisy = clean + rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(level / span)
        error = (model(np.stack([noisy] * 3), level / span) - clean) * span
        for value, (cy, cx) in inserts.items():
            shifts[value].append(error[np.hypot(yy - cy, xx - cx) < 25].mean())  # 5 px in from the edge
    for value, row in shifts.items():
        print(f"| {value:g} | " + " | ".join(f"{v:+.1f}" for v in row) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=BUNDLE / "models" / "clinical_ct.pt")
    parser.add_argument("--seeds", type=int, default=2, help="independent noise draws per file and level")
    parser.add_argument("--flat_only", action="store_true", help="only the synthetic tables (no BM3D, seconds)")
    args = parser.parse_args()
    predictor = bundle_predictor(BUNDLE, args.checkpoint, config_file=["configs/train.yaml", "configs/clinical.yaml"])
    methods = {"model": model_method(predictor.numpy), "bm3d": baseline_methods(["bm3d"])["bm3d"]}
    print(f"checkpoint {args.checkpoint}\n\nFlat patches, model blind: mean shift (RMSE) in HU\n")
    flat_patches(methods["model"], CT_WINDOW[1] - CT_WINDOW[0], CT_WINDOW[0])
    print("Inserts in a body phantom, model blind: mean shift in HU\n")
    phantom_inserts(methods["model"], CT_WINDOW[1] - CT_WINDOW[0], CT_WINDOW[0])
    if args.flat_only:
        return
    print(f"Package CT slices, {args.seeds} noise draws: RMSE in HU (share of the added std removed)\n")
    print("| file | std (HU) | region | pixels | " + " | ".join(methods) + " |")
    print("|---|---:|---|---:|" + "---|" * len(methods))
    for name in FILES:
        image = read_image(get_testdata_file(name, download=False))
        info = {"low": image.intensity.low, "high": image.intensity.high}
        span = info["high"] - info["low"]
        hu = np.asarray(image.array, dtype=np.float32).reshape(image.array.shape[-2:])
        clean = (hu - info["low"]) / span
        for level in LEVELS_HU:
            condition = NoiseCondition(NoiseKind.GAUSSIAN_HU, level)
            mask = condition.score_mask(clean, info)
            errors: dict[str, list[np.ndarray]] = {m: [] for m in methods}
            for seed in range(args.seeds):
                rng = np.random.default_rng(stable_seed("noise_by_region", seed, name, level))
                noisy = condition.degrade(clean, info, rng)
                slab = np.stack([noisy] * 3)  # the 2D path: the slice is each of its own neighbours
                for method, run in methods.items():
                    errors[method].append((run(slab.copy(), level / span) - clean) * span)
            for region, (lo, hi) in REGIONS.items():
                where = mask & (hu >= lo) & (hu < hi)
                if where.sum() < 100:
                    continue
                cells = []
                for method in methods:
                    rmse = float(np.sqrt(np.mean([np.mean(e[where] ** 2) for e in errors[method]])))
                    cells.append(f"{rmse:.1f} ({1 - rmse / level:+.0%})")
                print(f"| {Path(name).stem} | {level:g} | {region} | {int(where.sum())} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

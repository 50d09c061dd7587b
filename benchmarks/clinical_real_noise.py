"""Real scanner noise: the clinical model next to BM3D on a low-dose CT as it is (no noise added), soft-tissue window.

The abdomen CT of ../shared/data/clinical_train is the low-dose (60 mA) CT of a PET/CT, so its own noise is real
scanner noise. BM3D gets the noise std estimated on the slice (skimage's wavelet MAD estimator, through
``medical_denoise.noise.estimate_noise_level``, on the largest square inside the scan circle: the exact -3024 HU padding
would bias it low). Top row: input | model | BM3D; bottom row: what each removed (input - output) and model - BM3D,
+-100 HU. Prints the estimated noise std (HU) of the input and of both outputs. Saved as an 8-bit grey PNG.

    python benchmarks/clinical_real_noise.py --checkpoint bundles/gan_denoise/models/clinical.pt \
        --out docs/images/clinical_real_noise_ct.png
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from medical_denoise.atomic import atomic_write
from medical_denoise.data import LoadClinicald
from medical_denoise.evaluation import BM3DDenoiser
from medical_denoise.evaluation.clinical import FOV_MIN_HU, display_window, load_volume
from medical_denoise.io.predict import slab_indices
from medical_denoise.networks import bundle_predictor
from medical_denoise.noise import estimate_noise_level

ROOT = Path(__file__).resolve().parents[1]
SERIES = ROOT.parent / "shared" / "data" / "clinical_train" / "ct_abdomen_gepetct_cctumorhet"


def inner_square(fov: np.ndarray) -> tuple[slice, slice]:
    """The largest axis-aligned square inside the field of view's circle (its bounding box / sqrt 2)."""
    rows, cols = np.nonzero(fov)
    cy, cx = (rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2
    half = int(min(rows.max() - rows.min(), cols.max() - cols.min()) / 2 / np.sqrt(2))
    return slice(int(cy) - half, int(cy) + half), slice(int(cx) - half, int(cx) + half)


def sigma_hu(image: np.ndarray, region: tuple[slice, slice], span: float) -> float:
    """Estimated noise std (HU) of a network-range slice on ``region``."""
    return estimate_noise_level(image[region][None]) / 255.0 * span


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", type=Path, default=SERIES, help="a CT DICOM series folder or NIfTI (in HU)")
    p.add_argument("--slice", type=int, default=None, help="slice index (default: the middle one)")
    p.add_argument("--bundle_dir", type=Path, default=ROOT / "bundles" / "gan_denoise")
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the bundle's models/clinical.pt")
    p.add_argument("--crop", type=int, default=320, help="side of the displayed square around the body (pixels)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    vol = load_volume({"image": str(args.series), "id": args.series.name, "modality": "CT"},
                      LoadClinicald("image", clip=False))  # fmt: skip
    depth = vol.clean.shape[-1]
    z = depth // 2 if args.slice is None else args.slice
    if not 0 <= z < depth:
        raise SystemExit(f"{args.series}: slice {z} outside [0, {depth - 1}].")
    low, span = float(vol.info["low"]), float(vol.info["high"]) - float(vol.info["low"])

    predictor = bundle_predictor(args.bundle_dir, args.checkpoint, ["configs/train.yaml", "configs/clinical.yaml"],
                                 self_ensemble=False)  # fmt: skip
    k = (predictor.network.in_channels - 1) // 2
    slab = np.moveaxis(vol.clean[..., slab_indices(depth, z, z + 1, k)[0]], -1, 0)  # (2k + 1, H, W)
    image = slab[k]
    start = time.perf_counter()
    model = predictor.numpy(slab)[0]
    model_s = time.perf_counter() - start

    region = inner_square(image * span + low > FOV_MIN_HU)
    sigma = estimate_noise_level(image[region][None]) / 255.0  # network units
    start = time.perf_counter()
    bm3d = BM3DDenoiser()(image[None], sigma=sigma * 255.0)[0]
    bm3d_s = time.perf_counter() - start
    stds = {name: sigma_hu(x, region, span) for name, x in (("input", image), ("model", model), ("BM3D", bm3d))}

    body = np.nonzero(image * span + low > -500.0)
    cy, cx = int(np.mean(body[0])), int(np.mean(body[1]))
    half = min(args.crop // 2, cy, cx, image.shape[0] - cy, image.shape[1] - cx)
    view = (slice(cy - half, cy + half), slice(cx - half, cx + half))
    vmin, vmax = display_window(vol.info, "CT")
    diff = 100.0 / span  # +-100 HU
    panels = [
        (image, f"input (est. noise {stds['input']:.1f} HU)", vmin, vmax),
        (model, f"model (est. noise {stds['model']:.1f} HU)", vmin, vmax),
        (bm3d, f"BM3D, sigma {sigma * span:.1f} HU est. ({stds['BM3D']:.1f} HU left)", vmin, vmax),
        (image - model, "input - model (+-100 HU)", -diff, diff),
        (image - bm3d, "input - BM3D (+-100 HU)", -diff, diff),
        (model - bm3d, "model - BM3D (+-100 HU)", -diff, diff),
    ]
    side = 2 * half / 100
    fig = Figure(figsize=(3 * side + 0.3, 2 * side + 0.9), dpi=100, layout="constrained")
    for i, (array, title, lo, hi) in enumerate(panels):
        ax = fig.add_subplot(2, 3, i + 1)
        ax.imshow(array[view], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"{args.series.name}, slice {z}: real low-dose noise, nothing added (soft-tissue window W400/L40)",
                 fontsize=9)  # fmt: skip
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    grey = Image.open(buffer).convert("L")  # grey figure: an 8-bit PNG is a third of the RGBA size
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, lambda f: grey.save(f, format="PNG", optimize=True), binary=True)
    print(f"{args.out} ({args.out.stat().st_size / 1024:.0f} KB): slice {z}, {k} neighbour(s) per side; estimated "
          f"noise std in HU: " + ", ".join(f"{n} {s:.1f}" for n, s in stds.items())
          + f"; model {model_s:.1f} s, BM3D {bm3d_s:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()

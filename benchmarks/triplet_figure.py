"""Draw noisy | denoised | clean for the shipped model on a scikit-image photo (a figure for the README).

Also prints the PSNR of the noisy input, the GAN and non-local means on the same seeded noisy image.

    python benchmarks/triplet_figure.py --image retina --out docs/images/triplet_retina_sigma25.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from skimage import data

from medical_denoise.engine.handlers import save_png_atomic
from medical_denoise.evaluation import NLMeansDenoiser, SeededNoise, psnr
from medical_denoise.networks import bundle_predictor

# 256x256 crops of scikit-image's bundled photos (no download): a fundus photo and an IHC tissue slide
CROPS = {
    "retina": lambda: data.retina()[500:756, 500:756],
    "ihc": lambda: data.immunohistochemistry()[:256, :256],
    "astronaut": lambda: data.astronaut()[:256, 200:456],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle_dir", type=Path, default=Path(__file__).resolve().parents[1] / "bundles" / "gan_denoise")
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the bundle's models/model.pt")
    p.add_argument("--sigma", type=float, default=25.0)
    p.add_argument(
        "--self_ensemble", action="store_true", help="average 8 flips/rotations (the bundle's default: one pass)"
    )
    p.add_argument("--image", choices=sorted(CROPS), default="retina")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    clean = np.moveaxis(CROPS[args.image]().astype(np.float32) / 255, -1, 0)
    noisy = SeededNoise(seed=0)(clean, args.sigma, f"skimage_{args.image}")
    predictor = bundle_predictor(args.bundle_dir, args.checkpoint, self_ensemble=args.self_ensemble)
    denoised = np.clip(predictor.numpy(noisy), 0, 1)
    row = np.concatenate([np.clip(x, 0, 1) for x in (noisy, denoised, clean)], axis=2)
    save_png_atomic((np.moveaxis(row, 0, -1) * 255 + 0.5).astype(np.uint8), args.out)
    nlm = NLMeansDenoiser()(noisy)
    print(
        f"{args.out}: {args.image}, sigma {args.sigma:g}, PSNR noisy {psnr(clean, noisy):.2f} dB, "
        f"GAN {psnr(clean, denoised):.2f} dB, NLM {psnr(clean, nlm):.2f} dB"
    )


if __name__ == "__main__":
    main()

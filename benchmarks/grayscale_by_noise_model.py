"""Which clinical model suits grayscale inputs other than CT and MR: the shared one or the CT-trained one.

The shared ``clinical.pt`` learned to remove MR's Rician floor (a positive bias of about 1.25 sigma where the
signal is near zero). On images whose noise is additive (X-ray, nuclear medicine, grayscale photographs) that
habit darkens every dark region. This adds seeded Gaussian noise (2 / 5 / 10 % of the robust range) to
package-shipped grayscale images (test inputs only, never training data): scikit-image's camera, moon and coins,
pydicom's NM ``JPEG2000.dcm`` and secondary-capture ``image_dfl.dcm``, and pydicom's ``MR_small.dcm`` with Gaussian
and with Rician noise as the MR control. Each image is mapped by its 0.5/99.5 percentiles to [0, 1]. Both models
run blind on the 2D path (the slice as every neighbour); BM3D is given the true std. The 0 % row is the clean image
(models only: PSNR of the output against its input). Printed: PSNR in that range,
and in brackets the mean change over the darkest fifth of the clean image, in % of the range (a faithful denoiser
keeps it near 0; Rician noise itself raises it, so there removing the floor is right).

    python benchmarks/grayscale_by_noise_model.py [--baselines "['bm3d']"]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from skimage import data

from medical_denoise.evaluation.clinical import baseline_methods, model_method
from medical_denoise.evaluation.metrics import masked_psnr
from medical_denoise.io.intensity import IntensityMapping
from medical_denoise.networks.predictor import bundle_predictor
from medical_denoise.noise import stable_seed

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "gan_denoise"
MODELS = {"shared clinical.pt": "clinical.pt", "CT model clinical_ct.pt": "clinical_ct.pt"}
LEVELS = (0.0, 0.02, 0.05, 0.10)  # 0: the clean image, models only (PSNR against itself)


def images() -> dict[str, np.ndarray]:
    def dicom(name: str) -> np.ndarray:
        return pydicom.dcmread(get_testdata_file(name, download=False)).pixel_array

    found = {
        "camera (photo)": data.camera(),
        "moon (photo)": data.moon(),
        "coins (photo)": data.coins(),
        "JPEG2000.dcm (NM)": dicom("JPEG2000.dcm"),
        "image_dfl.dcm (OT)": dicom("image_dfl.dcm"),
        "MR_small.dcm (MR)": dicom("MR_small.dcm"),
    }
    return {name: np.asarray(a, np.float32) for name, a in found.items()}


def degrade(clean: np.ndarray, level: float, rician: bool, rng: np.random.Generator) -> np.ndarray:
    real = clean + np.float32(level) * rng.standard_normal(clean.shape, dtype=np.float32)
    if not rician:
        return real
    return np.hypot(real, np.float32(level) * rng.standard_normal(clean.shape, dtype=np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baselines", default="['bm3d']", help='sigma-aware baselines, e.g. "[]" or "[\'bm3d\']"')
    args = parser.parse_args()
    methods = {
        name: model_method(
            bundle_predictor(
                BUNDLE, BUNDLE / "models" / file, config_file=["configs/train.yaml", "configs/clinical.yaml"]
            ).numpy
        )
        for name, file in MODELS.items()
    }
    methods.update(baseline_methods(ast.literal_eval(args.baselines)))
    print("| image | noise | noisy | " + " | ".join(methods) + " |")
    print("|---|---|---:|" + "---:|" * len(methods))
    for name, values in images().items():
        clean = IntensityMapping.percentile(values).forward(values).astype(np.float32)
        dark = clean <= np.percentile(clean, 20)
        for rician in (False, True) if "(MR)" in name else (False,):
            for level in LEVELS:
                if rician and level == 0:
                    continue
                rng = np.random.default_rng(stable_seed("grayscale_by_noise_model", name, level, rician))
                noisy = degrade(clean, level, rician, rng)
                cells = []
                for name_of, run in [("noisy", lambda slab, _: slab[1]), *methods.items()]:
                    if level == 0 and name_of not in MODELS:
                        cells.append("-")  # the clean image itself; a baseline given sigma 0 has nothing to do
                        continue
                    out = run(np.stack([noisy] * 3), level)
                    cells.append(f"{masked_psnr(clean, out):.2f} ({100 * (out - clean)[dark].mean():+.1f})")
                kind = "Rician" if rician else "Gaussian" if level else "none"
                print(f"| {name} | {kind} {level:.0%} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

"""The clinical model on single 2D slices it never saw: the CT and MR files that ship with pydicom (test inputs only).

A user's single DICOM slice goes through the 2D path (the slice is every one of its own neighbours, with the same
noise). This scores that path with the bundle's clinical evaluation (``evaluating``, the same conditions, metrics and
baselines as the held-out series) on pydicom's CT_small (128x128), J2K_pixelrep_mismatch (a 512x512 CT) and MR_small
(and pydicom-data's 693_UNCR when that package is installed), each under ``--seeds`` independent seeded noise draws,
and prints the mean per condition and method with the model's paired difference to BM3D.

    python benchmarks/clinical_package_slices.py --checkpoint bundles/gan_denoise/models/clinical.pt \
        --work /tmp/package_slices [--baselines "['bm3d']"] [--seeds 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
from collections import defaultdict
from pathlib import Path

from _bundle_runs import bundle, wait
from pydicom.data import get_testdata_file

FILES = {"CT_small.dcm": "CT", "J2K_pixelrep_mismatch.dcm": "CT", "MR_small.dcm": "MR", "693_UNCR.dcm": "CT"}


def write_datalist(work: Path) -> Path:
    """A datalist whose ``test`` split is every package file found here (never downloaded), with its own root."""
    entries, root = [], None
    for name, modality in FILES.items():
        path = get_testdata_file(name, download=False)
        if path is None:
            print(f"{name}: not installed (pydicom-data), skipped")
            continue
        entries.append({"image": str(Path(path).resolve()), "id": Path(name).stem, "modality": modality})
        root = Path(path).resolve().parent
    datalist = work / "package_slices.json"
    # absolute image paths: dataset_dir only has to exist
    datalist.write_text(json.dumps({"dataset_dir": str(root), "training": [], "validation": [], "test": entries}))
    return datalist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="clinical generator weights")
    parser.add_argument("--work", type=Path, required=True, help="output folder")
    parser.add_argument("--baselines", default="['bm3d']", help="baselines, as the bundle's --baselines")
    parser.add_argument("--seeds", type=int, default=3, help="independent noise draws per file")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    datalist = write_datalist(work)
    configs = "['configs/train.yaml','configs/clinical.yaml','configs/evaluate.yaml']"
    rows = []
    for seed in range(args.seeds):
        out = work / f"seed{seed}"
        if not (out / "per_slice.csv").is_file():
            wait([bundle("evaluating", "--config_file", configs, "--datalist_file", str(datalist),
                         "--checkpoint", str(args.checkpoint.resolve()), "--baselines", args.baselines,
                         "--seed", str(seed), "--eval_dir", str(out), threads=os.cpu_count() or 1)])  # fmt: skip
        with open(out / "per_slice.csv", newline="") as f:
            rows += list(csv.DictReader(f))
    psnr: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    ssim: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        psnr[r["series"], r["condition"], r["method"]].append(float(r["psnr"]))
        ssim[r["series"], r["condition"], r["method"]].append(float(r["ssim"]))
    methods = sorted({k[2] for k in psnr}, key=lambda m: (m != "noisy", m))
    print(f"{args.seeds} noise draws per file; PSNR dB / SSIM (model - BM3D, dB)\n")
    print("| file | condition | " + " | ".join(methods) + " | model - bm3d |")
    print("|---|---|" + "---|" * (len(methods) + 1))
    for series, condition in sorted({k[:2] for k in psnr}):
        cells = [f"{statistics.mean(psnr[series, condition, m]):.2f} / {statistics.mean(ssim[series, condition, m]):.3f}"
                 for m in methods]  # fmt: skip
        gap = ""
        if (series, condition, "bm3d") in psnr:
            gap = f"{statistics.mean(psnr[series, condition, 'model']) - statistics.mean(psnr[series, condition, 'bm3d']):+.2f}"
        print(f"| {series} | {condition} | {' | '.join(cells)} | {gap} |")


if __name__ == "__main__":
    main()

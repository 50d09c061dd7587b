"""Check an installed medical-denoise (no extras) as a pip user would use it; scripts/check_wheel.sh runs it.

    python scripts/check_wheel.py WORK_DIR      # with the fresh environment's Python, outside the checkout

Inputs come from data that installed packages ship: a PNG crop of scikit-image's astronaut, a 3-slice series made
from pydicom's CT_small.dcm (uncompressed), and nibabel's anatomical.nii. Each ``medical-denoise denoise`` output
must exist with its input's format and geometry; so must ``python -m monai.bundle run inference`` against
``medical-denoise bundle-path``. Grayscale inputs need the clinical model: while the bundle routes by ``model``
and ``models/clinical.pt`` is not shipped yet, they must be refused in one or two lines with a non-zero exit.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import yaml
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

GEOMETRY_TAGS = ("Rows", "Columns", "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient")


def run(*args: str, expect_ok: bool = True) -> subprocess.CompletedProcess:
    start = time.monotonic()
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=600)
    print(f"  [{time.monotonic() - start:5.1f} s] rc={result.returncode}: {' '.join(args)}", flush=True)
    if expect_ok and result.returncode != 0:
        sys.exit(f"FAILED: {' '.join(args)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def check(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"FAILED: {message}")


def check_short_error(result: subprocess.CompletedProcess, what: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    check(result.returncode != 0, f"{what}: exit status 0")
    check(1 <= len(lines) <= 2 and "Traceback" not in result.stderr, f"{what}: not a short error:\n{result.stderr}")
    print(f"    {what}: {lines[0]}")


def make_inputs(work: Path) -> tuple[Path, Path, Path]:
    import skimage.data

    png = work / "in" / "astronaut.png"
    png.parent.mkdir(parents=True)
    Image.fromarray(skimage.data.astronaut()[40:136, 180:308]).save(png)  # 96 x 128 RGB
    series = work / "in" / "ct_series"
    series.mkdir()
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    check(not source.file_meta.TransferSyntaxUID.is_compressed, "CT_small.dcm should be uncompressed")
    series_uid = generate_uid()
    for i in range(3):
        ds = copy.deepcopy(source)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID, ds.InstanceNumber = series_uid, i + 1
        x, y, z = (float(v) for v in source.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 5.0 * i]
        ds.save_as(series / f"slice{i}.dcm")
    nifti = work / "in" / "anatomical.nii"
    shutil.copy(Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii", nifti)
    return png, series, nifti


def check_png(source: Path, output: Path) -> None:
    check(output.is_file(), f"{output} missing")
    with Image.open(source) as a, Image.open(output) as b:
        check((a.format, a.size, a.mode) == (b.format, b.size, b.mode), f"{output}: {b.format} {b.size} {b.mode}")


def check_series(source: Path, output: Path) -> None:
    inputs, outputs = sorted(source.iterdir()), sorted(output.iterdir()) if output.is_dir() else []
    check([p.name for p in inputs] == [p.name for p in outputs], f"{output}: {[p.name for p in outputs]}")
    for a_path, b_path in zip(inputs, outputs):
        a, b = pydicom.dcmread(a_path), pydicom.dcmread(b_path)
        for tag in GEOMETRY_TAGS:
            check(a.get(tag) == b.get(tag), f"{b_path}: {tag} {b.get(tag)} != {a.get(tag)}")
        check(b.pixel_array.shape == a.pixel_array.shape, f"{b_path}: pixels {b.pixel_array.shape}")
        check(b.SeriesInstanceUID != a.SeriesInstanceUID, f"{b_path}: the derived series kept the input's UID")


def check_nifti(source: Path, output: Path) -> None:
    check(output.is_file(), f"{output} missing")
    a, b = nib.load(source), nib.load(output)
    check(a.shape == b.shape, f"{output}: shape {b.shape} != {a.shape}")
    check(np.allclose(a.affine, b.affine), f"{output}: affine changed")


def main(work: Path) -> None:
    start = time.monotonic()
    import medical_denoise

    package = Path(medical_denoise.__file__).resolve().parent
    check("site-packages" in package.parts, f"medical_denoise imported from {package}, not from the install")
    bundle = Path(run("medical-denoise", "bundle-path").stdout.strip())
    check(bundle == package / "bundles" / "gan_denoise", f"bundle-path printed {bundle}")
    for rel in (
        "LICENSE",
        "configs/train.yaml",
        "configs/inference.yaml",
        "configs/metadata.json",
        "configs/logging.conf",
        "docs/README.md",
        "models/model.pt",
    ):
        check((bundle / rel).is_file(), f"{bundle / rel} is not in the wheel")
    check(not (bundle / "runs").exists(), "runs/ is in the wheel")
    print("    " + run("medical-denoise", "--version").stdout.strip().replace("\n", "; "))
    check(len(run("medical-denoise", "--help").stdout.splitlines()) <= 24, "--help is longer than a screen")

    png, series, nifti = make_inputs(work)
    out = work / "out"
    run("medical-denoise", "denoise", str(png), str(out / "png"))
    check_png(png, out / "png" / png.name)

    routing = "model" in (yaml.safe_load((bundle / "configs" / "inference.yaml").read_text()) or {})
    refused = routing and not (bundle / "models" / "clinical.pt").is_file()
    print(f"    grayscale: {'refused until models/clinical.pt ships' if refused else 'denoised'}")
    for source, folder, checker in ((series, "dicom", check_series), (nifti, "nifti", check_nifti)):
        # a single pass per slice (no 8-fold self-ensemble) keeps the volume quick; the PNG ran the defaults
        args = ("denoise", str(source), str(out / folder), "--self_ensemble", "False")
        result = run("medical-denoise", *args, expect_ok=not refused)
        if refused:
            check_short_error(result, f"{folder} without the clinical model")
            check(not (out / folder).exists(), f"{out / folder} was left behind")
        else:
            checker(source, out / folder / source.name)

    configs = f"['{bundle}/configs/train.yaml','{bundle}/configs/inference.yaml']"
    run(
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "inference",
        "--bundle_root",
        str(bundle),
        "--config_file",
        configs,
        "--input",
        str(png),
        "--output_dir",
        str(out / "monai"),
    )
    check_png(png, out / "monai" / png.name)

    check_short_error(
        run("medical-denoise", "denoise", str(work / "no.png"), str(out / "e1"), expect_ok=False), "missing file"
    )
    corrupt = work / "in" / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    check_short_error(run("medical-denoise", "denoise", str(corrupt), str(out / "e2"), expect_ok=False), "corrupt file")
    read_only = work / "read_only"
    read_only.mkdir(mode=0o555)
    check_short_error(
        run("medical-denoise", "denoise", str(png), str(read_only), expect_ok=False), "read-only output folder"
    )
    print(f"  checks passed in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=False)
    main(target)

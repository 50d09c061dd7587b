"""Helpers shared by the test modules, as plain names (``tests/conftest.py`` offers them as fixtures too).

Plain names serve module-level constants and ``parametrize`` lists, which fixtures cannot; like MONAI's
``tests/test_utils.py``. Nothing here needs ``../shared``: DICOM files come from pydicom's test data.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

__all__ = [
    "BUNDLE",
    "EVAL",
    "INFER",
    "ROOT",
    "TINY",
    "TINY_DISCRIMINATOR",
    "TINY_NET",
    "TINY_NETWORKS",
    "TRAIN",
    "bundle_command",
    "cli_overrides",
    "dicom_file",
    "make_series",
    "phantom_volume",
    "run_bundle",
]

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "gan_denoise"
#: keyword arguments of a tiny DenoiseUNet / SuperResolutionUNet and ConditionalPatchDiscriminator (seconds per epoch)
TINY_NET = {"channels": (8, 16, 32), "strides": (2, 2), "num_res_units": 1}
TINY_DISCRIMINATOR = {"channels": 8, "num_layers_d": 2}


def cli_overrides(config_id: str, kwargs: Mapping[str, Any]) -> list[str]:
    """``{"channels": (8, 16)}`` -> ``["--<config_id>#channels", "[8,16]"]``: bundle command-line overrides."""
    out = []
    for key, value in kwargs.items():
        value = list(value) if isinstance(value, tuple) else value
        out += [f"--{config_id}#{key}", json.dumps(value, separators=(",", ":"))]
    return out


#: command-line overrides that shrink train.yaml's generator and discriminator to TINY_NET / TINY_DISCRIMINATOR
TINY_NETWORKS = [*cli_overrides("network_def", TINY_NET), *cli_overrides("discriminator_def", TINY_DISCRIMINATOR)]
#: TINY_NETWORKS plus small crops, few crops per image and no loader workers
TINY = [*TINY_NETWORKS, "--patch_size", "[32,32]", "--samples_per_image", "2", "--num_workers", "0"]
TRAIN = ["--config_file", "configs/train.yaml"]
EVAL = ["--config_file", "['configs/train.yaml','configs/evaluate.yaml']"]
INFER = ["--config_file", "['configs/train.yaml','configs/inference.yaml']"]


def bundle_command(*args: str, bundle_root: Path = BUNDLE) -> list[str]:
    """The command line ``python -m monai.bundle ARGS --bundle_root BUNDLE`` (for runs a test starts itself)."""
    return [sys.executable, "-m", "monai.bundle", *args, "--bundle_root", str(bundle_root)]


def run_bundle(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 600, bundle_root: Path = BUNDLE
) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle ARGS --bundle_root BUNDLE`` in the bundle folder, as a user does.

    Args:
        args: the ``monai.bundle`` command and its arguments, e.g. ``"run", "training", *TRAIN``.
        env: the process environment (None: this one).
        timeout: seconds before the run is killed.
        bundle_root: the bundle folder (cwd and ``--bundle_root``).

    Returns:
        the finished process, with ``stdout``/``stderr`` as text.

    Raises:
        AssertionError: the run failed; the message holds the command and the tail of its output.
    """
    cmd = bundle_command(*args, bundle_root=bundle_root)
    proc = subprocess.run(
        cmd, cwd=bundle_root, env=None if env is None else dict(env), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def dicom_file(name: str) -> Path:
    """A pydicom test file; the big ones come from the optional ``pydicom-data`` package (never downloaded).

    Args:
        name: the file name, e.g. ``"CT_small.dcm"``.

    Raises:
        pytest.skip.Exception: the file needs ``pydicom-data``, which is not installed.
    """
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} needs the pydicom-data package")
    return Path(path)


def make_series(
    folder: Path,
    *,
    n: int = 5,
    base: str = "CT_small.dcm",
    iop: Sequence[float] = (1, 0, 0, 0, 1, 0),
    spacing: float = 2.5,
    seed: int = 0,
) -> list[Path]:
    """Write ``n`` modified copies of ``base`` as one series, under shuffled file names.

    Slice k gets ImagePositionPatient = (10, -20, 30) + spacing * k * normal, stored pixels = original + 10 * k,
    its own SOPInstanceUID and a reversed InstanceNumber, so only the position gives the right order.

    Args:
        folder: where the files go (created).
        n: number of slices.
        base: the pydicom test file to copy.
        iop: ImageOrientationPatient (row and column direction cosines); the normal is their cross product.
        spacing: distance between slices along the normal, in mm.
        seed: shuffles the file names.

    Returns:
        the files in slice order (ascending along the normal).
    """
    import pydicom
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    names = np.random.default_rng(seed).permutation(n)
    normal = np.cross(iop[:3], iop[3:])
    series_uid = generate_uid()
    files = []
    for k in range(n):
        ds = pydicom.dcmread(dicom_file(base))
        pixels = ds.pixel_array.astype(np.int32) + 10 * k
        ds.set_pixel_data(np.clip(pixels, -32768, 32767).astype(np.int16), "MONOCHROME2", 16)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImageOrientationPatient = [float(v) for v in iop]
        ds.ImagePositionPatient = [float(v) for v in np.array([10.0, -20.0, 30.0]) + spacing * k * normal]
        ds.InstanceNumber = n - k
        path = folder / f"img_{names[k]:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def phantom_volume(path: Path, slices: int = 6, scale: float = 1000.0) -> np.ndarray:
    """A 64x64xN Shepp-Logan phantom stack (int16) written as NIfTI; each file is its own patient in a split.

    Args:
        path: the ``.nii.gz`` to write.
        slices: slices along the last axis (slice k is the phantom times ``scale * (1 + 0.1 k)``).
        scale: intensity of the phantom's brightest region.
    """
    import nibabel as nib
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    plane = resize(shepp_logan_phantom(), (64, 64), anti_aliasing=True)
    vol = np.stack([plane * scale * (1 + 0.1 * k) for k in range(slices)], axis=-1).round().astype(np.int16)
    nib.save(nib.Nifti1Image(vol, np.diag([0.8, 0.8, 2.0, 1.0])), path)
    return vol

"""The default dataset: real medical images that ship inside installed packages, so training works offline."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)
EMBEDDED_VERSION = "v1"

SOURCES = """# Embedded default images

Written on first use from files that ship with installed packages; each image is its own group, so the
lesion-grouped split keeps them apart.

| file | origin | content |
|---|---|---|
| retina.png | scikit-image `data.retina()` (CC0, Häggström 2014), downscaled to 512x512 | fundus photograph |
| ihc.png | scikit-image `data.immunohistochemistry()` (public domain, Fisher Lab) | IHC-stained tissue |
| cell.png | scikit-image `data.cell()` (CC0, Pietzsch) | microscopy of a cell, grey |
| microaneurysms.png | scikit-image `data.microaneurysms()` (CC BY 4.0, Kälviäinen & Uusitalo DIARETDB1) | retinal crop, grey |
| ct_small.png | pydicom `CT_small.dcm` (pydicom test data, MIT) | CT slice, 1st-99th percentile to 8 bit |
| mr_small.png | pydicom `MR_small.dcm` (pydicom test data, MIT) | MR slice, 1st-99th percentile to 8 bit |
"""


def default_cache_dir() -> Path:
    """``$MEDICAL_DENOISE_CACHE`` or ``$XDG_CACHE_HOME/medical_denoise`` (``~/.cache/medical_denoise``)."""
    if env := os.environ.get("MEDICAL_DENOISE_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "medical_denoise"


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(arr, (1, 99))
    return (np.clip((arr.astype(np.float64) - lo) / max(hi - lo, 1e-6), 0, 1) * 255 + 0.5).astype(np.uint8)


def _embedded_images() -> dict[str, np.ndarray]:
    import pydicom
    import skimage.data
    from pydicom.data import get_testdata_file
    from skimage.transform import resize

    retina = resize(skimage.data.retina(), (512, 512), anti_aliasing=True, preserve_range=True)
    images = {
        "retina": retina.round().astype(np.uint8),
        "ihc": skimage.data.immunohistochemistry(),
        "cell": skimage.data.cell(),
        "microaneurysms": skimage.data.microaneurysms(),
    }
    for name in ("CT_small", "MR_small"):
        images[name.lower()] = _to_uint8(pydicom.dcmread(get_testdata_file(name + ".dcm")).pixel_array)
    return images


def prepare_embedded_dataset(root: str | Path | None = None) -> Path:
    """Write the embedded images as RGB PNGs (once) and return the folder.

    Args:
        root: cache folder (default :func:`default_cache_dir`); the images go to ``root/embedded_v1``.
    """
    target = Path(root or default_cache_dir()) / f"embedded_{EMBEDDED_VERSION}"
    if (target / "SOURCES.md").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("preparing the embedded default dataset in %s", target)
    tmp = Path(tempfile.mkdtemp(prefix=".embedded_", dir=target.parent))
    try:
        for name, arr in _embedded_images().items():
            rgb = np.repeat(arr[..., None], 3, axis=-1) if arr.ndim == 2 else arr[..., :3]
            Image.fromarray(np.ascontiguousarray(rgb)).save(tmp / f"{name}.png")
        (tmp / "SOURCES.md").write_text(SOURCES)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not (target / "SOURCES.md").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_dataset_dir(dataset_dir: str | Path | None) -> str:
    """The dataset folder to use: ``dataset_dir`` itself, or the embedded default when it is empty/None."""
    if dataset_dir in (None, "", "None", "null"):
        return str(prepare_embedded_dataset())
    return str(Path(dataset_dir).expanduser().resolve())

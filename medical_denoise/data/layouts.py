"""Find the images of a dataset folder and the lesion/patient each belongs to.

Supported layouts (detected in this order):

- ``ham10000``: ``HAM10000_metadata.csv`` (``lesion_id``, ``image_id``, ``dx``) + JPEGs, possibly spread over
  several part folders (``HAM10000_images_part_1/2``).
- ``isic_cli``: an ``isic-cli`` download: ``metadata.csv`` with ``isic_id`` (and ``lesion_id``/``patient_id``
  when the archive has them).
- ``isic_challenge``: an ISIC challenge release: a ground-truth CSV with an ``image`` column (one-hot diagnosis
  columns), optionally a metadata CSV with ``image`` and ``lesion_id``.
- ``folder``: any folder of images; each image is its own group. NIfTI files, DICOM files and DICOM series folders
  are listed too (see :func:`medical_denoise.data.clinical.find_clinical_images`; a DICOM PatientID is the group).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from medical_denoise.data.clinical import clinical_format, find_clinical_images
from medical_denoise.data.records import ImageRecord

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
logger = logging.getLogger(__name__)


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"cannot read CSV {path}: {e}") from e


def _index_images(root: Path) -> dict[str, Path]:
    """Map file stem -> path for every image under ``root`` (part folders included)."""
    index: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith("."):
            index.setdefault(path.stem, path)
    return index


def _csv_with_columns(root: Path, required: set[str], preferred: str | None = None) -> Path | None:
    candidates = sorted(root.glob("*.csv"))
    if preferred:
        candidates.sort(key=lambda p: p.name != preferred)
    for path in candidates:
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = set(next(csv.reader(f), []))
        if required <= header:
            return path
    return None


def _records_from_rows(
    root: Path, rows: list[dict[str, str]], id_col: str, csv_path: Path, group_cols: tuple[str, ...], dx_of
) -> tuple[list[ImageRecord], list[str]]:
    index = _index_images(root)
    records, missing = [], []
    for row in rows:
        image_id = (row.get(id_col) or "").strip()
        if not image_id:
            continue
        path = index.get(image_id)
        if path is None:
            missing.append(image_id)
            continue
        group = next((row[c].strip() for c in group_cols if (row.get(c) or "").strip()), image_id)
        records.append(ImageRecord(path.relative_to(root).as_posix(), image_id, group, dx_of(row)))
    return records, missing


def _challenge_dx(row: dict[str, str]) -> str:
    # ground-truth CSVs are one-hot: the diagnosis is the column holding 1
    return next((k for k, v in row.items() if k != "image" and v.strip() in ("1", "1.0")), "")


def check_readable(root: str | Path, records: list[ImageRecord], skip_bad: bool = False) -> list[ImageRecord]:
    """Decode every image once, before training starts, and report all unreadable or blank ones together.

    Args:
        root: dataset folder the record paths are relative to.
        records: images to check.
        skip_bad: drop unreadable images with a warning instead of raising.
    """
    from PIL import Image

    from medical_denoise.io import read_image

    good, bad = [], []
    for r in records:
        path = Path(root) / r.image
        try:
            if path.stat().st_size == 0:
                raise ValueError("empty file")
            if clinical_format(path):
                pixels = read_image(path).array  # DICOM (file or series folder) / NIfTI: the reader training uses
            else:
                with Image.open(path) as im:
                    pixels = np.asarray(im)  # full decode: verify() alone misses truncated JPEG data
            if pixels.size and pixels.min() == pixels.max():
                # a blank capture teaches nothing and usually means a broken export
                raise ValueError(f"constant image (every pixel is {pixels.flat[0]})")
            good.append(r)
        except Exception as e:  # PIL and pydicom raise many types for corrupt data
            # read_image's messages already start with the file (inside a series: the slice that failed)
            bad.append(str(e) if str(e).startswith(str(path)) else f"{path}: {e}")
    if bad:
        message = f"{len(bad)} unreadable or blank image(s) in {root}:\n  " + "\n  ".join(bad)
        if not skip_bad:
            raise ValueError(message + "\n(fix or remove them, or pass skip_bad=True to train without them)")
        logger.warning(message)
    if not good:
        raise ValueError(f"no readable images in {root}")
    return good


def find_images(dataset_dir: str | Path, skip_missing: bool = False) -> tuple[str, list[ImageRecord]]:
    """Detect the layout of ``dataset_dir`` and list its images.

    Args:
        dataset_dir: dataset folder.
        skip_missing: images named by a CSV but absent on disk are skipped with a warning instead of an error.

    Returns:
        the layout name and the records, sorted by image id.
    """
    root = Path(dataset_dir)
    if not root.exists():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"dataset path is not a folder: {root}")

    missing: list[str] = []
    if ham := _csv_with_columns(root, {"lesion_id", "image_id"}, "HAM10000_metadata.csv"):
        layout, csv_path = "ham10000", ham
        records, missing = _records_from_rows(
            root, _read_csv(ham), "image_id", ham, ("lesion_id",), lambda r: (r.get("dx") or "").strip()
        )
    elif cli := _csv_with_columns(root, {"isic_id"}, "metadata.csv"):
        layout, csv_path = "isic_cli", cli
        dx_col = lambda r: (r.get("diagnosis_3") or r.get("diagnosis") or r.get("diagnosis_1") or "").strip()  # noqa: E731
        records, missing = _records_from_rows(root, _read_csv(cli), "isic_id", cli, ("lesion_id", "patient_id"), dx_col)
    elif gt := _csv_with_columns(root, {"image"}):
        layout, csv_path = "isic_challenge", gt
        rows = _read_csv(gt)
        meta = _csv_with_columns(root, {"image", "lesion_id"})
        lesions = {r["image"]: r.get("lesion_id", "") for r in _read_csv(meta)} if meta else {}
        for r in rows:
            r["lesion_id"] = lesions.get(r["image"], "")
        records, missing = _records_from_rows(root, rows, "image", gt, ("lesion_id",), _challenge_dx)
    else:
        layout, csv_path = "folder", None
        records = [
            ImageRecord(p.relative_to(root).as_posix(), p.stem, p.relative_to(root).as_posix())
            for p in _index_images(root).values()
        ]
        photo_ids = {r.id for r in records}
        # a clinical id equal to a photo's stem keeps its suffix: ids seed the evaluation noise and must be unique
        records += [r if r.id not in photo_ids else replace(r, id=r.image) for r in find_clinical_images(root)]

    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        message = f"{csv_path} names {len(missing)} image(s) not found under {root}: {shown}"
        if not skip_missing:
            raise FileNotFoundError(message + " (pass skip_missing=True to train without them)")
        logger.warning(message)
    if not records:
        raise ValueError(f"no images found in {root} (looked for {', '.join(IMAGE_SUFFIXES)}, NIfTI and DICOM files)")
    return layout, sorted(records, key=lambda r: r.id)

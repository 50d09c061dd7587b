"""Geometry of resampled outputs: what a super-resolved image's header must say so it covers the same anatomy.

Convention (pixel centres, as NIfTI affines and DICOM ImagePositionPatient both use): input pixel ``i`` covers
``[i - 1/2, i + 1/2]`` in index units. Zooming an axis by ``scale`` divides the spacing by ``scale`` and moves the
first centre from index 0 to index ``(1/scale - 1) / 2`` of the input grid (a quarter pixel towards the corner for
x2), so the outer edges -- the physical extent -- stay exactly where they were. Only the in-plane axes are zoomed
(2D SR is slice-wise); the slice axis keeps its spacing. See docs/enhancement.md.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import numpy as np

from medical_denoise.io.formats import ImageFormat
from medical_denoise.io.image import LoadedImage

__all__ = ["check_scale", "zoom_affine", "zoom_dicom_dataset", "zoomed_like"]


def check_scale(scale, source: object = "<array>") -> int:
    """``scale`` as an int; ValueError naming ``source`` unless it is a positive integer."""
    if int(scale) != scale or scale < 1:
        raise ValueError(f"{source}: scale must be a positive integer, got {scale!r}")
    return int(scale)


def _scales(scale: float | Sequence[float], n: int) -> np.ndarray:
    s = np.full(n, float(scale)) if np.isscalar(scale) else np.asarray(scale, dtype=np.float64)
    if s.shape != (n,) or not np.all(s > 0):
        raise ValueError(f"scale must be a positive number or {n} of them, got {scale!r}")
    return s


def zoom_affine(affine: np.ndarray, scale: float | Sequence[float]) -> np.ndarray:
    """The voxel-to-world affine of a grid zoomed by ``scale`` along each axis, same physical extent.

    Args:
        affine: ``(n+1, n+1)`` affine of the input grid (NIfTI: voxel indices -> RAS+ mm, pixel centres).
        scale: zoom factor per axis (> 1 enlarges the grid); a scalar applies to all ``n`` axes.
    """
    affine = np.asarray(affine, dtype=np.float64)
    n = affine.shape[0] - 1
    if affine.shape != (n + 1, n + 1) or n < 1:
        raise ValueError(f"affine must be square, got shape {affine.shape}")
    s = _scales(scale, n)
    index_map = np.eye(n + 1)  # new index -> old index
    index_map[:n, :n] = np.diag(1.0 / s)
    index_map[:n, n] = (1.0 / s - 1.0) / 2.0
    return affine @ index_map


def zoom_dicom_dataset(ds, scale: float | Sequence[float]):
    """A deep copy of a pydicom dataset whose in-plane geometry describes pixels zoomed by ``scale``.

    Rows/Columns are multiplied, PixelSpacing (row spacing, column spacing) divided, and ImagePositionPatient (the
    centre of the first pixel) moved along ImageOrientationPatient so the image edges stay in place. The same is done
    inside enhanced multi-frame functional groups (PixelMeasuresSequence, PlanePositionSequence).

    Args:
        ds: a pydicom ``Dataset`` (not modified).
        scale: zoom of (rows, columns), or one number for both; the result must be whole pixels.
    """
    s_row, s_col = _scales(scale, 2)
    out = copy.deepcopy(ds)
    rows, cols = int(ds.Rows) * s_row, int(ds.Columns) * s_col
    if rows != round(rows) or cols != round(cols):
        raise ValueError(f"zooming {int(ds.Rows)}x{int(ds.Columns)} by {scale!r} gives a fractional size")
    out.Rows, out.Columns = int(round(rows)), int(round(cols))

    def fix_spacing(item) -> tuple[float, float] | None:
        if "PixelSpacing" not in item:
            return None
        dr, dc = (float(v) for v in item.PixelSpacing)  # between rows (along a column), between columns
        item.PixelSpacing = [_ds(dr / s_row), _ds(dc / s_col)]
        return dr, dc

    def fix_position(item, spacing: tuple[float, float] | None, orientation) -> None:
        if spacing is None or orientation is None or "ImagePositionPatient" not in item:
            return
        cosines = np.asarray([float(v) for v in orientation], dtype=np.float64)
        along_row, along_col = cosines[:3], cosines[3:]  # direction of increasing column / row index
        dr, dc = spacing
        shift = along_row * dc * (1.0 / s_col - 1.0) / 2.0 + along_col * dr * (1.0 / s_row - 1.0) / 2.0
        position = np.asarray([float(v) for v in item.ImagePositionPatient]) + shift
        item.ImagePositionPatient = [_ds(v) for v in position]

    fix_position(out, fix_spacing(out), ds.get("ImageOrientationPatient"))
    # enhanced multi-frame: geometry lives in functional groups (shared, or per frame)
    shared = (out.get("SharedFunctionalGroupsSequence") or [None])[0]
    shared_spacing = shared_orientation = None
    if shared is not None:
        for item in shared.get("PixelMeasuresSequence") or []:
            shared_spacing = fix_spacing(item)
        for item in shared.get("PlaneOrientationSequence") or []:
            shared_orientation = item.get("ImageOrientationPatient")
    for frame in out.get("PerFrameFunctionalGroupsSequence") or []:
        spacing, orientation = shared_spacing, shared_orientation
        for item in frame.get("PixelMeasuresSequence") or []:
            spacing = fix_spacing(item)
        for item in frame.get("PlaneOrientationSequence") or []:
            orientation = item.get("ImageOrientationPatient")
        for item in frame.get("PlanePositionSequence") or []:
            fix_position(item, spacing, orientation)
    return out


def _ds(value: float) -> str:
    """A DICOM decimal string (max 16 characters) for ``value``."""
    for digits in range(10, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"cannot encode {value} as a DICOM DS")


def zoomed_like(image: LoadedImage, scale: int, array: np.ndarray | None = None) -> LoadedImage:
    """A :class:`LoadedImage` describing ``image`` zoomed in-plane by ``scale``, to pass to ``write_like``.

    Its ``array`` is ``array`` if given, else the input repeated (nearest neighbour) to the new shape; the writer
    needs only the headers and shape. NIfTI: affine zoomed on the first two voxel axes (header follows the affine). DICOM: every dataset zoomed
    by :func:`zoom_dicom_dataset`. PNG/JPEG/TIFF: just larger (an alpha channel is repeated likewise).

    Args:
        image: what :func:`~medical_denoise.io.read_image` returned.
        scale: integer in-plane zoom (the SR factor).
        array: the zoomed pixels when already at hand (e.g. the SR output), which saves building the repeated copy.
    """
    scale = check_scale(scale, image.source)
    shape = (image.array.shape[0], image.array.shape[1] * scale, image.array.shape[2] * scale, *image.array.shape[3:])
    if array is None:
        array = np.repeat(np.repeat(image.array, scale, axis=1), scale, axis=2)
    elif array.shape != shape:
        raise ValueError(f"{image.source}: zoomed array has shape {array.shape}, expected {shape} (scale {scale})")
    meta = dict(image.meta)
    affine, header, datasets = image.affine, image.header, image.datasets
    if image.format == ImageFormat.NIFTI:
        n = image.affine.shape[0] - 1
        affine = zoom_affine(image.affine, [scale, scale] + [1] * (n - 2))
        shape = list(meta["nifti_shape"])
        shape[0], shape[1] = shape[0] * scale, shape[1] * scale
        meta["nifti_shape"] = tuple(shape)
        header = image.header.copy()
        header.set_data_shape(shape)
        zooms = list(header.get_zooms())
        zooms[0], zooms[1] = zooms[0] / scale, zooms[1] / scale
        header.set_zooms(zooms)
    elif image.format == ImageFormat.DICOM:
        datasets = [zoom_dicom_dataset(ds, scale) for ds in image.datasets]
    if meta.get("alpha") is not None:
        meta["alpha"] = np.repeat(np.repeat(meta["alpha"], scale, axis=0), scale, axis=1)
    return dataclasses.replace(image, array=array, affine=affine, header=header, datasets=datasets, meta=meta)

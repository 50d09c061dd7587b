"""The in-memory form of one clinical input (a file or a DICOM series) and what is needed to write it back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medical_denoise.io.formats import ImageFormat
from medical_denoise.io.intensity import IntensityMapping

__all__ = ["LoadedImage"]


@dataclass
class LoadedImage:
    """One image or volume read by :func:`medical_denoise.io.read_image`.

    Layout of ``array`` (float32, channel-first, ORIGINAL units such as HU; a PNG/JPEG/TIFF read with
    ``read_image(..., native=True)`` keeps its stored uint8/uint16 samples instead, as a view of the decoded pixels):

    * 2D images (PNG/JPEG/TIFF page, single-frame DICOM, 2D NIfTI): ``(C, H, W)``; for DICOM H = Rows.
    * volumes: ``(C, *plane, D)``, slices along the LAST axis: DICOM series ``(C, Rows, Columns, slices)``
      ordered along the slice normal, multi-frame DICOM ``(C, Rows, Columns, frames)`` in file order,
      NIfTI ``(1, X, Y, Z)`` as stored on disk, TIFF stacks ``(C, H, W, pages)``.

    Args:
        array: pixel data, see above.
        format: the :class:`~.formats.ImageFormat` it was read from (equal to "dicom", "nifti", "png", "jpeg" or
            "tiff").
        modality: DICOM Modality ("CT", "MR", ...), "photo" for PNG/JPEG/TIFF; NIfTI: "CT" when its header or
            values say so (:func:`~medical_denoise.io.readers.nifti_modality`), else "unknown"; or as given.
        source: the path handed to the reader (a file or a series folder).
        intensity: default mapping of ``array`` to the network range; see :mod:`.intensity`.
        files: every input file the image came from, in slice order (the writer refuses to write over them).
        bit_depth: bits per stored sample (DICOM BitsStored, 8/16 for bitmaps, NIfTI dtype bits).
        datasets: DICOM only: one pydicom dataset per file in slice order, pixel data removed.
        affine: NIfTI only: the image affine.
        header: NIfTI only: the nibabel header (a copy).
        meta: format-specific extras the writer needs (stored dtype, alpha channel, ICC profile, ...).
    """

    array: np.ndarray
    format: ImageFormat
    modality: str
    source: Path
    intensity: IntensityMapping
    files: tuple[Path, ...] = ()
    bit_depth: int | None = None
    datasets: list[Any] = field(default_factory=list)
    affine: np.ndarray | None = None
    header: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        """Number of channels (1 grayscale, 3 RGB)."""
        return int(self.array.shape[0])

    @property
    def is_volume(self) -> bool:
        """Whether ``array`` has a slice axis (its last one)."""
        return self.array.ndim == 4

    @property
    def is_series(self) -> bool:
        """Whether the input was a DICOM series folder (written back as a folder)."""
        return self.format == ImageFormat.DICOM and self.source.is_dir()

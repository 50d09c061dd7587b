"""The image formats the readers and writers know, in one table: the suffixes that name each, and what it is written
back as. Readers (:mod:`.readers`), writers (:mod:`.writers`), folder listing and MONAI Label all look suffixes up
here, so a format is added or changed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

__all__ = [
    "FORMATS",
    "FormatSpec",
    "ImageFormat",
    "file_suffix",
    "format_of_suffix",
    "output_name",
    "output_suffix",
]


class ImageFormat(str, Enum):
    """Format names (``LoadedImage.format``); equal to their plain strings, e.g. ``ImageFormat.DICOM == "dicom"``."""

    DICOM = "dicom"
    NIFTI = "nifti"
    PNG = "png"
    JPEG = "jpeg"
    TIFF = "tiff"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:  # f-strings print "dicom", not "ImageFormat.DICOM", on every Python
        return self.value.__format__(spec)


@dataclass(frozen=True)
class FormatSpec:
    """What names a format and what it is written as.

    Args:
        suffixes: lower-case file suffixes that name the format.
        outputs: suffixes its output may be written with, the default first.
    """

    suffixes: tuple[str, ...]
    outputs: tuple[str, ...]


FORMATS: dict[ImageFormat, FormatSpec] = {
    # files with no suffix are read as DICOM too (readers.DICOM_SUFFIXES): PACS exports often have none
    ImageFormat.DICOM: FormatSpec((".dcm", ".dicom", ".ima"), (".dcm", ".dicom", ".ima")),
    ImageFormat.NIFTI: FormatSpec((".nii.gz", ".nii"), (".nii.gz", ".nii")),
    ImageFormat.PNG: FormatSpec((".png",), (".png",)),
    ImageFormat.JPEG: FormatSpec((".jpg", ".jpeg"), (".png",)),  # JPEG is lossy: written back as lossless PNG
    ImageFormat.TIFF: FormatSpec((".tif", ".tiff"), (".tif", ".tiff")),
}


def file_suffix(path: str | Path) -> str:
    """The lower-case suffix of ``path`` that names a format: ``.nii.gz`` whole, else the last one ("" if none)."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def format_of_suffix(path: str | Path) -> ImageFormat | None:
    """The format ``path``'s suffix names, or None (no suffix, or one no format claims)."""
    suffix = file_suffix(path)
    return next((fmt for fmt, spec in FORMATS.items() if suffix and suffix in spec.suffixes), None)


def output_suffix(fmt: str, source: str | Path) -> str:
    """The suffix an output of format ``fmt`` read from ``source`` gets: the source's own when the format may be
    written with it (``.nii`` stays ``.nii``), else the format's default (JPEG becomes ``.png``)."""
    spec = FORMATS[ImageFormat(fmt)]
    own = file_suffix(source)
    return own if own in spec.outputs else spec.outputs[0]


def output_name(fmt: str, source: str | Path) -> str:
    """The name an output of ``source`` gets in an output folder: the source's own, unless its suffix names a format
    that is written with another one (``photo.jpg`` becomes ``photo.png``). Series folders and suffix-less DICOM files
    keep their names."""
    name = Path(source).name
    own = file_suffix(name)
    spec = FORMATS[ImageFormat(fmt)]
    if own in spec.suffixes and own not in spec.outputs:
        return name[: -len(own)] + spec.outputs[0]
    return name

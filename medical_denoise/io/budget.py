"""Memory budget of one inference input, judged from its header before anything is decoded.

* PNG/JPEG/TIFF run in tiles (:mod:`.tiled`): what grows with the image is the stored input and output samples
  plus the decoder's copy (:func:`~medical_denoise.io.tiled.bytes_per_pixel`).
* DICOM series and NIfTI volumes are read whole, mapped and written whole (the 2.5D model needs each slice's
  neighbours): :data:`VOLUME_BYTES_PER_VOXEL` bytes per voxel, measured (docs/performance.md).

An input over ``max_memory_gb`` is refused in one line that names the file, the estimate and the fix.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medical_denoise.io.formats import ImageFormat
from medical_denoise.io.readers import guess_format, read_dicom_header
from medical_denoise.io.tiled import BASE_MEMORY_GB, bytes_per_pixel, estimate_memory

__all__ = ["MAX_MEMORY_GB", "VOLUME_BYTES_PER_VOXEL", "check_memory_budget", "pillow_limit"]

#: default memory budget (GiB) of one input, see :func:`denoise_path`'s ``max_memory_gb``: with the tiled path an
#: 8-bit RGB image of up to about 460 megapixels fits, and a 512 x 512 CT of about 390 slices (docs/performance.md).
MAX_MEMORY_GB = 4.0
# Pillow mode -> (channels of the read image, bytes per stored sample, bytes per pixel of Pillow's own copies while
# decoding): RGB is stored as 4 bytes per pixel; alpha, palette and CMYK images are converted (a second copy), and
# the alpha plane is kept beside the pixels
_PILLOW_MODES = {
    "1": (1, 1, 2), "L": (1, 1, 1), "LA": (1, 1, 6), "I;16": (1, 2, 2), "I;16B": (1, 2, 2), "I;16L": (1, 2, 2),
    "I": (1, 2, 4), "P": (3, 1, 9), "RGB": (3, 1, 4), "RGBA": (3, 1, 9), "CMYK": (3, 1, 8), "YCbCr": (3, 1, 8),
}  # fmt: skip


def _header(path: Path, fmt: str) -> tuple[int, int, int, int, str] | None:
    """(pixels, channels, bytes per sample, decoder bytes per pixel, description) of a PNG/JPEG/TIFF (``fmt``) from
    its header, with Pillow's decompression-bomb check off (the caller judges the size); None if unreadable."""
    if fmt == ImageFormat.TIFF:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape, axes, dtype = series.shape, str(series.axes), np.dtype(series.dtype)
        except Exception:  # noqa: BLE001  (read_image reports an unreadable file)
            return None
        sizes = dict(zip(axes, (int(n) for n in shape)))
        channels = sizes.get("S", 1)
        count = math.prod(n for axis, n in sizes.items() if axis != "S")
        pages = count // max(1, sizes.get("Y", 1) * sizes.get("X", 1))
        what = f"{sizes.get('X', '?')} x {sizes.get('Y', '?')}" + (f" x {pages} pages" if pages > 1 else "")
        return count, channels, dtype.itemsize, 0, f"{what} {channels}-channel {8 * dtype.itemsize}-bit TIFF"
    from PIL import Image

    with pillow_limit(None, lift=True):
        try:
            with Image.open(path, formats=("PNG", "JPEG")) as im:  # reads the header only
                (w, h), mode = im.size, im.mode
        except Exception:  # noqa: BLE001  (read_image reports an unreadable file)
            return None
    channels, sample, decoder = _PILLOW_MODES.get(mode, (3, 1, 9))
    return int(w) * int(h), channels, sample, decoder, f"{w} x {h} {mode} {fmt.upper()}"


def _check_pixel_budget(path: Path, fmt: str, max_pixels: int | None, max_memory_gb: float | None) -> int | None:
    """Refuse a PNG/JPEG/TIFF (``fmt``) over the budgets from its header, before it is decoded, in one line naming
    the fix.

    Returns:
        the pixel count of an accepted PNG/JPEG under a budget (Pillow's limit is raised to it for decoding), else
        None (no budget: Pillow's own decompression-bomb limit applies, and its refusal is reported likewise).
    """
    if max_pixels is None and max_memory_gb is None:
        if fmt != ImageFormat.TIFF:
            _check_pillow_limit(path)
        return None
    header = _header(path, fmt)
    if header is None:
        return None
    count, channels, sample, decoder, what = header
    if max_pixels is not None and count > max_pixels:
        raise ValueError(
            f"{path}: {count} pixels exceed the max_pixels budget ({max_pixels}); refused before decoding: raise "
            "max_pixels (or set it to null) or crop the image."
        )
    if max_memory_gb is not None:
        per_pixel = bytes_per_pixel(channels, sample, decoder)
        need = estimate_memory(count, channels, sample, decoder)
        if need > max_memory_gb:
            raise ValueError(
                f"{path}: {what} ({count / 1e6:.0f} megapixels) needs about {need:.1f} GiB ({per_pixel} bytes per "
                f"pixel + {BASE_MEMORY_GB:g} GiB), over the max_memory_gb budget of {max_memory_gb:g}; refused "
                "before decoding: raise max_memory_gb if this machine has the memory, or split the image."
            )
    return count


def _check_pillow_limit(path: Path) -> None:
    """Without a budget: Pillow's own decompression-bomb refusal (twice ``MAX_IMAGE_PIXELS``) of a PNG/JPEG, before
    decoding."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=("PNG", "JPEG")):  # reads the header only
                pass
    except Image.DecompressionBombError as e:
        raise ValueError(
            f"{path}: refused before decoding (no max_memory_gb or max_pixels budget set): Pillow: {e} Set a budget "
            "(max_memory_gb) or crop the image."
        ) from None
    except Exception:  # noqa: BLE001  (read_image reports an unreadable file)
        return


@contextlib.contextmanager
def pillow_limit(pixels: int | None, lift: bool = False):
    """Pillow's decompression-bomb limit for a block: off (``lift``), or raised to ``pixels``, an image the budget
    accepted (never lowered); restored afterwards."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    if lift:
        Image.MAX_IMAGE_PIXELS = None
    elif pixels is not None and old is not None and pixels > old:
        Image.MAX_IMAGE_PIXELS = pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


#: resident bytes per voxel of a DICOM/NIfTI volume through inference, above ``BASE_MEMORY_GB``: the int16 NIfTI CT
#: benchmark peaked at 2.73 GiB with 300 and 4.09 GiB with 480 slices of 512 x 512 (docs/clinical_results.md), a
#: slope of 31 bytes per voxel; with the 1 GiB base the estimate errs on the safe side (3.27 and 4.63 GiB)
VOLUME_BYTES_PER_VOXEL = 31


def check_memory_budget(
    path: Path, files: Sequence[Path] = (), max_pixels: int | None = None, max_memory_gb: float | None = MAX_MEMORY_GB
) -> int | None:
    """Refuse an input whose estimated peak memory exceeds ``max_memory_gb`` (or pixels ``max_pixels``), from its
    header, before it is decoded.

    Args:
        path: the input file, or the folder of a DICOM series.
        files: the series' files when ``path`` is a folder.
        max_pixels: cap on PNG/JPEG/TIFF pixels (pages x rows x columns); None: none.
        max_memory_gb: budget (GiB) of the estimated peak resident memory; None: none.

    Returns:
        the pixel count of an accepted PNG/JPEG under a budget (give it to :func:`pillow_limit` for decoding), else
        None.

    Raises:
        ValueError: over a budget, in one line naming the file and the fix.
    """
    # decided once: it may read the DICOM magic
    fmt = ImageFormat.DICOM if files or path.is_dir() else guess_format(path)
    if fmt in (ImageFormat.DICOM, ImageFormat.NIFTI):
        if max_memory_gb is not None:
            _check_volume_budget(path, fmt, list(files), max_memory_gb)
        return None
    if not path.is_file():
        return None
    return _check_pixel_budget(path, fmt, max_pixels, max_memory_gb)


def _volume_header(path: Path, fmt: str, files: list[Path]) -> tuple[tuple[int, ...], str] | None:
    """(rows, columns, slices) and a description of a NIfTI volume or DICOM file/series (``fmt``) from headers only;
    None when a header cannot be read (the reader then reports the file)."""
    try:
        if fmt == ImageFormat.NIFTI:
            import nibabel as nib

            shape = tuple(int(n) for n in nib.load(path).shape)  # lazy: the header only
            dims = (*shape[:3], *(1,) * (3 - len(shape[:3])))
            return dims, f"{' x '.join(map(str, shape))} NIfTI"
        ds = read_dicom_header(files[0] if files else path)
        frames = int(ds.get("NumberOfFrames", 1) or 1) * max(1, len(files))
        dims = (int(ds.Rows), int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1), frames)
        return dims, f"{ds.Rows} x {ds.Columns} x {frames} DICOM {'series' if files else 'file'}"
    except Exception:  # noqa: BLE001  (nibabel/pydicom raise many types on damaged files; the reader reports them)
        return None


def _check_volume_budget(path: Path, fmt: str, files: list[Path], max_memory_gb: float) -> None:
    header = _volume_header(path, fmt, files)
    if header is None:
        return
    (rows, cols, slices), what = header
    need = BASE_MEMORY_GB + rows * cols * slices * VOLUME_BYTES_PER_VOXEL / 2**30
    if need > max_memory_gb:
        fit = int((max_memory_gb - BASE_MEMORY_GB) * 2**30 // (rows * cols * VOLUME_BYTES_PER_VOXEL))
        raise ValueError(
            f"{path}: {what} ({rows * cols * slices / 1e6:.0f} M voxels) needs about {need:.1f} GiB "
            f"({VOLUME_BYTES_PER_VOXEL} bytes per voxel + {BASE_MEMORY_GB:g} GiB), over the max_memory_gb budget of "
            f"{max_memory_gb:g}; refused before reading: raise max_memory_gb if this machine has the memory, or "
            f"split the volume (about {fit} slices of this size fit)."
        )

"""Read DICOM (file, multi-frame, series folder), NIfTI, PNG/JPEG and TIFF into a :class:`LoadedImage`.

Every failure is a ``FileNotFoundError`` or ``ValueError`` whose message starts with the offending path.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medical_denoise.io.formats import FORMATS, ImageFormat, file_suffix, format_of_suffix
from medical_denoise.io.image import LoadedImage
from medical_denoise.io.intensity import IntensityMapping, default_intensity_mapping, looks_like_hu

__all__ = [
    "DICOM_NAMED_SUFFIXES",
    "DICOM_SUFFIXES",
    "dicom_frame_rescale",
    "guess_format",
    "is_dicom_file",
    "is_ignored_name",
    "nifti_modality",
    "read_dicom_header",
    "read_image",
]

#: suffixes that name a file as DICOM.
DICOM_NAMED_SUFFIXES = FORMATS[ImageFormat.DICOM].suffixes
#: suffixes read as DICOM even without the 128-byte preamble ("" = no suffix, common in PACS exports).
DICOM_SUFFIXES = (*DICOM_NAMED_SUFFIXES, "")
logger = logging.getLogger(__name__)
# a NIfTI header's descrip/intent_name naming CT or Hounsfield units: the upper-case words, so "ctx", "Thu" or
# "CTRL" do not count ("hounsfield" is checked separately, in any case)
_CT_HEADER = re.compile(r"(?<![A-Za-z])(CT|HU)(?![A-Za-z])")
# names that may sit next to a series and are not slices
_IGNORED_NAMES = {"DICOMDIR", "LICENSE", "LICENSE.TXT", "README", "README.TXT", "README.MD", "THUMBS.DB"}


def is_ignored_name(path: Path) -> bool:
    """Whether ``path`` is hidden or a file that sits next to a series without being a slice (DICOMDIR, README...)."""
    return path.name.startswith(".") or path.name.upper() in _IGNORED_NAMES


def _may_lack_preamble(path: Path) -> bool:
    """A file named as DICOM, or with no suffix, is read as DICOM without the preamble (common in older exports)."""
    return file_suffix(path) in DICOM_SUFFIXES


def read_dicom_header(path: Path, **kwargs: Any):
    """The header of a DICOM file (no pixel data), read as :func:`read_image` reads it: a file named as DICOM (or
    with no suffix) may lack the preamble, common for older exports. ``kwargs`` go to ``pydicom.dcmread``."""
    import pydicom

    return pydicom.dcmread(path, stop_before_pixels=True, force=_may_lack_preamble(path), **kwargs)


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` starts with the DICOM preamble + ``DICM`` magic."""
    from pydicom.misc import is_dicom

    try:
        return is_dicom(path)
    except OSError:
        return False


def guess_format(path: str | Path) -> ImageFormat:
    """Format of ``path`` from its suffix (:data:`~.formats.FORMATS`; a folder is a DICOM series, a file with no
    suffix DICOM, else the DICOM magic decides), or ``ValueError``."""
    path = Path(path)
    if path.is_dir():
        return ImageFormat.DICOM
    fmt = format_of_suffix(path)
    if fmt is not None:
        return fmt
    suffix = file_suffix(path)
    if suffix in DICOM_SUFFIXES or is_dicom_file(path):
        return ImageFormat.DICOM
    raise ValueError(
        f"{path}: unsupported file type {suffix!r}; expected DICOM, NIfTI (.nii/.nii.gz), PNG, JPEG or TIFF."
    )


def read_image(
    path: str | Path,
    *,
    volume_index: int | None = None,
    modality: str | None = None,
    files: Sequence[str | Path] | None = None,
    native: bool = False,
) -> LoadedImage:
    """Read one clinical image, volume or DICOM series folder.

    Args:
        path: a DICOM file (single- or multi-frame), a folder holding exactly one DICOM series, a NIfTI
            file, or a PNG/JPEG/TIFF file.
        volume_index: for 4D NIfTI, which volume (last axis) to read; required when there are several.
        modality: overrides the modality (e.g. "CT" for a NIfTI in HU, or "MR" for a NIfTI the CT rule
            mistook); it selects the default intensity mapping. Without it a NIfTI is "CT" when its header
            says so or its values look like HU (:func:`nifti_modality`), else "unknown".
        files: for a DICOM series folder, the files of its one series (default: every file in it), so a folder
            that also holds other images or series can give one series.
        native: PNG/JPEG/TIFF only: ``array`` keeps the stored uint8/uint16 samples, as a channel-first view of the
            decoded pixels (3 bytes per RGB pixel instead of 12 for float32), for the tiled inference path
            (:mod:`medical_denoise.io.tiled`); ignored for DICOM and NIfTI.

    Returns:
        the image, see :class:`LoadedImage` for the array layout.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unsupported, empty, truncated or corrupt input; 4D NIfTI without ``volume_index``;
            NaN/Inf voxels; a folder mixing several series.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes).")
    fmt = guess_format(path)
    if files is not None and not path.is_dir():
        raise ValueError(f"{path}: files= selects the slices of a series folder; {path} is not a folder.")
    if fmt == ImageFormat.DICOM:
        image = _read_dicom(path, files)
    elif fmt == ImageFormat.NIFTI:
        image = _read_nifti(path, volume_index)
    elif fmt == ImageFormat.TIFF:
        image = _read_tiff(path, native)
    else:
        image = _read_bitmap(path, native)
    if image.array.dtype.kind == "f" and not np.isfinite(image.array).all():  # stored integers are always finite
        bad = int(np.size(image.array) - np.count_nonzero(np.isfinite(image.array)))
        raise ValueError(f"{path}: {bad} of {image.array.size} values are NaN or Inf; cannot denoise.")
    if modality is not None:
        image.modality = str(modality)
        image.intensity = _default_mapping(image)
    return image


def nifti_modality(header, array: np.ndarray) -> tuple[str, str]:
    """Modality of a NIfTI image, which has no modality tag, and why.

    Rule, in order: ``descrip`` or ``intent_name`` of the header names CT or HU (the upper-case words "CT" or
    "HU", or "hounsfield" in any case) -> "CT"; values look like HU
    (:func:`~medical_denoise.io.intensity.looks_like_hu`: integer-valued, minimum at air or padding) -> "CT";
    else "unknown" (percentile mapping). Override with ``read_image(..., modality=...)``.

    Args:
        header: the nibabel header.
        array: the voxels in original units (after scale factors).

    Returns:
        (modality, reason) -- the reason is logged.
    """
    for field in ("descrip", "intent_name"):
        try:
            text = bytes(np.asarray(header[field]).item()).decode("latin-1").strip("\x00 ")
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
        if _CT_HEADER.search(text) or "hounsfield" in text.lower():
            return "CT", f"header {field} {text!r}"
    if looks_like_hu(array):
        return "CT", f"values look like HU (integers, minimum {float(np.min(array)):g})"
    return "unknown", "no CT/HU in the header, values not HU-like"


def _default_mapping(image: LoadedImage) -> IntensityMapping:
    photo = image.format in (ImageFormat.PNG, ImageFormat.JPEG, ImageFormat.TIFF) or (
        image.format == ImageFormat.DICOM and image.channels == 3
    )
    return default_intensity_mapping(image.array, image.modality, bit_depth=image.bit_depth, photo=photo)


# ----------------------------------------------------------------------------------------------- DICOM


def _dcmread(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        if not _may_lack_preamble(path):
            raise ValueError(f"{path} is not a DICOM file.") from None
    except Exception as e:  # pydicom raises many types on damaged files
        raise ValueError(f"{path}: cannot read DICOM file ({e}).") from e
    try:  # no preamble: common for older exports with a .dcm suffix
        return pydicom.dcmread(path, force=True)
    except Exception as e:
        raise ValueError(f"{path} is not a DICOM file ({e}).") from e


def _functional_group_value(ds, frame: int, sequence: str, keyword: str):
    """``keyword`` of ``sequence`` for one frame of an enhanced multi-frame dataset, else None."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items and len(items) > index:
            inner = items[index].get(sequence)
            if inner and keyword in inner[0]:
                return inner[0][keyword].value
    return None


def dicom_frame_rescale(ds, nframes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame RescaleSlope and RescaleIntercept (stored value -> original units, e.g. HU).

    Enhanced multi-frame datasets keep them in the functional groups; classic ones at the top level;
    absent means identity.
    """
    slopes = np.ones(nframes, dtype=np.float64)
    inters = np.zeros(nframes, dtype=np.float64)
    for f in range(nframes):
        slope = _functional_group_value(ds, f, "PixelValueTransformationSequence", "RescaleSlope")
        inter = _functional_group_value(ds, f, "PixelValueTransformationSequence", "RescaleIntercept")
        slope = ds.get("RescaleSlope") if slope is None else slope
        inter = ds.get("RescaleIntercept") if inter is None else inter
        slopes[f] = 1.0 if slope in (None, "") else float(slope)
        inters[f] = 0.0 if inter in (None, "") else float(inter)
    if np.any(slopes == 0):
        raise ValueError("RescaleSlope is 0")
    return slopes, inters


def _decode_dicom(ds, path: Path) -> np.ndarray:
    """Pixels of one dataset in original units, shaped (C, H, W, frames)."""
    if "PixelData" not in ds:
        raise ValueError(f"{path}: DICOM file has no Pixel Data (not an image).")
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is not None and syntax.is_transfer_syntax and not syntax.is_little_endian:
        # pydicom cannot re-encode big-endian binary elements safely, so the output could not be written
        raise ValueError(f"{path}: big-endian transfer syntax {syntax.name} (retired) is not supported.")
    bits = _int_tag(ds, "BitsAllocated", 0, path)
    if bits not in (8, 16):
        raise ValueError(f"{path}: BitsAllocated {bits} is not supported (only 8 and 16).")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR":
        raise ValueError(f"{path}: PALETTE COLOR DICOM is not supported (pixels are palette indices).")
    if ds.get("ModalityLUTSequence"):
        raise ValueError(f"{path}: a Modality LUT Sequence is not supported (it is not invertible).")
    samples = _int_tag(ds, "SamplesPerPixel", 1, path)
    if samples not in (1, 3):
        raise ValueError(f"{path}: SamplesPerPixel {samples} is not supported (only 1 and 3).")
    nframes = _int_tag(ds, "NumberOfFrames", 1, path) or 1
    try:
        stored = ds.pixel_array  # YBR colour is converted to RGB by pydicom
        slopes, inters = dicom_frame_rescale(ds, nframes)
    except Exception as e:  # truncated data, unsupported or corrupt compression, ...
        raise ValueError(f"{path}: cannot decode DICOM pixel data ({e}).") from e
    arr = np.asarray(stored).reshape(nframes, int(ds.Rows), int(ds.Columns), samples)
    values = arr.astype(np.float64) * slopes[:, None, None, None] + inters[:, None, None, None]
    return np.ascontiguousarray(values.transpose(3, 1, 2, 0), dtype=np.float32)


def _int_tag(ds, name: str, default: int, path: Path) -> int:
    """An integer header value; ``default`` when absent or empty; a named error when it is not a number."""
    try:
        value = ds.get(name)
    except ValueError as e:  # pydicom converts IS/US values on access
        raise ValueError(f"{path}: {name} is not a number ({e}).") from e
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {name} {value!r} is not a number.") from e


def _strip_pixels(ds):
    """Keep the header only: the writer sets new pixels, and this halves memory."""
    ds = copy.copy(ds)
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            del ds[keyword]
    for _ in ds.iterall():  # decode raw elements now: files whose VR mode lies are re-encoded on write
        pass
    return ds


def _series_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not is_ignored_name(p))
    if not files:
        raise ValueError(f"{folder}: folder holds no DICOM files.")
    return files


def _slice_order(datasets: Sequence, files: Sequence[Path]) -> list[int]:
    """Order by ImagePositionPatient projected on the slice normal; else InstanceNumber; else file name."""
    index = list(range(len(datasets)))
    try:
        iops = np.array([[float(v) for v in ds.ImageOrientationPatient] for ds in datasets])
        ipps = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
        if iops.shape[1] != 6 or ipps.shape[1] != 3 or not np.allclose(iops, iops[0], atol=1e-4):
            raise ValueError("missing or inconsistent geometry")
        normal = np.cross(iops[0, :3], iops[0, 3:])
        positions = ipps @ normal
        instance = [_instance_number(ds) or 0 for ds in datasets]
        return sorted(index, key=lambda i: (positions[i], instance[i], files[i].name))
    except (AttributeError, ValueError, TypeError, IndexError):
        pass
    numbers = [_instance_number(ds) for ds in datasets]
    if all(n is not None for n in numbers):
        return sorted(index, key=lambda i: (numbers[i], files[i].name))
    return sorted(index, key=lambda i: files[i].name)


def _instance_number(ds) -> int | None:
    """InstanceNumber as an integer; None when absent, empty (a legal type 2 value) or not a number."""
    try:
        return int(ds.get("InstanceNumber"))
    except (TypeError, ValueError):
        return None


def _read_dicom(path: Path, files: Sequence[str | Path] | None = None) -> LoadedImage:
    if files is not None:
        files = sorted(Path(f) for f in files)
    else:
        files = _series_files(path) if path.is_dir() else [path]
    datasets = [_dcmread(f) for f in files]
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
    if len(series) > 1:
        listed = ", ".join(sorted(series)[:4])
        raise ValueError(
            f"{path}: folder mixes {len(series)} DICOM series ({listed}); put each series in its own folder."
        )
    multi = [f for f, ds in zip(files, datasets) if _int_tag(ds, "NumberOfFrames", 1, f) > 1]
    if multi and len(files) > 1:
        raise ValueError(f"{path}: series folder holds multi-frame file {multi[0].name}; pass that file directly.")
    order = _slice_order(datasets, files)
    files = [files[i] for i in order]
    datasets = [datasets[i] for i in order]
    volumes = [_decode_dicom(ds, f) for ds, f in zip(datasets, files)]
    shape = volumes[0].shape[:3]
    for f, vol in zip(files, volumes):
        if vol.shape[:3] != shape:
            raise ValueError(
                f"{f}: (channels, rows, columns) {vol.shape[:3]} differ from {shape} of {files[0].name} "
                "in the same series."
            )
    array = np.concatenate(volumes, axis=-1) if len(volumes) > 1 else volumes[0]
    if not path.is_dir() and array.shape[-1] == 1:
        array = array[..., 0]  # single frame file: a 2D image
    first = datasets[0]
    image = LoadedImage(
        array=array,
        format=ImageFormat.DICOM,
        modality=str(first.get("Modality", "OT") or "OT"),
        source=path,
        intensity=IntensityMapping(0.0, 1.0),
        files=tuple(files),
        bit_depth=int(first.get("BitsStored", first.get("BitsAllocated", 16))),
        datasets=[_strip_pixels(ds) for ds in datasets],
        meta={"transfer_syntaxes": [str(ds.file_meta.get("TransferSyntaxUID", "")) for ds in datasets]},
    )
    image.intensity = _default_mapping(image)
    return image


# ----------------------------------------------------------------------------------------------- NIfTI


def _read_nifti(path: Path, volume_index: int | None) -> LoadedImage:
    import nibabel as nib

    try:
        img = nib.load(path)
    except Exception as e:
        raise ValueError(f"{path}: cannot read NIfTI file ({e}).") from e
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ValueError(f"{path}: not a NIfTI-1/2 image ({type(img).__name__}).")
    shape = tuple(img.shape)
    dtype = img.get_data_dtype()
    if dtype.fields is not None or dtype.kind == "c":
        raise ValueError(f"{path}: NIfTI data type {dtype} (RGB/complex) is not supported.")
    meta: dict = {"nifti_shape": shape, "nifti_dtype": dtype.str, "volume_index": None}
    if len(shape) == 4:
        if volume_index is None and shape[3] != 1:
            raise ValueError(
                f"{path}: 4D NIfTI with shape {shape}; pick one volume with volume_index 0..{shape[3] - 1} "
                "(inference: --volume_index N)."
            )
        volume_index = 0 if volume_index is None else volume_index
        if not 0 <= volume_index < shape[3]:
            raise ValueError(f"{path}: volume_index {volume_index} is out of range for shape {shape}.")
        slicer: tuple = (slice(None),) * 3 + (volume_index,)
        meta["volume_index"] = volume_index if shape[3] != 1 else None
    elif len(shape) in (2, 3):
        slicer = (slice(None),) * len(shape)
    else:
        raise ValueError(f"{path}: NIfTI with {len(shape)} dimensions {shape} is not supported (2D, 3D or 4D).")
    try:
        data = np.asarray(img.dataobj[slicer], dtype=np.float64)  # applies scl_slope / scl_inter
    except Exception as e:  # truncated .nii.gz, short data block
        raise ValueError(f"{path}: cannot read NIfTI data ({e}).") from e
    slope, inter = img.dataobj.slope, img.dataobj.inter
    meta["nifti_slope"] = 1.0 if slope is None or not np.isfinite(slope) else float(slope)
    meta["nifti_inter"] = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    array = data.astype(np.float32)[None]
    modality, reason = nifti_modality(img.header, array) if np.isfinite(array).all() else ("unknown", "NaN/Inf")
    logger.info("%s: NIfTI modality %s (%s)", path, modality, reason)
    image = LoadedImage(
        array=array,
        format=ImageFormat.NIFTI,
        modality=modality,
        source=path,
        intensity=IntensityMapping(0.0, 1.0),
        files=(path,),
        bit_depth=int(dtype.itemsize * 8),
        affine=np.array(img.affine, dtype=np.float64),
        header=img.header.copy(),
        meta=meta,
    )
    if np.isfinite(image.array).all():
        image.intensity = _default_mapping(image)
    return image


# -------------------------------------------------------------------------------------------- bitmaps


def _png_ihdr(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) from a PNG's IHDR chunk; Pillow hides the 16-bit colour case."""
    with open(path, "rb") as f:
        head = f.read(26)
    return head[24], head[25]


def _read_bitmap(path: Path, native: bool = False) -> LoadedImage:
    fmt, pixels, meta = _decode_bitmap(path)  # Pillow's own copy of the pixels is gone once this returns
    return _bitmap_image(path, fmt, pixels, meta, native)


def _decode_bitmap(path: Path) -> tuple[ImageFormat, np.ndarray, dict]:
    """(format, (H, W[, 3]) uint8/uint16 pixels, meta) of a PNG/JPEG; at most one Pillow copy besides the array."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path, formats=("PNG", "JPEG")) as im:
            im.load()
            # only the two plugins may open it; the JPEG one reports camera multi-picture JPEGs as "MPO"
            fmt = ImageFormat.PNG if im.format == "PNG" else ImageFormat.JPEG
            ImageOps.exif_transpose(im, in_place=True)  # write back what a viewer shows; no copy when upright
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{path}: not a readable PNG or JPEG image ({e}).") from e
    if fmt == ImageFormat.PNG:
        depth, colour_type = _png_ihdr(path)
        if depth == 16 and colour_type != 0:
            raise ValueError(f"{path}: 16-bit colour PNG is not supported (only 16-bit grayscale).")
    meta: dict = {"icc_profile": im.info.get("icc_profile"), "dpi": im.info.get("dpi"), "alpha": None}
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("1", "CMYK", "YCbCr"):
        im = im.convert("L" if im.mode == "1" else "RGB")
    if im.mode in ("LA", "RGBA"):
        meta["alpha"] = np.asarray(im.getchannel("A"))  # kept as is, not denoised
        im = im.convert(im.mode[:-1])
    if im.mode == "L" or im.mode == "RGB":
        pixels = _asarray(im).astype(np.uint8, copy=False)
    elif im.mode.startswith("I"):  # 16-bit grayscale PNG ("I;16" or "I")
        raw = _asarray(im)
        if raw.min() < 0 or raw.max() > 65535:
            raise ValueError(f"{path}: {im.mode} image values out of 16-bit range.")
        pixels = raw.astype(np.uint16, copy=False)
    else:
        raise ValueError(f"{path}: image mode {im.mode} is not supported.")
    return fmt, pixels, meta


def _asarray(im, band_bytes: int = 2**22) -> np.ndarray:
    """``np.asarray(im)`` filled band by band: numpy's own conversion goes through two whole-image byte strings
    (6 bytes per RGB pixel next to Pillow's 4 and the array's 3); bands of about ``band_bytes`` of Pillow's rows
    leave just Pillow's copy beside the array."""
    width, height = im.size
    rows = max(1, band_bytes // max(1, 4 * width))
    if height <= rows:
        return np.asarray(im)
    first = np.asarray(im.crop((0, 0, width, rows)))
    out = np.empty((height, *first.shape[1:]), dtype=first.dtype)
    out[:rows] = first
    for top in range(rows, height, rows):
        out[top : top + rows] = np.asarray(im.crop((0, top, width, min(height, top + rows))))
    return out


def _bitmap_image(path: Path, fmt: ImageFormat, pixels: np.ndarray, meta: dict, native: bool = False) -> LoadedImage:
    """(H, W[, 3]) or (pages, H, W[, 3]) unsigned pixels -> LoadedImage (``native``: a view of ``pixels``)."""
    meta["dtype"] = pixels.dtype.str
    colour = meta.pop("colour", pixels.ndim == 3 and pixels.shape[-1] == 3)
    arr = pixels if colour else pixels[..., None]
    # (H, W, C) -> (C, H, W); (P, H, W, C) -> (C, H, W, P)
    arr = np.moveaxis(arr, -1, 0) if arr.ndim == 3 else arr.transpose(3, 1, 2, 0)
    image = LoadedImage(
        array=arr if native else np.ascontiguousarray(arr, dtype=np.float32),
        format=fmt,
        modality="photo",
        source=path,
        intensity=IntensityMapping(0.0, 1.0),
        files=(path,),
        bit_depth=int(pixels.dtype.itemsize * 8),
        meta=meta,
    )
    image.intensity = _default_mapping(image)
    return image


def _read_tiff(path: Path, native: bool = False) -> LoadedImage:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = str(series.axes)
            pixels = series.asarray()
            page = tif.pages[0]
            meta: dict = {"resolution": page.resolution, "resolutionunit": int(page.resolutionunit)}
    except Exception as e:
        raise ValueError(f"{path}: not a readable TIFF image ({e}).") from e
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: TIFF data type {pixels.dtype} is not supported (only 8/16-bit unsigned).")
    if "S" in axes:  # samples last, whatever the planar configuration
        pixels = np.moveaxis(pixels, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    colour = axes.endswith("S")
    if colour and pixels.shape[-1] != 3:
        raise ValueError(f"{path}: TIFF with {pixels.shape[-1]} samples per pixel is not supported (1 or 3).")
    spatial = len(axes) - int(colour)
    if spatial not in (2, 3):
        raise ValueError(f"{path}: TIFF with axes {axes!r} is not supported (a 2D image or one stack of pages).")
    meta["colour"] = colour
    meta["axes"] = axes
    return _bitmap_image(path, ImageFormat.TIFF, pixels, meta, native)

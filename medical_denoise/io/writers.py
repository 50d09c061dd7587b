"""Write a processed array back in the format a :class:`LoadedImage` was read from.

Outputs are atomic (:func:`medical_denoise.atomic.atomic_paths`): each file is written to a hidden temp file in its
destination folder and moved into place with ``os.replace`` only once every file of the output has been written; on
failure the temp files (and a folder this call created) are removed. Outputs get the permissions a plain ``open()``
would give (umask), also when they replace a file. Inputs are never overwritten.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medical_denoise.atomic import atomic_paths
from medical_denoise.io.formats import FORMATS, ImageFormat, output_name
from medical_denoise.io.image import LoadedImage
from medical_denoise.io.readers import dicom_frame_rescale

__all__ = ["DERIVED_SUFFIX", "default_output_name", "write_like"]

logger = logging.getLogger(__name__)

#: appended to SeriesDescription of derived DICOM series.
DERIVED_SUFFIX = " denoised"
# always-lossy transfer syntaxes (JPEG baseline/extended, JPEG-LS near-lossless); for JPEG 2000, which may
# or may not be lossy, the source's own LossyImageCompression tag is kept as is.
_LOSSY_SYNTAXES = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81"}


def default_output_name(image: LoadedImage) -> str:
    """File (or series folder) name used for ``image`` in an output folder: the input's name, with
    JPEG written as PNG."""
    return output_name(image.format, image.source)


def write_like(
    image: LoadedImage, array: np.ndarray, out_path: str | Path, *, description: str, overwrite: bool = False
) -> list[Path]:
    """Write ``array`` in ``image``'s format and geometry.

    Args:
        image: what was read; its headers/geometry are copied to the output.
        array: new pixels in ORIGINAL units (e.g. HU), exactly ``image.array.shape``; for PNG/JPEG/TIFF also the
            final stored samples in the input's own dtype (uint8/uint16), which are written as they are.
        out_path: output file; for a DICOM series folder, the output folder (files keep the input names).
        description: what produced the pixels (e.g. the model name), stored in DICOM DerivationDescription.
        overwrite: replace existing outputs; never allowed for an input file.

    Returns:
        the written files.

    Raises:
        ValueError: wrong shape or non-finite values, out_path is an input file, an output exists and
            ``overwrite`` is False, or the suffix does not fit the format.
    """
    out_path = Path(out_path)
    array = np.asarray(array)
    if array.shape != image.array.shape:
        raise ValueError(f"{image.source}: array shape {array.shape} differs from the input's {image.array.shape}.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():  # integers are finite (and a check would copy)
        raise ValueError(f"{image.source}: output array has NaN or Inf values; nothing written.")
    if image.format == ImageFormat.DICOM:  # a file or a whole series folder
        targets, writers = _dicom_outputs(image, array, out_path, description)
    elif image.format in _FILE_WRITERS:
        _check_suffix(out_path, FORMATS[ImageFormat(image.format)].outputs, image)
        write = _FILE_WRITERS[image.format]
        targets, writers = [out_path], [lambda tmp: write(image, array, tmp)]
    else:
        raise ValueError(f"{image.source}: cannot write format {str(image.format)!r}.")
    _check_targets(image, targets, overwrite)
    return _atomic_write(targets, writers)


def _check_suffix(out_path: Path, allowed: tuple[str, ...], image: LoadedImage) -> None:
    if not out_path.name.lower().endswith(allowed):
        raise ValueError(f"{out_path}: a {image.format} input is written as {'/'.join(allowed)}, not {out_path.name}.")


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _check_targets(image: LoadedImage, targets: list[Path], overwrite: bool) -> None:
    inputs = list(image.files) + [image.source]
    for target in targets:
        if any(_same_file(target, src) for src in inputs):
            raise ValueError(f"{target} is an input file of {image.source}; refusing to overwrite an input.")
        if target.is_dir():
            raise ValueError(f"{target} is a folder; cannot write a file there.")
        if target.exists() and not overwrite:
            raise ValueError(f"{target} already exists; pass overwrite=True to replace it.")


def _atomic_write(targets: list[Path], writers: list[Callable[[Path], None]]) -> list[Path]:
    """Write every target to a temp file beside it, then move them all into place (:func:`atomic_paths`)."""
    created_dirs: list[Path] = []
    for parent in sorted({t.parent for t in targets}):
        missing = [p for p in [parent, *parent.parents] if not p.exists()]
        parent.mkdir(parents=True, exist_ok=True)
        created_dirs.extend(missing)
    try:
        with atomic_paths(targets, keep_suffix=True) as temps:
            for tmp, write in zip(temps, writers):
                write(tmp)
    except BaseException:
        for folder in created_dirs:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    return list(targets)


def _quantize(
    values: np.ndarray, slope, inter, dtype: np.dtype, source: object = "", bounds: tuple[int, int] | None = None
) -> np.ndarray:
    """Original units -> stored integers through ``stored * slope + inter``, rounded.

    Values outside the stored range (the dtype's, narrowed to ``bounds``, e.g. DICOM BitsStored) are clipped to
    it, never wrapped, and their count is logged as a warning naming ``source``. ``slope``/``inter`` may be arrays
    broadcasting against ``values`` (per-frame rescale along the last axis).
    """
    stored = np.rint((np.asarray(values, dtype=np.float64) - inter) / slope)
    info = np.iinfo(dtype)
    low, high = int(info.min), int(info.max)
    if bounds is not None:
        low, high = max(low, int(bounds[0])), min(high, int(bounds[1]))
    outside = int(np.count_nonzero((stored < low) | (stored > high)))
    if outside:
        logger.warning(
            "%s: %d of %d values fall outside the stored range [%d, %d] (%s) and were clipped to it.",
            source, outside, stored.size, low, high, np.dtype(dtype).name,
        )  # fmt: skip
    return np.clip(stored, low, high).astype(dtype)


# ----------------------------------------------------------------------------------------------- DICOM


def _dicom_outputs(
    image: LoadedImage, array: np.ndarray, out_path: Path, description: str
) -> tuple[list[Path], list[Callable[[Path], None]]]:
    from pydicom.uid import generate_uid

    datasets = image.datasets
    if image.is_series:
        targets = [out_path / f.name for f in image.files]
        if len(datasets) == 1 and int(datasets[0].get("NumberOfFrames", 1) or 1) == 1:
            parts = [array[..., 0]]
        elif len(datasets) == 1:
            parts = [array]
        else:
            parts = [array[..., k] for k in range(array.shape[-1])]
    else:
        targets, parts = [out_path], [array]
    series_uid = generate_uid()
    syntaxes = image.meta.get("transfer_syntaxes", [""] * len(datasets))

    names = list(image.files) if len(image.files) == len(datasets) else [image.source] * len(datasets)

    def writer(ds, part, syntax, name):
        return lambda tmp: _save_dicom(_derived_dataset(ds, part, series_uid, description, syntax, name), tmp)

    return targets, [writer(*args) for args in zip(datasets, parts, syntaxes, names)]


def _derived_dataset(
    source, values: np.ndarray, series_uid: str, description: str, source_syntax: str, name: object = ""
):
    """A copy of ``source`` with new pixels (C, H, W[, frames]) and the tags of a derived image; ``name`` (the
    input file) is named when values had to be clipped to the stored range."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    ds = copy.deepcopy(source)
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    frames = values if values.ndim == 4 else values[..., None]  # (C, H, W, F)
    if frames.shape[-1] != nframes:
        raise ValueError(f"expected {nframes} frames, got {frames.shape[-1]}")
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    bits_allocated = int(ds.BitsAllocated)
    bits_stored = int(ds.get("BitsStored", bits_allocated))
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits_allocated // 8}")
    low, high = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2**bits_stored - 1)
    slopes, inters = dicom_frame_rescale(ds, nframes)
    stored = _quantize(frames, slopes, inters, dtype, name, (low, high))  # (C, H, W, F), rescale per frame
    stored = stored.transpose(3, 1, 2, 0)  # (F, H, W, C)
    samples = stored.shape[-1]
    photometric = "RGB" if samples == 3 else str(ds.PhotometricInterpretation)
    if samples == 1:
        stored = stored[..., 0]
    if "NumberOfFrames" not in ds:
        stored = stored[0]  # set_pixel_data removes NumberOfFrames for a lone 2D frame
    # pixels are written uncompressed; the encoding of the other elements follows the new syntax
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if hasattr(ds, "set_pixel_data"):  # pydicom >= 3
        ds.set_pixel_data(stored, photometric, bits_stored, generate_instance_uid=True)
    else:
        _set_pixel_data_pydicom2(ds, stored, photometric, bits_stored)

    ds.SeriesInstanceUID = series_uid
    image_type = list(ds.get("ImageType", [])) or ["DERIVED", "SECONDARY"]
    image_type[0] = "DERIVED"
    if len(image_type) < 2:
        image_type.append("SECONDARY")
    image_type[1] = "SECONDARY"
    ds.ImageType = image_type
    _mark_frame_types_derived(ds)
    ds.DerivationDescription = description[:1024]
    ds.SeriesDescription = (str(ds.get("SeriesDescription", "")) + DERIVED_SUFFIX).strip()[:64]
    # per-image min/max no longer hold; they are optional
    for keyword in (
        "SmallestImagePixelValue",
        "LargestImagePixelValue",
        "SmallestPixelValueInSeries",
        "LargestPixelValueInSeries",
    ):
        if keyword in ds:
            del ds[keyword]
    if source_syntax in _LOSSY_SYNTAXES:
        ds.LossyImageCompression = "01"  # once lossy, always flagged lossy (PS3.3 C.7.6.1.1.5)
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    ds.SourceImageSequence = Sequence([reference])
    return ds


def _set_pixel_data_pydicom2(ds, stored: np.ndarray, photometric: str, bits_stored: int) -> None:
    """What ``Dataset.set_pixel_data`` (pydicom >= 3) does, for pydicom 2, which MONAI Label's environment pins.

    Args:
        ds: the dataset to update; its TransferSyntaxUID is already Explicit VR Little Endian.
        stored: (H, W), (F, H, W), (H, W, 3) or (F, H, W, 3) integers; a frame axis means NumberOfFrames is kept.
        photometric: PhotometricInterpretation of ``stored``.
        bits_stored: BitsStored; HighBit is one less.
    """
    from pydicom.uid import generate_uid

    samples = 3 if photometric == "RGB" else 1  # the writer makes RGB or monochrome only
    if stored.ndim == (3 if samples == 1 else 4):
        ds.NumberOfFrames = stored.shape[0]
    elif "NumberOfFrames" in ds:
        del ds.NumberOfFrames
    ds.Rows, ds.Columns = stored.shape[-2:] if samples == 1 else stored.shape[-3:-1]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0  # colour-by-pixel, the (..., 3) layout of ``stored``
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    ds.BitsAllocated = stored.dtype.itemsize * 8
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(stored.dtype.kind == "i")
    data = stored.astype(stored.dtype.newbyteorder("<"), copy=False).tobytes()
    ds.PixelData = data + b"\x00" * (len(data) % 2)  # even length
    ds["PixelData"].VR = "OB" if stored.dtype.itemsize == 1 else "OW"
    ds["PixelData"].is_undefined_length = False
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    # pydicom 2 encodes by these flags, which keep the source file's encoding, not by the TransferSyntaxUID
    ds.is_little_endian, ds.is_implicit_VR = True, False


def _save_dicom(ds, path: Path) -> None:
    """Save as a DICOM file with preamble and complete file meta information."""
    if hasattr(ds, "set_pixel_data"):  # pydicom >= 3
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, write_like_original=False)  # pydicom 2's spelling


def _mark_frame_types_derived(ds) -> None:
    """Enhanced multi-frame: FrameType in the functional groups says DERIVED too."""
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in ds.get(groups) or []:
            for elem in item:
                if elem.VR == "SQ" and elem.keyword.endswith("FrameTypeSequence"):
                    for inner in elem.value:
                        if "FrameType" in inner:
                            frame_type = list(inner.FrameType)
                            frame_type[0] = "DERIVED"
                            inner.FrameType = frame_type


# ----------------------------------------------------------------------------------------------- NIfTI


def _write_nifti(image: LoadedImage, array: np.ndarray, path: Path) -> None:
    """Same class, affine, header (qform/sform codes, pixdim), data type and scale factors as the input."""
    header = image.header.copy()
    dtype = np.dtype(image.meta["nifti_dtype"])
    slope, inter = image.meta["nifti_slope"], image.meta["nifti_inter"]
    data = array[0]
    if image.meta["volume_index"] is None and len(image.meta["nifti_shape"]) != data.ndim:
        data = data.reshape(image.meta["nifti_shape"])  # e.g. (X, Y, Z, 1) read as 3D
    if dtype.kind in "iu":
        stored = _quantize(data, slope, inter, dtype.newbyteorder("="), image.source)
    else:
        stored = ((np.asarray(data, dtype=np.float64) - inter) / slope).astype(dtype.newbyteorder("="))
    import nibabel as nib

    klass = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    img = klass(stored, image.affine, header)
    img.header.set_data_dtype(dtype)
    # explicit scale factors: nibabel then writes ``stored`` as is instead of choosing its own scaling
    img.header.set_slope_inter(slope, inter)
    img.to_filename(str(path))


# --------------------------------------------------------------------------------------------- bitmaps


def _bitmap_pixels(image: LoadedImage, array: np.ndarray) -> np.ndarray:
    """(C, H, W[, P]) float in original units -> (H, W[, 3]) or (P, H, W[, 3]) unsigned, rounded, clipped.

    An array already in the stored dtype (the tiled path's output) is taken as is: no float copy of the image.
    """
    dtype = np.dtype(image.meta["dtype"])
    pixels = array if array.dtype == dtype else _quantize(array, 1.0, 0.0, dtype, image.source)
    pixels = np.moveaxis(pixels, 0, -1) if pixels.ndim == 3 else pixels.transpose(3, 1, 2, 0)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def _write_png(image: LoadedImage, array: np.ndarray, path: Path) -> None:
    from PIL import Image

    pixels = _bitmap_pixels(image, array)
    alpha = image.meta.get("alpha")
    if alpha is not None:
        pixels = np.dstack([pixels, alpha])
    im = Image.fromarray(pixels)
    options = {}
    if image.meta.get("icc_profile"):
        options["icc_profile"] = image.meta["icc_profile"]
    if image.meta.get("dpi"):
        options["dpi"] = image.meta["dpi"]
    im.save(path, format="PNG", **options)


def _write_tiff(image: LoadedImage, array: np.ndarray, path: Path) -> None:
    import tifffile

    pixels = _bitmap_pixels(image, array)
    options = {}
    if image.meta.get("resolution"):
        options = {"resolution": image.meta["resolution"], "resolutionunit": image.meta.get("resolutionunit")}
    photometric = "rgb" if image.channels == 3 else "minisblack"
    tifffile.imwrite(path, pixels, photometric=photometric, **options)


# one-file formats: the writer of each (DICOM writes a file or a series: _dicom_outputs)
_FILE_WRITERS: dict[str, Callable[[LoadedImage, np.ndarray, Path], None]] = {
    ImageFormat.NIFTI: _write_nifti,
    ImageFormat.PNG: _write_png,
    ImageFormat.JPEG: _write_png,
    ImageFormat.TIFF: _write_tiff,
}

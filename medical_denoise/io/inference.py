"""File-level inference: read clinical files, pick the model per file, run it slice by slice, write the format back.

* Model per input: a :class:`~medical_denoise.io.routing.ModelRouter` picks the dermoscopy model for RGB
  photographs and the clinical 2.5D model for grayscale images (rule and refusals: :mod:`.routing`). A plain
  callable is one fixed model for inputs of exactly its channel count.
* 2.5D: a model with ``context_slices = k`` gets, for output slice ``z`` of a volume (slices along the last axis),
  the slices ``z - k .. z + k`` as channels, indices clamped to the volume (edge slices repeat); a 2D image is its
  own neighbour. It returns the centre slice. Slabs are built per batch, never for the whole volume.
* Never worse than the input: a model's :class:`~medical_denoise.io.fidelity.FidelityGuard` keeps exactly constant
  regions, and every voxel the network returned unchanged comes back with its original value, bit for bit.
* Bounded memory: PNG/JPEG/TIFF stay as decoded (uint8/uint16) and run through the model in overlapping tiles into
  a preallocated output of the same dtype (:mod:`.tiled`); any input, volumes included, that would not fit the
  memory budget is refused from its header, before it is decoded (:mod:`.budget`, ``max_memory_gb``).
* No channel conversion unless asked: :func:`predict_array` refuses a channel count the model does not take,
  except with ``adapt_channels=True`` (grey replicated to an RGB model and averaged back; RGB through a grayscale
  model channel by channel), which only the MONAI Label app requests.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from medical_denoise.atomic import check_writable_dir
from medical_denoise.io.budget import MAX_MEMORY_GB, check_memory_budget, pillow_limit
from medical_denoise.io.formats import ImageFormat
from medical_denoise.io.geometry import check_scale, zoomed_like
from medical_denoise.io.image import LoadedImage
from medical_denoise.io.intensity import IntensityMapping, default_intensity_mapping
from medical_denoise.io.predict import predict_array, slab_indices
from medical_denoise.io.readers import (
    DICOM_NAMED_SUFFIXES,
    guess_format,
    is_dicom_file,
    is_ignored_name,
    read_dicom_header,
    read_image,
)
from medical_denoise.io.routing import ModelRouter, ModelSpec, Route, log_route
from medical_denoise.io.tiled import (
    TILE_MARGIN,
    TILE_SIZE,
    denoise_tiled,
    tile_spans,
)
from medical_denoise.io.writers import write_like

__all__ = [
    "MAX_MEMORY_GB",
    "FailedInputsError",
    "InputItem",
    "collect_inputs",
    "denoise_image",
    "denoise_path",
    "predict_array",
    "slab_indices",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputItem:
    """One unit of work of :func:`denoise_path`: a file, or one DICOM series of a folder.

    Attributes:
        path: what :func:`read_image` reads: a file, or the folder holding the series.
        files: the series' files when ``path`` is a folder (empty for a file).
    """

    path: Path
    files: tuple[Path, ...] = ()

    @property
    def label(self) -> str:
        """How messages name the item: the file, or a series' first file and its size (a folder may hold several)."""
        return f"{self.files[0]} (series of {len(self.files)} files)" if self.files else str(self.path)

    @property
    def inputs(self) -> tuple[Path, ...]:
        """Every input file of the item."""
        return self.files or (self.path,)

    def read(self, modality: str | None = None, native: bool = False, volume_index: int | None = None) -> LoadedImage:
        """:func:`read_image` of the file or of the series (``native``: PNG/JPEG/TIFF keep their stored samples)."""
        return read_image(
            self.path, modality=modality, files=self.files or None, native=native, volume_index=volume_index
        )


class FailedInputsError(ValueError):
    """Some inputs of a folder run failed; the others were written (one line, then one line per failure).

    Attributes:
        failures: ``(input, one-line reason)`` of each failed input (a series: its first file; the reason names the
            series).
        written: the files written by the run.
        skipped: how many inputs were skipped because their outputs already existed.
    """

    def __init__(self, failures: list[tuple[Path, str]], written: list[Path], total: int, skipped: int) -> None:
        self.failures, self.written, self.skipped = failures, written, skipped
        names = ", ".join(str(path) for path, _ in failures[:5])
        more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
        head = (
            f"{len(failures)} of {total} input(s) failed: {names}{more} ({total - len(failures) - skipped} written, "
            f"{skipped} skipped); the others' outputs are in place."
        )
        super().__init__("\n".join([head, *(reason for _, reason in failures)]))


def _entries(folder: Path, exclude: str | Path | None) -> list[Path]:
    """The folder's entries that may be inputs: not hidden, not a series' side file, not the output folder."""
    out = []
    for entry in sorted(folder.iterdir()):
        if is_ignored_name(entry):
            continue
        if exclude is not None and Path(exclude).exists() and _same(entry, exclude):
            continue
        out.append(entry)
    return out


def _looks_dicom(path: Path) -> bool:
    return path.suffix.lower() in DICOM_NAMED_SUFFIXES or is_dicom_file(path)


def _series_uid(path: Path) -> str | None:
    """SeriesInstanceUID from the header, "" if the file has none, None if the header cannot be read or the file
    is multi-frame (a cine clip or an enhanced multi-frame image is a volume of its own, even when other files
    share its series)."""
    try:
        ds = read_dicom_header(path, specific_tags=["SeriesInstanceUID", "NumberOfFrames"])
        if int(ds.get("NumberOfFrames") or 1) > 1:
            return None
    except Exception:  # noqa: BLE001  (pydicom raises many types on damaged or foreign files)
        return None
    return str(ds.get("SeriesInstanceUID", ""))


def _dicom_items(folder: Path, files: list[Path]) -> list[InputItem]:
    """DICOM ``files`` of ``folder`` grouped by SeriesInstanceUID, in file-name order of each group's first file.

    A series of several single-frame files is one item (a volume, written as one derived series); a series of one
    file, a multi-frame file, and a file whose header cannot be read (read_image then reports it), is an item of
    its own.
    """
    groups: dict[str, list[Path]] = {}
    items: list[tuple[Path, InputItem]] = []
    for f in files:
        uid = _series_uid(f)
        if uid is None:
            items.append((f, InputItem(f)))
        else:
            groups.setdefault(uid, []).append(f)
    for group in groups.values():
        items.append((group[0], InputItem(group[0]) if len(group) == 1 else InputItem(folder, tuple(group))))
    return [item for _, item in sorted(items, key=lambda pair: pair[0])]


def collect_inputs(input_path: str | Path, exclude: str | Path | None = None) -> list[InputItem]:
    """What :func:`denoise_path` processes, each read on its own.

    A file is itself. In a folder, DICOM files (by suffix or the DICM magic, and files without suffix) are grouped
    by SeriesInstanceUID: a series of several single-frame files is one item, read as one volume, and any other
    DICOM file (a multi-frame file among them) is an item of its own; NIfTI/PNG/JPEG/TIFF files are items of their own. So a folder holding one series is that
    series, a folder of single files from different series gives each file, and a stray DICOM file next to PNG or
    NIfTI files is just one more input. Sub-folders (one level deep) give their DICOM items. Files with unsupported
    suffixes (CSV metadata, notes) are skipped with a log message.

    Args:
        input_path: a file or folder.
        exclude: a folder to leave out (the output folder, when it lies inside the input folder).

    Raises:
        FileNotFoundError: ``input_path`` does not exist.
        ValueError: the folder holds no supported images.
    """
    path = Path(input_path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.is_file():
        return [InputItem(path)]
    items: list[InputItem] = []
    dicom: list[Path] = []
    skipped: list[str] = []
    folders: list[Path] = []
    for entry in _entries(path, exclude):
        if entry.is_dir():
            folders.append(entry)
            continue
        try:
            fmt = guess_format(entry)  # by suffix: a dangling link stays an input, which read_image then reports
        except ValueError:
            skipped.append(entry.name)
            continue
        (dicom if fmt == ImageFormat.DICOM else items).append(entry)
    items = sorted([InputItem(f) for f in items] + _dicom_items(path, dicom), key=lambda item: item.inputs[0])
    for folder in folders:
        entries = [e for e in _entries(folder, exclude) if not e.is_dir()]
        if any(_looks_dicom(e) for e in entries):
            items.extend(_dicom_items(folder, [e for e in entries if _dicom_candidate(e)]))
    if skipped:
        logger.info("%s: skipping %d unsupported file(s): %s", path, len(skipped), ", ".join(skipped[:10]))
    if not items:
        raise ValueError(f"{path}: folder holds no supported images (DICOM, NIfTI, PNG, JPEG, TIFF).")
    return items


def _dicom_candidate(path: Path) -> bool:
    try:
        return guess_format(path) == ImageFormat.DICOM
    except ValueError:
        return False


def _same(a: Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def denoise_image(
    image: LoadedImage,
    route: Route,
    *,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    progress: bool = False,
    intensity: Callable[[LoadedImage], IntensityMapping] | None = None,
) -> np.ndarray:
    """The denoised pixels of one read image in its ORIGINAL units (float64), ready for :func:`write_like`.

    The image is mapped to the network range (``intensity(image)`` or ``image.intensity``), run through the
    route's model (2.5D slabs when it has context slices, its guard after each batch) and mapped back. Voxels the
    network returned bit-identical (constant regions under the guard, an identity model) get their original
    value back exactly. A colour-coded image (``route.grey_pixels_only``) runs its grey view (R == G == B pixels;
    the channel mean elsewhere, as context) through the grayscale model with the percentile mapping of its grey
    pixels (or the forced modality's mapping); only its grey pixels take the result.

    Args:
        image: what :func:`read_image` returned.
        route: the router's answer for it.
        batch_size: output slices per predictor call.
        device: torch device for the predictor's inputs.
        progress: show a tqdm bar over batches.
        intensity: replaces the default mapping (ignored for the grey view of colour-coded images).
    """
    spec: ModelSpec = route.spec
    if route.grey_pixels_only and spec.scale != 1:
        raise ValueError(f"{image.source}: colour-coded images are denoised at scale 1 only, not {spec.scale}.")
    if route.grey_pixels_only:
        grey_mask = (image.array[0] == image.array[1]) & (image.array[1] == image.array[2])
        grey = np.where(grey_mask, image.array[0], image.array.mean(axis=0))[None].astype(np.float32)
        sample = grey[0][grey_mask] if grey_mask.any() else grey
        if route.modality:
            mapping = default_intensity_mapping(sample, route.modality)
        else:
            mapping = IntensityMapping.percentile(sample)
        values = grey
        logger.info("%s: %.1f%% grey pixels denoised, coloured pixels kept", image.source, 100 * grey_mask.mean())
    else:
        mapping = intensity(image) if intensity is not None else image.intensity
        values = image.array
    mapped = mapping.forward(values)
    log_route(image, route, mapping, mapped)
    net = predict_array(
        mapped,
        route.predictor_for(mapping),
        model_channels=1 if route.grey_pixels_only else spec.image_channels,
        context_slices=spec.context_slices,
        guard=spec.guard,
        batch_size=batch_size,
        source=image.source,
        device=device,
        progress=progress,
        scale=spec.scale,
    )
    restored = mapping.inverse(net)
    if spec.scale == 1:
        unchanged = net == mapped  # the float32 round trip would move these by up to ~1e-4 of the range
        restored[unchanged] = values[unchanged]
    if route.grey_pixels_only:
        out = image.array.astype(np.float64)
        out[:, grey_mask] = restored[0][grey_mask]
        return out
    return restored


def denoise_path(
    input_path: str | Path,
    output_dir: str | Path,
    predictor: ModelRouter | Callable[[torch.Tensor], torch.Tensor],
    *,
    description: str,
    model_channels: int | None = None,
    modality: str | None = None,
    volume_index: int | None = None,
    batch_size: int = 8,
    overwrite: bool = False,
    skip_existing: bool = False,
    max_memory_gb: float | None = MAX_MEMORY_GB,
    max_pixels: int | None = None,
    tile_size: int = TILE_SIZE,
    tile_margin: int = TILE_MARGIN,
    progress: bool = True,
    device: torch.device | str | None = None,
    intensity: Callable[[LoadedImage], IntensityMapping] | None = None,
    scale: int = 1,
) -> list[Path]:
    """Denoise a file, a DICOM series folder, or a folder of files into ``output_dir``, same names and formats.

    Each input (see :func:`collect_inputs`) is read with :func:`read_image` (with the modality override), given its
    model by the router (refused with one line naming the file when no model fits), denoised by
    :func:`denoise_image` and written with :func:`write_like`, atomically, file by file. JPEG inputs are written as
    lossless PNG. PNG/JPEG/TIFF inputs stay in their stored uint8/uint16 samples and run in overlapping tiles
    (:func:`~medical_denoise.io.tiled.denoise_tiled`), so their memory is about input + output samples plus one
    tile's working set; one whose estimate exceeds ``max_memory_gb`` is refused from its header, before decoding.
    Before any work, the plan is checked (no output on an input, no two inputs onto one output, existing outputs
    only with ``overwrite`` or ``skip_existing``) and so is the output folder's writability.

    Inputs are independent: a bad one (corrupt, truncated, dangling link, no model for it) is logged with its
    reason and skipped, the others are written, and outputs already written stay. The run ends with a logged
    summary (written, skipped, failed with reasons) and, if any input failed, a :class:`FailedInputsError` listing
    them, raised after every good input was written. A run with a single input raises that input's own error.

    Args:
        input_path: file, DICOM series folder, or folder of files (see :func:`collect_inputs`).
        output_dir: destination folder, created if missing; may be inside or equal to the input's folder,
            but no output may land on an input file.
        predictor: a :class:`~medical_denoise.io.routing.ModelRouter` (the bundle's ``router``), or one callable
            ``(N, model_channels, H, W)`` in the network range -> ``(N, model_channels, scale * H, scale * W)``
            used for every input of exactly ``model_channels`` channels.
        description: model name/version stored in DICOM DerivationDescription (unless the route's model has its own).
        model_channels: channels of a plain callable's images (required with one, unused with a router).
        modality: overrides the modality of every input (e.g. "CT" for a NIfTI in HU); a router's own
            ``modality`` (``model: ct``/``mr``) must agree.
        volume_index: the volume (last axis) of 4D NIfTI inputs to denoise, written as a 3D volume; a 4D input
            with several volumes is refused without it.
        batch_size: slices per predictor call.
        overwrite: replace existing outputs (each file atomically: a reader sees the old or the new file).
        skip_existing: leave an input alone when all its outputs already exist (non-empty; outputs are moved into
            place only once complete), so a killed run can be resumed. Other existing outputs still need
            ``overwrite``.
        max_memory_gb: memory budget of one input: one whose estimated peak resident memory exceeds it is refused
            from its header, before decoding (:func:`~medical_denoise.io.budget.check_memory_budget`). PNG/JPEG/TIFF
            run in tiles, ``BASE_MEMORY_GB`` + 7 bytes per 8-bit RGB pixel, so the default, 4 GiB, takes them up to
            about 460 megapixels; DICOM/NIfTI volumes are read whole, ``BASE_MEMORY_GB`` + 31 bytes per voxel (a
            512 x 512 x 390 CT fits). Within a budget, Pillow's decompression-bomb limit
            (``PIL.Image.MAX_IMAGE_PIXELS``) is raised to the accepted image. None: no memory budget.
        max_pixels: optional cap on PNG/JPEG/TIFF pixels (pages x rows x columns), refused before decoding; None
            (default): none. With neither budget, Pillow's own decompression-bomb limit applies.
        tile_size: largest side, margins included, that one predictor call sees for PNG/JPEG/TIFF; images no
            larger run whole (bit-identical to an untiled run).
        tile_margin: context pixels on each inner side of a tile, cropped away after the model (seams).
        progress: show tqdm bars.
        device: torch device for the predictor's inputs; None leaves tensors on the CPU.
        intensity: picks the mapping for each image; default ``image.intensity`` (see
            :func:`~medical_denoise.io.intensity.default_intensity_mapping`). Use the one the model was trained with.
        scale: super-resolution factor of a plain callable (1 for same-size restoration); a router's models carry
            their own. Outputs are ``scale`` times larger in-plane with their geometry zoomed to keep the physical
            extent (see :func:`zoomed_like`).

    Returns:
        every file written by this call.

    Raises:
        FileNotFoundError, ValueError: the input's own error when it is the only one; a refused plan.
        PermissionError, NotADirectoryError: ``output_dir`` cannot be written.
        FailedInputsError: some inputs of several failed (the others were written).
    """
    router = _as_router(predictor, model_channels, modality, scale)
    tile_size, tile_margin = _option("tile_size", tile_size, int), _option("tile_margin", tile_margin, int)
    batch_size = _option("batch_size", batch_size, int, low=1)
    volume_index = None if volume_index is None else _option("volume_index", volume_index, int)
    max_memory_gb = None if max_memory_gb is None else _option("max_memory_gb", max_memory_gb, float, low=1e-9)
    max_pixels = None if max_pixels is None else _option("max_pixels", max_pixels, int, low=1)
    tile_spans(tile_size + 1, tile_size, tile_margin)  # a tile size too small is refused first
    input_path, output_dir = Path(input_path), Path(output_dir)
    items = collect_inputs(input_path, exclude=output_dir)
    check_writable_dir(output_dir)
    whole = len(items) == 1 and items[0].path == input_path  # a file, or a folder that is one series
    targets = [_output_path(item, input_path, output_dir, whole) for item in items]
    done = _check_plan(items, targets, overwrite, skip_existing)
    written: list[Path] = []
    failures: list[tuple[Path, str]] = []
    todo = [(item, target) for item, target, skip in zip(items, targets, done) if not skip]
    for item, target in tqdm(todo, desc="denoise", disable=not progress or len(todo) < 2):
        try:
            pixels = check_memory_budget(item.path, item.files, max_pixels, max_memory_gb)
            with pillow_limit(pixels):
                image = item.read(router.modality, native=True, volume_index=volume_index)
            route = router.route(image)
            if image.array.dtype.kind == "u":  # PNG/JPEG/TIFF as stored: tiles, stored samples out
                restored = denoise_tiled(
                    image, route, tile_size=tile_size, margin=tile_margin, batch_size=batch_size,
                    device=device, progress=progress, intensity=intensity,
                )  # fmt: skip
                # the writer needs the input's shape and headers only: its pixels go before the output is encoded
                image = dataclasses.replace(image, array=np.broadcast_to(image.array.dtype.type(0), image.array.shape))
            else:
                restored = denoise_image(
                    image, route, batch_size=batch_size, device=device, progress=progress, intensity=intensity
                )
            if route.spec.scale != 1:  # the writer takes shape and geometry from the image it is given
                image = zoomed_like(image, route.spec.scale, array=restored)
            text = route.spec.description or description
            written.extend(write_like(image, restored, target, description=text, overwrite=overwrite))
        except Exception as e:  # noqa: BLE001  (whatever went wrong, it went wrong for this input only)
            if len(items) == 1:
                raise
            reason = _one_line(e, item)
            logger.error("%s", reason)
            logger.debug("%s failed", item.label, exc_info=True)
            failures.append((item.inputs[0], reason))
    skipped = sum(done)
    summary = "%s: %d input(s) written (%d files), %d skipped (outputs already there), %d failed"
    args = (output_dir, len(todo) - len(failures), len(written), skipped, len(failures))
    logger.log(logging.WARNING if failures else logging.INFO, summary, *args)
    if failures:
        raise FailedInputsError(failures, written, len(items), skipped)
    return written


def _option(name: str, value, kind: type, low: float | None = None):
    """``kind(value)`` (at least ``low``), or a one-line error naming the option (command-line values are text)."""
    try:
        number = float(value)
        if kind is int and number != int(number):
            raise ValueError
        number = kind(number)
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or (low is not None and number < low):
        what = ("an integer" if kind is int else "a number") + ("" if low is None else " > 0")
        raise ValueError(f"option {name} must be {what}, got {value!r}.")
    return number


def _one_line(error: BaseException, item: InputItem) -> str:
    """The first line of ``error``, naming ``item`` (errors of readers and writers already start with its file)."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if not isinstance(error, (ValueError, OSError)):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    if item.files:  # a series: its folder alone does not say which of the folder's series failed
        folder = f"{item.path}: "
        return f"{item.label}: {text[len(folder) :] if text.startswith(folder) else text}"
    return text if str(item.path) in text else f"{item.path}: {text}"


def _as_router(predictor, model_channels: int | None, modality: str | None, scale: int) -> ModelRouter:
    """The router ``denoise_path`` asks per image: ``predictor`` itself (with the modality override) or one model."""
    if isinstance(predictor, ModelRouter):
        if not modality:
            return predictor
        if predictor.modality is not None and predictor.modality.upper() != str(modality).upper():
            raise ValueError(f"modality {modality!r} differs from the router's modality {predictor.modality!r}.")
        router = copy.copy(predictor)  # shares the built predictors, leaves the caller's router as it was
        router.modality = str(modality)
        return router
    if model_channels is None:
        raise ValueError("denoise_path with a plain predictor needs model_channels (or pass a ModelRouter).")
    spec = ModelSpec(predictor=predictor, image_channels=int(model_channels), scale=check_scale(scale))
    return ModelRouter.fixed(spec, modality=modality)


def _output_path(item: InputItem, root: Path, output_dir: Path, whole: bool) -> Path:
    """Where ``item`` goes: ``output_dir`` / its path below the input folder; JPEG -> PNG.

    A file input, or a folder input that is one series (``whole``), goes to ``output_dir`` / its name. A series of
    a folder is written to the folder's place in ``output_dir``, its files keeping their names.
    """
    if whole:
        rel = Path(item.path.name)
    else:
        rel = item.path.relative_to(root) if item.path != root else Path()
    if not item.files and guess_format(item.path) == ImageFormat.JPEG:
        rel = rel.with_name(Path(rel.name).stem + ".png")
    return output_dir / rel


def _real(path: Path) -> Path:
    # unlike Path.resolve, no RuntimeError on a symlink loop (read_image then reports the input)
    return Path(os.path.realpath(path))


def _planned_files(item: InputItem, target: Path) -> list[Path]:
    return [target / f.name for f in item.files] if item.files else [target]


def _check_plan(items: list[InputItem], targets: list[Path], overwrite: bool, skip_existing: bool) -> list[bool]:
    """Refuse before any work: an output on an input, two inputs onto one output, or existing outputs.

    Returns:
        for each item, whether it is skipped (``skip_existing`` and all its outputs exist).
    """
    inputs = {_real(p) for item in items for p in item.inputs}
    seen: dict[Path, Path] = {}
    skip = []
    for item, target in zip(items, targets):
        planned = _planned_files(item, target)
        for out in planned:
            if out in seen:
                raise ValueError(f"{item.path} and {seen[out]} would both be written to {out}.")
            seen[out] = item.path
            if _real(out) in inputs or any(_same(out, p) for p in item.inputs):
                raise ValueError(f"{item.path}: output {out} is an input file; choose another output_dir.")
        existing = [p for p in planned if p.exists() or p.is_symlink()]
        # outputs are moved into place only once complete, so an existing non-empty file is a finished one
        if skip_existing and len(existing) == len(planned) and all(p.is_file() and p.stat().st_size for p in planned):
            skip.append(True)
            continue
        if existing and not overwrite:
            keep = "" if skip_existing else " or skip_existing=True to keep finished outputs"
            raise ValueError(f"{existing[0]} already exists; pass overwrite=True to replace it{keep}.")
        skip.append(False)
    return skip

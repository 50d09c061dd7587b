"""File-level inference: read clinical files, pick the model per file, run it slice by slice, write the format back.

* Model per input: a :class:`~medical_denoise.io.routing.ModelRouter` picks the dermoscopy model for RGB
  photographs and the clinical 2.5D model for grayscale images (rule and refusals: :mod:`.routing`). A plain
  callable is one fixed model for inputs of exactly its channel count.
* 2.5D: a model with ``context_slices = k`` gets, for output slice ``z`` of a volume (slices along the last axis),
  the slices ``z - k .. z + k`` as channels, indices clamped to the volume (edge slices repeat); a 2D image is its
  own neighbour. It returns the centre slice. Slabs are built per batch, never for the whole volume.
* Never worse than the input: a model's :class:`~medical_denoise.io.fidelity.FidelityGuard` keeps exactly constant
  regions, and every voxel the network returned unchanged comes back with its original value, bit for bit.
* No channel conversion unless asked: :func:`predict_array` refuses a channel count the model does not take,
  except with ``adapt_channels=True`` (grey replicated to an RGB model and averaged back; RGB through a grayscale
  model channel by channel), which only the MONAI Label app requests.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from medical_denoise.io.fidelity import FidelityGuard
from medical_denoise.io.geometry import check_scale, zoomed_like
from medical_denoise.io.image import LoadedImage
from medical_denoise.io.intensity import IntensityMapping, default_intensity_mapping
from medical_denoise.io.readers import _IGNORED_NAMES, DICOM_SUFFIXES, guess_format, is_dicom_file, read_image
from medical_denoise.io.routing import ModelRouter, ModelSpec, Route
from medical_denoise.io.writers import write_like
from medical_denoise.noise.estimate import estimate_noise_level

__all__ = ["collect_inputs", "denoise_image", "denoise_path", "predict_array", "slab_indices"]

logger = logging.getLogger(__name__)
_DICOM_NAMED = (".dcm", ".dicom", ".ima")


def _is_series_folder(folder: Path) -> bool:
    """A folder holding DICOM files directly (by suffix or by the DICM magic)."""
    for p in folder.iterdir():
        if p.is_file() and not p.name.startswith(".") and p.name.upper() not in _IGNORED_NAMES:
            if p.suffix.lower() in _DICOM_NAMED or is_dicom_file(p):
                return True
    return False


def _dicom_folder_items(folder: Path) -> list[Path]:
    """``[folder]`` for one series (or a folder :func:`read_image` must judge), else each file of a folder of
    single files from different series.

    Files are grouped by SeriesInstanceUID. When every series has exactly one file (a folder of unrelated images,
    as PACS exports and test sets often are), each file is its own item and is written as its own derived series.
    A folder where a series has several files and other series are present stays one item, which
    :func:`read_image` refuses naming the series: processing its files one by one would cut a volume into
    2D images and give each its own series. An unreadable header also leaves the folder whole, so the reader
    names the bad file.
    """
    import pydicom

    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.upper() not in _IGNORED_NAMES
    )
    series: dict[str, list[Path]] = {}
    for f in files:
        try:
            force = f.suffix.lower() in DICOM_SUFFIXES  # as read_image: no preamble is common for .dcm exports
            ds = pydicom.dcmread(f, stop_before_pixels=True, force=force, specific_tags=["SeriesInstanceUID"])
        except Exception:  # noqa: BLE001  (pydicom raises many types on damaged or foreign files)
            return [folder]
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(f)
    if len(series) > 1 and all(len(group) == 1 for group in series.values()):
        return files
    return [folder]


def collect_inputs(input_path: str | Path, exclude: str | Path | None = None) -> list[Path]:
    """What :func:`denoise_path` processes, each an argument for :func:`read_image`.

    A file is itself. A folder holding DICOM files is one series, or, when its files all belong to different
    series, each file on its own. Any other folder gives its supported files (sorted) and the DICOM items of its
    sub-folders (one level deep). Files with unsupported suffixes in such a folder (CSV metadata, notes) are
    skipped with a log message.

    Args:
        input_path: a file or folder.
        exclude: a folder to leave out (the output folder, when it lies inside the input folder).
    """
    path = Path(input_path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.is_file():
        return [path]
    if _is_series_folder(path):
        return _dicom_folder_items(path)
    items: list[Path] = []
    skipped: list[str] = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith(".") or (exclude is not None and Path(exclude).exists() and _same(entry, exclude)):
            continue
        if entry.is_dir():
            if _is_series_folder(entry):
                items.extend(_dicom_folder_items(entry))
            continue
        try:
            guess_format(entry)
            items.append(entry)
        except ValueError:
            skipped.append(entry.name)
    if skipped:
        logger.info("%s: skipping %d unsupported file(s): %s", path, len(skipped), ", ".join(skipped[:10]))
    if not items:
        raise ValueError(f"{path}: folder holds no supported images (DICOM, NIfTI, PNG, JPEG, TIFF).")
    return items


def _same(a: Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _output_path(item: Path, root: Path, output_dir: Path) -> Path:
    """``output_dir`` / the item's path below the input folder (its name for a file or series input); JPEG -> PNG."""
    rel = item.relative_to(root) if root.is_dir() and item != root else Path(item.name)
    if guess_format(item) == "jpeg":
        rel = rel.with_name(Path(rel.name).stem + ".png")
    return output_dir / rel


def slab_indices(depth: int, start: int, stop: int, context_slices: int) -> np.ndarray:
    """Slice indices of the 2.5D input of output slices ``start .. stop - 1``: ``(stop - start, 2k + 1)``.

    Row ``i`` is ``z - k .. z + k`` for ``z = start + i``, clamped to ``[0, depth - 1]`` (the edge slice repeats),
    so the centre column is ``z`` itself.

    Args:
        depth: number of slices (1 for a 2D image, whose slab is itself 2k + 1 times).
        start: first output slice.
        stop: one past the last output slice.
        context_slices: neighbours on each side (k).
    """
    z = np.arange(start, stop)[:, None]
    offsets = np.arange(-context_slices, context_slices + 1)[None, :]
    return np.clip(z + offsets, 0, depth - 1)


def _adaptation(channels: int, model_channels: int, adapt: bool, context_slices: int, source: Path | str) -> str | None:
    """None (exact fit), "replicate" (grey -> RGB model) or "split" (RGB -> grayscale model); else ValueError."""
    if channels == model_channels:
        return None
    pair = {(1, 3): "replicate", (3, 1): "split"}.get((channels, model_channels))
    if adapt and pair and context_slices == 0:
        return pair
    raise ValueError(
        f"{source}: image has {channels} channel(s) but the model takes {model_channels}; pass a model made for "
        f"{channels}-channel images (channels are not converted)."
    )


@torch.no_grad()
def predict_array(
    array: np.ndarray,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    *,
    model_channels: int | None = None,
    context_slices: int = 0,
    guard: FidelityGuard | None = None,
    adapt_channels: bool = False,
    batch_size: int = 8,
    source: Path | str = "<array>",
    device: torch.device | str | None = None,
    progress: bool = False,
    scale: int = 1,
) -> np.ndarray:
    """Run a 2D or 2.5D predictor over ``array`` (C, H, W) or (C, H, W, D) in the network range, slice by slice.

    Args:
        array: float array already mapped to the network range; volumes are cut along their last axis.
        predictor: maps an ``(N, (2k + 1) * model_channels, H, W)`` float tensor to
            ``(N, model_channels, scale * H, scale * W)``.
        model_channels: channels of the images the model denoises (default: the array's own).
        context_slices: k, the neighbours on each side stacked as input channels (see :func:`slab_indices`);
            slab channels are ordered slice by slice (``z - k`` first), the centre block is slice ``z``.
        guard: applied to each output slice against its input slice (same scale only).
        adapt_channels: convert a grayscale image for an RGB model (replicated, output averaged back) and an RGB
            image for a grayscale model (channel by channel); by default a channel mismatch is a ValueError.
        batch_size: output slices per predictor call.
        source: file named in error messages.
        device: where input tensors go before the predictor (outputs come back to the CPU).
        progress: show a tqdm bar over batches.
        scale: in-plane size ratio of output to input (1: denoising/deblurring, 2 or 4: super-resolution).

    Returns:
        float32 array shaped like ``array``, its two in-plane axes ``scale`` times larger.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if int(context_slices) != context_slices or context_slices < 0:
        raise ValueError(f"context_slices must be an integer >= 0, got {context_slices!r}.")
    scale = check_scale(scale, source)
    if guard is not None and scale != 1:
        raise ValueError(f"{source}: a FidelityGuard needs same-size outputs, but scale is {scale}.")
    channels = int(array.shape[0])
    model_channels = channels if model_channels is None else int(model_channels)
    adapt = _adaptation(channels, model_channels, adapt_channels, int(context_slices), source)
    if adapt == "split":  # each colour channel is its own grayscale image
        return np.concatenate([
            predict_array(array[c : c + 1], predictor, batch_size=batch_size, source=source, device=device,
                          progress=progress, scale=scale, guard=guard)
            for c in range(channels)
        ])  # fmt: skip
    k = int(context_slices)
    volume = array.ndim == 4
    depth = int(array.shape[-1]) if volume else 1
    h, w = int(array.shape[1]), int(array.shape[2])
    result = np.empty((channels, h * scale, w * scale, depth), dtype=np.float32)
    out_channels = 3 if adapt == "replicate" else channels
    starts = range(0, depth, batch_size)
    for start in tqdm(starts, desc=Path(str(source)).name, disable=not progress, leave=False, unit="batch"):
        stop = min(start + batch_size, depth)
        index = slab_indices(depth, start, stop, k)
        low, high = int(index.min()), int(index.max()) + 1
        # only the slices this batch needs, slice-first and contiguous: (n, C, H, W)
        block = array[..., low:high] if volume else array[..., None]
        block = np.ascontiguousarray(np.moveaxis(block, -1, 0), dtype=np.float32)
        slab = block[index - low].reshape(len(index), (2 * k + 1) * channels, h, w)
        centre = block[index[:, k] - low]
        x = torch.from_numpy(np.repeat(slab, 3, axis=1) if adapt == "replicate" else slab)
        y = predictor(x.to(device) if device is not None else x)
        if hasattr(y, "as_tensor"):  # MONAI MetaTensor
            y = y.as_tensor()
        expected = (len(index), out_channels, h * scale, w * scale)
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != expected:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(
                f"{source}: predictor returned {got} for an input of shape {tuple(x.shape)}; expected {expected} "
                f"(scale {scale})."
            )
        y = y.detach().float().cpu()
        if not torch.isfinite(y).all():
            raise ValueError(f"{source}: predictor returned NaN or Inf values.")
        if adapt == "replicate":
            y = y.mean(dim=1, keepdim=True)
        if guard is not None:
            y = guard(torch.from_numpy(centre), y)
        result[..., start:stop] = np.moveaxis(y.numpy(), 0, -1)
    return result if volume else result[..., 0]


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
    # blind model: tell the user which model and mapping it got, and what noise level it is facing
    logger.info(
        "%s: %s model, %s %s mapping [%g, %g] -> [0, 1], estimated noise sigma %.1f (0-255 scale of that range)",
        image.source, route.name, image.modality, mapping.kind, mapping.low, mapping.high, estimate_noise_level(mapped),
    )  # fmt: skip
    net = predict_array(
        mapped,
        route.predictor,
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
    batch_size: int = 8,
    overwrite: bool = False,
    progress: bool = True,
    device: torch.device | str | None = None,
    intensity: Callable[[LoadedImage], IntensityMapping] | None = None,
    scale: int = 1,
) -> list[Path]:
    """Denoise a file, a DICOM series folder, or a folder of files into ``output_dir``, same names and formats.

    Each input is read with :func:`read_image` (with the modality override), given its model by the router
    (refused with one line naming the file when no model fits), denoised by :func:`denoise_image` and written with
    :func:`write_like`. JPEG inputs are written as lossless PNG. A folder of DICOM files from different series
    gives one output file (one derived series) per file. If any input fails, the files this call already wrote
    are removed (files it replaced under ``overwrite=True`` stay replaced) and the error is raised.

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
        batch_size: slices per predictor call.
        overwrite: replace existing outputs.
        progress: show tqdm bars.
        device: torch device for the predictor's inputs; None leaves tensors on the CPU.
        intensity: picks the mapping for each image; default ``image.intensity`` (see
            :func:`~medical_denoise.io.intensity.default_intensity_mapping`). Use the one the model was trained with.
        scale: super-resolution factor of a plain callable (1 for same-size restoration); a router's models carry
            their own. Outputs are ``scale`` times larger in-plane with their geometry zoomed to keep the physical
            extent (see :func:`zoomed_like`).

    Returns:
        every written file.
    """
    router = _as_router(predictor, model_channels, modality, scale)
    input_path, output_dir = Path(input_path), Path(output_dir)
    items = collect_inputs(input_path, exclude=output_dir)
    targets = [_output_path(item, input_path, output_dir) for item in items]
    _check_plan(items, targets, overwrite)
    created_dir = not output_dir.exists()
    written: list[Path] = []
    created: list[Path] = []  # what a failure removes: files that did not exist before this call
    try:
        for item, target in tqdm(list(zip(items, targets)), desc="denoise", disable=not progress or len(items) < 2):
            image = read_image(item, modality=router.modality)
            route = router.route(image)
            restored = denoise_image(
                image, route, batch_size=batch_size, device=device, progress=progress, intensity=intensity
            )
            if route.spec.scale != 1:  # the writer takes shape and geometry from the image it is given
                image = zoomed_like(image, route.spec.scale, array=restored)
            pre_existing = {p for p in _planned_files(image, target) if p.exists()}
            text = route.spec.description or description
            out = write_like(image, restored, target, description=text, overwrite=overwrite)
            written.extend(out)
            created.extend(p for p in out if p not in pre_existing)
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        for folder in sorted({p.parent for p in created}, key=lambda p: len(p.parts), reverse=True):
            if folder != output_dir:
                _rmdir_quiet(folder)
        if created_dir:
            _rmdir_quiet(output_dir)
        raise
    return written


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


def _planned_files(image: LoadedImage, target: Path) -> list[Path]:
    return [target / f.name for f in image.files] if image.is_series else [target]


def _rmdir_quiet(folder: Path) -> None:
    try:
        folder.rmdir()  # only if empty
    except OSError:
        pass


def _check_plan(items: list[Path], targets: list[Path], overwrite: bool) -> None:
    """Refuse before any work: an output on an input, two inputs onto one output, or existing outputs."""
    seen: dict[Path, Path] = {}
    for item, target in zip(items, targets):
        if target in seen:
            raise ValueError(f"{item} and {seen[target]} would both be written to {target}.")
        seen[target] = item
        if _same(target, item) or target.resolve() == item.resolve():
            raise ValueError(f"{item}: output path {target} is the input itself; choose another output_dir.")
        occupied = any(target.iterdir()) if target.is_dir() else target.exists()
        if occupied and not overwrite:
            raise ValueError(f"{target} already exists; pass overwrite=True to replace it.")
    inputs = set()
    for item in items:
        inputs.update(p.resolve() for p in ([item] if item.is_file() else item.iterdir()))
    for target in targets:
        if target.resolve() in inputs:
            raise ValueError(f"output {target} is an input file; choose another output_dir.")

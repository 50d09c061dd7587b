"""File-level inference: read clinical files, run a 2D predictor slice by slice, write the same format back.

Channel rule (``model_channels`` is the predictor's input/output channel count):

* image channels == model channels: passed as is;
* grayscale image, RGB model (3): the channel is replicated 3 times and the 3 output channels averaged back;
* RGB image, grayscale model (1): each colour channel is denoised as its own grayscale sample;
* anything else: ``ValueError`` naming the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from medical_denoise.io.geometry import check_scale, zoomed_like
from medical_denoise.io.image import LoadedImage
from medical_denoise.io.intensity import IntensityMapping
from medical_denoise.io.readers import _IGNORED_NAMES, guess_format, is_dicom_file, read_image
from medical_denoise.io.writers import write_like
from medical_denoise.noise.estimate import estimate_noise_level

__all__ = ["collect_inputs", "denoise_path", "predict_array"]

logger = logging.getLogger(__name__)
_DICOM_NAMED = (".dcm", ".dicom", ".ima")


def _is_series_folder(folder: Path) -> bool:
    """A folder holding DICOM files directly (by suffix or by the DICM magic)."""
    for p in folder.iterdir():
        if p.is_file() and not p.name.startswith(".") and p.name.upper() not in _IGNORED_NAMES:
            if p.suffix.lower() in _DICOM_NAMED or is_dicom_file(p):
                return True
    return False


def collect_inputs(input_path: str | Path, exclude: str | Path | None = None) -> list[Path]:
    """What :func:`denoise_path` processes, each an argument for :func:`read_image`.

    A file is itself; a folder holding DICOM files is one series; any other folder gives its supported
    files (sorted) and its sub-folders that hold a DICOM series, one level deep. Files with unsupported
    suffixes in such a folder (CSV metadata, notes) are skipped with a log message.

    Args:
        input_path: a file or folder.
        exclude: a folder to leave out (the output folder, when it lies inside the input folder).
    """
    path = Path(input_path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.is_file() or _is_series_folder(path):
        return [path]
    items: list[Path] = []
    skipped: list[str] = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith(".") or (exclude is not None and Path(exclude).exists() and _same(entry, exclude)):
            continue
        if entry.is_dir():
            if _is_series_folder(entry):
                items.append(entry)
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


def _output_name(item: Path) -> str:
    fmt = guess_format(item)
    return Path(item.name).stem + ".png" if fmt == "jpeg" else item.name


def _check_channels(channels: int, model_channels: int, source: Path) -> None:
    if channels == model_channels or (channels, model_channels) in ((1, 3), (3, 1)):
        return
    raise ValueError(
        f"{source}: image has {channels} channel(s) but the model takes {model_channels}; supported are equal "
        "counts, grayscale image with an RGB model, and RGB image with a grayscale model."
    )


@torch.no_grad()
def predict_array(
    array: np.ndarray,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    *,
    model_channels: int,
    batch_size: int = 8,
    source: Path | str = "<array>",
    device: torch.device | str | None = None,
    progress: bool = False,
    scale: int = 1,
) -> np.ndarray:
    """Run a 2D predictor over ``array`` (C, H, W) or (C, H, W, D) in the network range, slice by slice.

    Args:
        array: float array already mapped to [0, 1]; volumes are cut along their last axis.
        predictor: maps an (N, model_channels, H, W) float tensor to (N, model_channels, scale * H, scale * W).
        model_channels: the predictor's channel count; see the module docstring for the channel rule.
        batch_size: samples per predictor call.
        source: file named in error messages.
        device: where input tensors go before the predictor (outputs come back to the CPU).
        progress: show a tqdm bar over batches.
        scale: in-plane size ratio of output to input (1: denoising/deblurring, 2 or 4: super-resolution).

    Returns:
        float32 array shaped like ``array``, its two in-plane axes ``scale`` times larger.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    scale = check_scale(scale, source)
    channels = int(array.shape[0])
    _check_channels(channels, model_channels, Path(source))
    volume = array.ndim == 4
    stack = np.moveaxis(array, -1, 0) if volume else array[None]  # (D, C, H, W)
    split = channels == 3 and model_channels == 1
    units = stack.reshape(-1, 1, *stack.shape[2:]) if split else stack  # RGB -> one sample per channel
    replicate = channels == 1 and model_channels == 3
    n, c, h, w = units.shape
    result = np.empty((n, c, h * scale, w * scale), dtype=np.float32)
    starts = range(0, n, batch_size)
    for start in tqdm(starts, desc=Path(source).name, disable=not progress, leave=False, unit="batch"):
        batch = np.ascontiguousarray(units[start : start + batch_size], dtype=np.float32)
        if replicate:
            batch = np.repeat(batch, 3, axis=1)
        x = torch.from_numpy(batch)
        y = predictor(x.to(device) if device is not None else x)
        if hasattr(y, "as_tensor"):  # MONAI MetaTensor
            y = y.as_tensor()
        expected = (*x.shape[:2], x.shape[2] * scale, x.shape[3] * scale)
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != expected:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(
                f"{source}: predictor returned {got} for an input of shape {tuple(x.shape)}; expected {expected} "
                f"(scale {scale})."
            )
        out = y.detach().float().cpu().numpy()
        if not np.isfinite(out).all():
            raise ValueError(f"{source}: predictor returned NaN or Inf values.")
        result[start : start + len(out)] = out.mean(axis=1, keepdims=True) if replicate else out
    if split:
        result = result.reshape(stack.shape[0], channels, h * scale, w * scale)
    return np.moveaxis(result, 0, -1) if volume else result[0]


def denoise_path(
    input_path: str | Path,
    output_dir: str | Path,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    *,
    model_channels: int,
    description: str,
    batch_size: int = 8,
    overwrite: bool = False,
    progress: bool = True,
    device: torch.device | str | None = None,
    intensity: Callable[[LoadedImage], IntensityMapping] | None = None,
    scale: int = 1,
) -> list[Path]:
    """Denoise a file, a DICOM series folder, or a folder of files into ``output_dir``, same names and formats.

    Each input is read with :func:`read_image`, mapped to [0, 1] with its intensity mapping, run through
    ``predictor`` slice by slice (last axis for volumes), mapped back to original units and written with
    :func:`write_like`. JPEG inputs are written as lossless PNG. If any input fails, the files this call
    already wrote are removed (files it replaced under ``overwrite=True`` stay replaced) and the error is
    raised.

    Args:
        input_path: file, DICOM series folder, or folder of files (see :func:`collect_inputs`).
        output_dir: destination folder, created if missing; may be inside or equal to the input's folder,
            but no output may land on an input file.
        predictor: (N, C, H, W) float tensor in [0, 1] -> same shape, e.g. a model in a SlidingWindowInferer.
        model_channels: channels the predictor takes (1 or 3 typically).
        description: model name/version stored in DICOM DerivationDescription.
        batch_size: slices per predictor call.
        overwrite: replace existing outputs.
        progress: show tqdm bars.
        device: torch device for the predictor's inputs; None leaves tensors on the CPU.
        intensity: picks the mapping for each image; default ``image.intensity`` (see
            :func:`~medical_denoise.io.intensity.default_intensity_mapping`). Use the one the model was trained with.
        scale: super-resolution factor of the predictor (1 for same-size restoration). Outputs are ``scale`` times
            larger in-plane with their geometry zoomed to keep the physical extent (see :func:`zoomed_like`).

    Returns:
        every written file.
    """
    input_path, output_dir = Path(input_path), Path(output_dir)
    items = collect_inputs(input_path, exclude=output_dir)
    targets = [output_dir / _output_name(item) for item in items]
    _check_plan(items, targets, overwrite)
    created_dir = not output_dir.exists()
    written: list[Path] = []
    created: list[Path] = []  # what a failure removes: files that did not exist before this call
    try:
        for item, target in tqdm(list(zip(items, targets)), desc="denoise", disable=not progress or len(items) < 2):
            image = read_image(item)
            mapping = intensity(image) if intensity is not None else image.intensity
            _check_channels(image.channels, model_channels, image.source)
            mapped = mapping.forward(image.array)
            # blind model: tell the user what noise level it is facing
            logger.info("%s: estimated noise sigma %.1f (0-255 scale)", image.source, estimate_noise_level(mapped))
            net = predict_array(
                mapped,
                predictor,
                model_channels=model_channels,
                batch_size=batch_size,
                source=image.source,
                device=device,
                progress=progress,
                scale=scale,
            )
            restored = mapping.inverse(net)
            if scale != 1:  # the writer takes shape and geometry from the image it is given
                image = zoomed_like(image, scale, array=restored)
            pre_existing = {p for p in _planned_files(image, target) if p.exists()}
            out = write_like(image, restored, target, description=description, overwrite=overwrite)
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


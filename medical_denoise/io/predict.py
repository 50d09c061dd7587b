"""Run a 2D or 2.5D predictor over an array in the network range, slice by slice (the core of inference).

Separate from :mod:`.inference` (files, folders, routing) so that :mod:`.tiled` can run it on tiles without an
import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from medical_denoise.io.fidelity import FidelityGuard
from medical_denoise.io.geometry import check_scale

__all__ = ["predict_array", "slab_indices"]


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

"""Bounded-memory denoising of PNG/JPEG/TIFF images: stored samples in, overlapping tiles through the model, stored
samples out.

The image stays as decoded (uint8/uint16, ``read_image(..., native=True)``: 3 bytes per RGB pixel); the output is
preallocated in the same dtype and in the layout the writer hands to Pillow/tifffile. Each tile is cut with a
margin, mapped to the network range, run through :func:`~medical_denoise.io.predict.predict_array` (the route's
model, 2.5D slabs and guard), and only its core, the tile without the margin, is mapped back, rounded and stored.
So the float working set is one tile's, whatever the image size, and the resident memory of a run is about the
input plus the output samples plus that working set (:func:`estimate_memory`, measured in ``docs/performance.md``).

An image no larger than one tile runs whole, exactly as :func:`~medical_denoise.io.inference.denoise_image` and the
writer would (same float operations, bit-identical output). Tiles see ``margin`` pixels of context on each inner
side; at the image border they end where the image ends, as the whole-image run does. TIFF stacks run their pages
in groups of ``batch_size`` output pages, each group with its 2.5D context pages, so their working set is bounded
too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from medical_denoise.io.image import LoadedImage
from medical_denoise.io.intensity import IntensityMapping
from medical_denoise.io.predict import predict_array
from medical_denoise.io.routing import Route, log_route

__all__ = [
    "BASE_MEMORY_GB",
    "TILE_ALIGN",
    "TILE_MARGIN",
    "TILE_SIZE",
    "bytes_per_pixel",
    "denoise_tiled",
    "estimate_memory",
    "tile_spans",
]

logger = logging.getLogger(__name__)

#: largest side (pixels, margins included) run through the model at once; larger images are tiled. The bundle's
#: sliding-window roi is 512 too, so a tile runs whole through the network (no window blending inside it).
TILE_SIZE = 512
#: context (pixels) each tile has beyond its core on every inner side; cropped away after the model.
TILE_MARGIN = 32
#: tile bounds fall on multiples of this: the total stride of the shipped U-Nets (three stride-2 levels).
TILE_ALIGN = 8
#: resident memory of an inference process that does not grow with the image: Python, torch and MONAI, the bundle's
#: models, and one tile's float working set at the default tile size (measured, docs/performance.md).
BASE_MEMORY_GB = 1.0


def tile_spans(
    length: int, tile_size: int = TILE_SIZE, margin: int = TILE_MARGIN, align: int = TILE_ALIGN
) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis: ``(start, stop, core_start, core_stop)``, the cores covering ``0 .. length`` once.

    One tile ``(0, length, 0, length)`` when ``length <= tile_size``. Otherwise cores of equal length (about) whose
    bounds are multiples of ``align``, each tile its core plus the margin (rounded up to a multiple of ``align``)
    on each side, clipped to the image, and its end moved out (by less than ``align``) so that it lies a multiple
    of ``align`` before the image's end. A strided network (total stride ``align``) is shift-equivariant only for
    shifts by multiples of its stride, so a tile then sees each pixel as the whole image does, also flipped and
    rotated (self-ensemble); no tile is longer than ``tile_size``.

    Raises:
        ValueError: ``tile_size`` below ``2 * margin + 4 * align`` (margin rounded up to ``align``), or
            ``margin < 0``, or ``align < 1``.
    """
    if margin < 0 or align < 1:
        raise ValueError(f"tile margin must be >= 0 and align >= 1, got {margin} and {align}.")
    m = -(-margin // align) * align
    core = tile_size - 2 * m - 2 * align  # room for rounding the core bounds and for the aligned end
    if core < 2 * align:
        raise ValueError(
            f"tile_size {tile_size} is too small for margin {margin}: it must be at least {2 * m + 4 * align}."
        )
    if length <= tile_size:
        return [(0, length, 0, length)]
    n = math.ceil(length / core)
    bounds = [min(length, align * round(i * length / (n * align))) for i in range(n)] + [length]
    spans = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        end = b + m
        end = length if end >= length else length - ((length - end) // align) * align
        spans.append((max(0, a - m), end, a, b))
    return spans


def bytes_per_pixel(channels: int, sample_bytes: int, decoder_bytes: int = 0) -> int:
    """Resident bytes per pixel of the tiled path that grow with the image.

    The stored input and the output (``channels * sample_bytes`` each) are held through the tiles; decoding holds
    the decoder's copy (``decoder_bytes`` per pixel: Pillow keeps 4 per RGB pixel, its sample size for grey) next
    to the input, and writing Pillow's copy next to the output (the input is dropped by then). The largest of the
    three phases counts: 7 bytes per pixel for an 8-bit RGB PNG/JPEG, 6 for an 8-bit RGB TIFF.
    """
    stored = channels * sample_bytes
    return max(2 * stored, stored + decoder_bytes)


def estimate_memory(pixels: int, channels: int, sample_bytes: int, decoder_bytes: int = 0) -> float:
    """Estimated peak resident memory (GiB) of denoising an image of ``pixels`` pixels (pages x rows x columns)."""
    return BASE_MEMORY_GB + pixels * bytes_per_pixel(channels, sample_bytes, decoder_bytes) / 2**30


def _tiles(
    shape: tuple[int, int], tile_size: int, margin: int, align: int
) -> Iterator[tuple[slice, slice, slice, slice]]:
    """(tile rows, tile columns, core rows, core columns) of an (H, W) plane, row by row."""
    for y0, y1, cy0, cy1 in tile_spans(shape[0], tile_size, margin, align):
        for x0, x1, cx0, cx1 in tile_spans(shape[1], tile_size, margin, align):
            yield slice(y0, y1), slice(x0, x1), slice(cy0, cy1), slice(cx0, cx1)


def _output(image: LoadedImage, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Preallocated output: (buffer in the writer's layout, its channel-first view shaped like the scaled input)."""
    c, h, w = image.array.shape[:3]
    if image.array.ndim == 3:
        buffer = np.empty((h * scale, w * scale, c), dtype=image.array.dtype)
        return buffer, np.moveaxis(buffer, -1, 0)
    pages = image.array.shape[3]
    buffer = np.empty((pages, h * scale, w * scale, c), dtype=image.array.dtype)
    return buffer, buffer.transpose(3, 1, 2, 0)


def denoise_tiled(
    image: LoadedImage,
    route: Route,
    *,
    tile_size: int = TILE_SIZE,
    margin: int = TILE_MARGIN,
    align: int = TILE_ALIGN,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    progress: bool = False,
    intensity: Callable[[LoadedImage], IntensityMapping] | None = None,
) -> np.ndarray:
    """The denoised image as stored samples (the input's uint8/uint16), ready for :func:`write_like`.

    Args:
        image: a PNG/JPEG/TIFF read with ``native=True``: ``(C, H, W)`` or ``(C, H, W, pages)`` unsigned integers.
        route: the router's answer for it (not a grey-pixels-only route: those are colour DICOM).
        tile_size: largest side run through the model at once (margins included); smaller images run whole.
        margin: context pixels on each inner side of a tile, cropped away after the model.
        align: tile bounds on multiples of this (the network's total stride, see :func:`tile_spans`).
        batch_size: output pages per predictor call (TIFF stacks); also the pages of one group.
        device: torch device for the predictor's inputs.
        progress: show a tqdm bar over tiles (when there are several).
        intensity: replaces the default mapping, as in :func:`denoise_image`.

    Returns:
        ``(C, scale * H, scale * W[, pages])`` in the input's dtype: a view of a contiguous ``(scale * H,
        scale * W, C)`` (or ``(pages, ..., C)``) buffer, which is what the writer hands to Pillow/tifffile.
    """
    array = image.array
    if array.dtype.kind != "u":
        raise ValueError(f"{image.source}: tiled denoising takes stored unsigned samples, got {array.dtype}.")
    if route.grey_pixels_only:
        raise ValueError(f"{image.source}: colour-coded images are not denoised in tiles.")
    spec = route.spec
    scale = int(spec.scale)
    mapping = intensity(image) if intensity is not None else image.intensity
    predictor = route.predictor_for(mapping)
    h, w = int(array.shape[1]), int(array.shape[2])
    pages = int(array.shape[3]) if array.ndim == 4 else 1
    k = int(spec.context_slices)
    info = np.iinfo(array.dtype)
    buffer, out = _output(image, scale)
    # the noise estimate of the log line: a central tile-sized crop (a stack: its middle page), not the whole image
    crop = tuple(slice(max(0, (n - tile_size) // 2), max(0, (n - tile_size) // 2) + tile_size) for n in (h, w))
    middle = (slice(pages // 2, pages // 2 + 1),) if array.ndim == 4 else ()
    note = "" if tile_size >= max(h, w) else f", central {tile_size}-pixel crop"
    log_route(image, route, mapping, mapping.forward(array[(slice(None), *crop, *middle)]), note)
    tiles = list(_tiles((h, w), tile_size, margin, align))
    groups = [(z, min(z + batch_size, pages)) for z in range(0, pages, batch_size)] if array.ndim == 4 else [None]
    if len(tiles) > 1:
        logger.info("%s: %d x %d in %d tiles of at most %d pixels (margin %d)", image.source, w, h, len(tiles),
                    tile_size, margin)  # fmt: skip
    clipped = 0
    for rows, cols, core_rows, core_cols in tqdm(
        tiles, desc=Path(str(image.source)).name, disable=not progress or len(tiles) < 2, leave=False, unit="tile"
    ):
        # the core inside the tile, and where it goes in the (scaled) output
        inner = (slice(core_rows.start - rows.start, core_rows.stop - rows.start),
                 slice(core_cols.start - cols.start, core_cols.stop - cols.start))  # fmt: skip
        scaled = (
            slice(inner[0].start * scale, inner[0].stop * scale),
            slice(inner[1].start * scale, inner[1].stop * scale),
        )
        target = (slice(core_rows.start * scale, core_rows.stop * scale),
                  slice(core_cols.start * scale, core_cols.stop * scale))  # fmt: skip
        for group in groups:
            if group is None:  # a 2D image
                values = array[:, rows, cols]
                keep: tuple = ()
                dest: tuple = ()
            else:  # pages start..stop with their 2.5D context; slab indices clamp only at the stack's own ends
                start, stop = group
                low, high = max(0, start - k), min(pages, stop + k)
                values = array[:, rows, cols, low:high]
                keep, dest = (slice(start - low, stop - low),), (slice(start, stop),)
            mapped = mapping.forward(values)
            net = predict_array(
                mapped,
                predictor,
                model_channels=spec.image_channels,
                context_slices=k,
                guard=spec.guard,
                batch_size=batch_size,
                source=image.source,
                device=device,
                scale=scale,
            )
            net = net[(slice(None), *scaled, *keep)]
            restored = mapping.inverse(net)
            if scale == 1:  # as denoise_image: what the network returned unchanged keeps its stored value exactly
                unchanged = net == mapped[(slice(None), *inner, *keep)]
                restored[unchanged] = values[(slice(None), *inner, *keep)][unchanged]
            stored = np.rint(restored)  # the writer's quantization of bitmaps (slope 1, intercept 0)
            clipped += int(np.count_nonzero((stored < info.min) | (stored > info.max)))
            out[(slice(None), *target, *dest)] = np.clip(stored, info.min, info.max).astype(array.dtype)
    if clipped:
        logger.warning(
            "%s: %d of %d values fall outside the stored range [%d, %d] (%s) and were clipped to it.",
            image.source, clipped, out.size, info.min, info.max, array.dtype.name,
        )  # fmt: skip
    del buffer  # ``out`` is a view of it
    return out

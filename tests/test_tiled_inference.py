"""Bounded-memory inference of PNG/JPEG/TIFF (issue 16): stored samples in, overlapping tiles, stored samples out.

Generated images and tiny networks only; nothing is timed. The tiled result is compared with the whole-image
result of the float path (``denoise_image`` + ``write_like``), which is what ``denoise_path`` ran before tiling.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from medical_denoise.io import (
    MAX_MEMORY_GB,
    FidelityGuard,
    ModelRouter,
    ModelSpec,
    denoise_image,
    denoise_path,
    estimate_memory,
    read_image,
    tile_spans,
    write_like,
)
from medical_denoise.io import readers as readers_module
from medical_denoise.io.tiled import BASE_MEMORY_GB, bytes_per_pixel
from medical_denoise.networks import DenoiseUNet, GeneratorPredictor
from tests.utils import TINY_NET

pytestmark = pytest.mark.filterwarnings("ignore:builtin type:DeprecationWarning")


def photo(h: int = 200, w: int = 300, channels: int = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """Smooth gradient plus noise, (H, W[, 3]) in ``dtype``."""
    top = np.iinfo(dtype).max
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 + 0.3 * np.sin(6 * xx * yy)], -1)[..., :channels]
    noisy = base + rng.normal(0, 0.08, base.shape)
    out = np.clip(np.rint(noisy * top), 0, top).astype(dtype)
    return out if channels == 3 else out[..., 0]


def tiny_predictor(channels: int = 3, context: int = 0, self_ensemble: bool = False) -> GeneratorPredictor:
    torch.manual_seed(0)
    net = DenoiseUNet(spatial_dims=2, in_channels=(2 * context + 1) * channels, out_channels=channels, residual=True,
                      **TINY_NET)  # fmt: skip
    return GeneratorPredictor(net, device="cpu", self_ensemble=self_ensemble)


class Recording:
    """Wraps a predictor; records the input shapes it saw."""

    def __init__(self, predictor) -> None:
        self.predictor, self.shapes = predictor, []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.predictor(x)


def whole_image(path: Path, out: Path, router: ModelRouter) -> np.ndarray:
    """The untiled float path: read as float32, denoise_image, write_like; the written pixels."""
    image = read_image(path)
    write_like(image, denoise_image(image, router.route(image)), out, description="t")
    return stored(out)


def stored(path: Path) -> np.ndarray:
    if path.suffix == ".tif":
        return tifffile.imread(path)
    with Image.open(path) as im:
        return np.asarray(im)


def run(src: Path, out: Path, router, **kwargs) -> Path:
    (written,) = denoise_path(src, out, router, description="t", progress=False, **kwargs)
    return written


def png_header_only(path: Path, width: int, height: int, colour_type: int = 2) -> Path:
    """A PNG whose IHDR claims ``width`` x ``height`` (8-bit RGB) and that holds no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


# ------------------------------------------------------------------------------------------------ tiles


@pytest.mark.parametrize("length", [1, 95, 96, 97, 200, 300, 513, 1000, 12000])
@pytest.mark.parametrize(("tile_size", "margin", "align"), [(96, 16, 8), (512, 32, 8), (128, 20, 4)])
def test_tile_spans_cover_the_axis_once_within_the_tile_size_on_aligned_bounds(length, tile_size, margin, align):
    spans = tile_spans(length, tile_size, margin, align)
    assert spans[0][2] == 0 and spans[-1][3] == length
    assert all(a[3] == b[2] for a, b in zip(spans, spans[1:]))  # cores meet, no gap, no overlap
    for start, stop, core_start, core_stop in spans:
        assert 0 <= start <= core_start < core_stop <= stop <= length
        assert stop - start <= tile_size
        if len(spans) > 1:
            assert start % align == 0 and (length - stop) % align == 0  # shift-equivariant, also flipped
            assert core_start - start >= min(margin, core_start) and stop - core_stop >= min(margin, length - core_stop)
    if length <= tile_size:
        assert spans == [(0, length, 0, length)]


def test_too_small_tile_size_is_refused_before_any_work(tmp_path):
    Image.fromarray(photo(20, 30)).save(tmp_path / "a.png")
    predictor = Recording(tiny_predictor())
    with pytest.raises(ValueError, match="tile_size 40 is too small for margin 16"):
        run(tmp_path / "a.png", tmp_path / "out", ModelRouter.fixed(ModelSpec(predictor=predictor, image_channels=3)),
            tile_size=40, tile_margin=16)  # fmt: skip
    assert predictor.shapes == [] and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ tiled == whole image


@pytest.mark.parametrize("self_ensemble", [False, True])
def test_rgb_tiles_match_the_whole_image_and_one_tile_is_identical(tmp_path, self_ensemble):
    src = tmp_path / "photo.png"
    Image.fromarray(photo(200, 300)).save(src)
    predictor = Recording(tiny_predictor(self_ensemble=self_ensemble))
    router = ModelRouter.fixed(ModelSpec(predictor=predictor, image_channels=3))
    whole = whole_image(src, tmp_path / "whole.png", router)
    one_tile = stored(run(src, tmp_path / "one", router, tile_size=300))
    np.testing.assert_array_equal(one_tile, whole)  # no tiling: bit for bit what the float path writes

    predictor.shapes.clear()
    tiled = stored(run(src, tmp_path / "tiled", router, tile_size=96, tile_margin=16))
    assert len(predictor.shapes) > 6 and max(max(s[2:]) for s in predictor.shapes) <= 96
    assert tiled.shape == whole.shape == (200, 300, 3) and tiled.dtype == np.uint8
    diff = np.abs(tiled.astype(int) - whole.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.02, (diff.max(), diff.mean())
    assert np.abs(whole.astype(int) - photo(200, 300).astype(int)).mean() > 1  # the network did change the image
    seams = stored(run(src, tmp_path / "no_margin", router, tile_size=96, tile_margin=0))
    assert np.abs(seams.astype(int) - whole.astype(int)).max() > 10  # without the margin the tiles would show


def test_grey_16_bit_png_with_a_2p5d_model_and_guard_matches_the_whole_image(tmp_path):
    src = tmp_path / "grey16.png"
    pixels = photo(150, 210, channels=1, dtype=np.uint16, seed=1)
    pixels[:40, :60] = 1234  # a constant region: the guard keeps it
    Image.fromarray(pixels).save(src)
    spec = ModelSpec(predictor=tiny_predictor(channels=1, context=1), image_channels=1, context_slices=1,
                     guard=FidelityGuard(3))  # fmt: skip
    router = ModelRouter.fixed(spec)
    whole = whole_image(src, tmp_path / "whole.png", router)
    tiled = stored(run(src, tmp_path / "tiled", router, tile_size=96, tile_margin=16))
    with Image.open(tmp_path / "tiled" / "grey16.png") as im:
        assert im.mode == "I;16" and im.size == (210, 150)
    assert tiled.dtype == np.uint16
    assert np.all(tiled[:40, :60] == 1234)
    diff = np.abs(tiled.astype(int) - whole.astype(int))
    assert diff.max() <= 2 * 257 and diff.mean() < 0.02 * 257, (diff.max(), diff.mean())


def test_tiff_stack_pages_run_in_groups_with_their_context_pages(tmp_path):
    src = tmp_path / "stack.tif"
    stack = np.stack([photo(70, 90, channels=1, seed=s) for s in range(5)])  # (pages, H, W) uint8
    tifffile.imwrite(src, stack, photometric="minisblack")
    calls = []

    def slab_mean(x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) slab of pages z-1, z, z+1 -> one page
        calls.append(tuple(x.shape))
        return (0.25 * x[:, :1] + 0.5 * x[:, 1:2] + 0.25 * x[:, 2:]) * 0.9 + 0.05

    router = ModelRouter.fixed(ModelSpec(predictor=slab_mean, image_channels=1, context_slices=1))
    whole = whole_image(src, tmp_path / "whole.tif", router)
    calls.clear()
    tiled = stored(run(src, tmp_path / "tiled", router, tile_size=48, tile_margin=8, batch_size=2))
    assert tiled.shape == (5, 70, 90) and tiled.dtype == np.uint8
    np.testing.assert_array_equal(tiled, whole)  # a pixel-wise model: tiles and page groups change nothing
    assert max(n for n, *_ in calls) <= 2 and max(max(s[2:]) for s in calls) <= 48


def test_rgba_png_and_jpeg_keep_mode_alpha_and_size(tmp_path):
    rgba = np.dstack([photo(120, 160), np.linspace(0, 255, 160 * 120).reshape(120, 160).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(photo(120, 160, seed=2)).save(tmp_path / "b.jpg", quality=95)
    router = ModelRouter.fixed(ModelSpec(predictor=tiny_predictor(), image_channels=3))
    denoise_path(tmp_path, tmp_path / "out", router, description="t", progress=False, tile_size=64, tile_margin=8)
    with Image.open(tmp_path / "out" / "a.png") as im:
        assert im.mode == "RGBA" and im.size == (160, 120)
        np.testing.assert_array_equal(np.asarray(im)[..., 3], rgba[..., 3])
    with Image.open(tmp_path / "out" / "b.png") as im:
        assert im.mode == "RGB" and im.size == (160, 120)


def test_native_read_keeps_the_stored_samples_as_a_view(tmp_path):
    Image.fromarray(photo(30, 40)).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png", native=True)
    assert image.array.dtype == np.uint8 and image.array.shape[0] == 3 and image.array.base is not None
    floats = read_image(image.source)
    np.testing.assert_array_equal(image.array, floats.array)
    assert image.intensity == floats.intensity


# ------------------------------------------------------------------------------------------- budget


def test_memory_estimate_counts_input_output_and_the_decoder_copy():
    assert bytes_per_pixel(3, 1, 4) == 7  # 8-bit RGB PNG/JPEG: Pillow's 4 + the array's 3 while decoding
    assert bytes_per_pixel(3, 1) == 6 and bytes_per_pixel(1, 2, 2) == 4 and bytes_per_pixel(3, 2) == 12
    assert estimate_memory(0, 3, 1, 4) == BASE_MEMORY_GB
    # the default budget takes a 12000 x 12000 8-bit RGB image, not a gigapixel one
    assert estimate_memory(12000 * 12000, 3, 1, 4) < MAX_MEMORY_GB < estimate_memory(10**9, 3, 1, 4)


def test_image_over_the_memory_budget_is_refused_from_its_header_in_one_line(tmp_path, monkeypatch):
    huge = png_header_only(tmp_path / "huge.png", 40000, 40000)  # 1.6 gigapixels claimed, no pixel data
    decoded = []
    monkeypatch.setattr(readers_module, "_decode_bitmap", lambda path: decoded.append(path))
    predictor = Recording(tiny_predictor())
    router = ModelRouter.fixed(ModelSpec(predictor=predictor, image_channels=3))
    with pytest.raises(ValueError) as err:
        run(huge, tmp_path / "out", router)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{huge}: 40000 x 40000 RGB PNG (1600 megapixels) needs about")
    assert "over the max_memory_gb budget of 4; refused before decoding: raise max_memory_gb" in message
    assert decoded == [] and predictor.shapes == []
    # the budget is the option: a smaller one refuses a small image too, a larger one lets the huge one through
    Image.fromarray(photo(200, 300)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="small.png: 300 x 200 RGB PNG .* budget of 1.0001"):
        run(tmp_path / "small.png", tmp_path / "out", router, max_memory_gb=1.0001)
    with pytest.raises(ValueError, match="huge.png: not a readable PNG"):  # accepted, then the reader finds no data
        monkeypatch.undo()
        run(huge, tmp_path / "out", router, max_memory_gb=20)


def test_the_budget_replaces_pillows_decompression_bomb_limit(tmp_path, monkeypatch):
    Image.fromarray(photo(100, 120)).save(tmp_path / "big.png")  # 12000 pixels, over twice Pillow's limit below
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    router = ModelRouter.fixed(ModelSpec(predictor=tiny_predictor(), image_channels=3))
    out = run(tmp_path / "big.png", tmp_path / "out", router)  # within max_memory_gb: decoded despite Pillow's limit
    assert Image.MAX_IMAGE_PIXELS == 1000  # and Pillow's limit is back afterwards
    with pytest.raises(ValueError, match="big.png: refused before decoding \\(no max_memory_gb or max_pixels"):
        run(tmp_path / "big.png", tmp_path / "out2", router, max_memory_gb=None)
    monkeypatch.undo()
    assert stored(out).shape == (100, 120, 3)


def test_super_resolution_tiles_write_the_scaled_core_of_each_tile(tmp_path):
    src = tmp_path / "small.png"
    Image.fromarray(photo(90, 130)).save(src)

    def upsample(x: torch.Tensor) -> torch.Tensor:  # pixel-wise x2: tiles and the whole image must agree exactly
        return (x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3) * 0.9 + 0.05).clone()

    router = ModelRouter.fixed(ModelSpec(predictor=upsample, image_channels=3, scale=2))
    image = read_image(src)
    whole = denoise_image(image, router.route(image))
    tiled = stored(run(src, tmp_path / "out", router, tile_size=48, tile_margin=8))
    assert tiled.shape == (180, 260, 3)
    np.testing.assert_array_equal(tiled, np.clip(np.rint(np.moveaxis(whole, 0, -1)), 0, 255).astype(np.uint8))

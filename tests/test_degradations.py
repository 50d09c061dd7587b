"""Tests of blur / downsampling / JPEG degradations and their seeded dictionary transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from skimage import data as skdata

from medical_denoise.noise import (
    AddNoised,
    Downsampled,
    GaussianBlurd,
    JpegCompressd,
    downsample,
    gaussian_blur,
    jpeg_compress,
)


def _camera(size=128):
    return (skdata.camera()[:size, :size].astype(np.float32) / 255.0)[None]


# --- gaussian_blur ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.7, 1.5, 3.0])
def test_blur_of_impulse_has_psf_moments(sigma):
    img = np.zeros((1, 41, 41), np.float32)
    img[0, 20, 20] = 1.0
    psf = gaussian_blur(img, sigma)[0].astype(np.float64)
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    r = np.arange(41) - 20
    var_y = (psf.sum(1) * r**2).sum()
    var_x = (psf.sum(0) * r**2).sum()
    # the erf-integrated kernel adds the box variance 1/12 of pixel integration
    assert var_y == pytest.approx(sigma**2 + 1 / 12, rel=0.03) and var_x == pytest.approx(var_y, rel=1e-5)


def test_blur_keeps_constants_types_and_3d():
    const = np.full((2, 9, 10, 11), 0.3, np.float32)
    np.testing.assert_allclose(gaussian_blur(const, 2.0), const, atol=1e-6)  # borders not darkened
    t = torch.rand(1, 16, 16, dtype=torch.float64)
    out = gaussian_blur(t, 1.0)
    assert type(out) is torch.Tensor and out.dtype == torch.float64 and out.std() < t.std()
    m = MetaTensor(torch.rand(1, 16, 16), meta={"filename_or_obj": "x"})
    assert isinstance(gaussian_blur(m, 1.0), MetaTensor) and gaussian_blur(m, 1.0).meta["filename_or_obj"] == "x"
    np.testing.assert_array_equal(gaussian_blur(const, 0.0), const)
    with pytest.raises(ValueError):
        gaussian_blur(const, -1.0)


# --- downsample ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("mode,shape", [("area", (3, 32, 48)), ("bicubic", (3, 32, 48)), ("area", (1, 16, 24, 8))])
def test_downsample_shapes(factor, mode, shape):
    img = np.random.default_rng(0).random(shape, dtype=np.float32)
    out = downsample(img, factor, mode)
    assert out.shape == (shape[0], *(s // factor for s in shape[1:])) and out.dtype == np.float32
    assert downsample(img, factor, mode, restore_size=True).shape == shape


def test_area_is_block_mean_and_bicubic_is_antialiased():
    img = np.random.default_rng(0).random((1, 16, 16), dtype=np.float32)
    block = img.reshape(1, 4, 4, 4, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(downsample(img, 4, "area"), block, atol=1e-6)
    # a cosine at 0.4 cycles/pixel is above the new Nyquist limit (0.25 at x2, 0.125 at x4)
    wave = (0.5 + 0.5 * np.cos(2 * np.pi * 0.4 * np.arange(64))).astype(np.float32)
    img = np.broadcast_to(wave, (1, 64, 64)).copy()
    for f in (2, 4):
        filtered = downsample(img, f, "bicubic")[:, 2:-2, 2:-2]
        naive = torch.nn.functional.interpolate(torch.from_numpy(img)[None], scale_factor=1 / f, mode="bicubic")
        assert filtered.std() < 0.02 < 0.15 < float(naive[0, :, 2:-2, 2:-2].std())  # suppressed vs aliased


def test_downsample_updates_affine_and_rejects_bad_input():
    m = MetaTensor(torch.rand(1, 16, 16, 8))
    out = downsample(m, 2, "area")
    np.testing.assert_allclose(np.diag(out.affine.numpy())[:3], [2, 2, 2])
    np.testing.assert_allclose(out.affine.numpy()[:3, 3], [0.5, 0.5, 0.5])  # voxel centres stay in place
    np.testing.assert_allclose(np.diag(m.affine.numpy())[:3], [1, 1, 1])  # input untouched
    with pytest.raises(ValueError, match="2 spatial"):
        downsample(m, 2, "bicubic")
    with pytest.raises(ValueError, match="factor"):
        downsample(np.zeros((1, 3, 3), np.float32), 4)


# --- jpeg -----------------------------------------------------------------------------------------------------------


def test_jpeg_gray_and_rgb_and_quality_ordering():
    gray = _camera()
    errs = [float(np.abs(jpeg_compress(gray, q) - gray).mean()) for q in (10, 50, 90)]
    assert errs[0] > errs[1] > errs[2] > 0
    out = jpeg_compress(gray, 50)
    assert out.shape == gray.shape and out.dtype == np.float32
    np.testing.assert_allclose(out * 255, np.round(out * 255), atol=1e-4)  # 8-bit levels
    rgb = np.moveaxis(skdata.astronaut()[:64, :64].astype(np.float32) / 255.0, -1, 0)
    t = jpeg_compress(torch.from_numpy(rgb.copy()), 30)
    assert isinstance(t, torch.Tensor) and t.shape == (3, 64, 64) and 0 <= t.min() and t.max() <= 1
    with pytest.raises(ValueError):
        jpeg_compress(np.zeros((2, 8, 8), np.float32), 50)
    with pytest.raises(ValueError):
        jpeg_compress(np.zeros((1, 8, 8, 8), np.float32), 50)


# --- dictionary transforms ----------------------------------------------------------------------------------------


def _chain():
    return Compose(
        [
            GaussianBlurd(sigma=(0.5, 2.0)),
            Downsampled(factor=(2, 4), mode="bicubic", restore_size=True),
            JpegCompressd(quality=(20, 80)),
            AddNoised(level=(5.0, 30.0)),
        ]
    )


def test_chain_keeps_first_clean_target_and_records_everything():
    clean = _camera(64)
    d = _chain().set_random_state(0)({"image": clean})
    np.testing.assert_array_equal(d["label"], clean)  # only the first transform stored the target
    assert [e["name"] for e in d["degradations"]] == ["blur", "downsample", "jpeg", "noise"]
    assert 0.5 <= d["blur_sigma"] <= 2.0 and d["downsample_factor"] in (2, 4) and 20 <= d["jpeg_quality"] <= 80
    assert d["image"].shape == clean.shape and 5.0 <= d["noise_level"] <= 30.0


def test_transforms_are_deterministic_and_seed_key_order_free():
    clean = _camera(64)
    a = _chain().set_random_state(5)({"image": clean})
    b = _chain().set_random_state(5)({"image": clean})
    c = _chain().set_random_state(6)({"image": clean})
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["degradations"] == b["degradations"] and a["degradations"] != c["degradations"]

    def seeded():
        return Compose([GaussianBlurd(sigma=(0.5, 3.0), seed_key="f"), JpegCompressd(quality=(10, 90), seed_key="f")])

    names = ["a.png", "b.png", "c.png"]
    t1, t2 = seeded().set_random_state(1), seeded().set_random_state(2)
    fwd = {n: t1({"image": clean, "f": n}) for n in names}
    for n in reversed(names):
        rev = t2({"image": clean, "f": n})
        np.testing.assert_array_equal(rev["image"], fwd[n]["image"])
        assert rev["degradations"] == fwd[n]["degradations"]
    assert len({fwd[n]["jpeg_quality"] for n in names} | {fwd[n]["blur_sigma"] for n in names}) > 2


@pytest.mark.parametrize("factor", [2, 4])
def test_downsampled_transform_shapes_and_meta(factor):
    img = MetaTensor(torch.rand(1, 32, 32, 16))
    d = Downsampled(factor=factor)({"image": img})
    assert d["image"].shape == (1, 32 // factor, 32 // factor, 16 // factor) and d["label"].shape == img.shape
    assert d["image"].meta["downsample_factor"] == factor and d["downsample_mode"] == "area"
    assert "downsample_factor" not in d["label"].meta


def test_transform_argument_and_input_checks():
    with pytest.raises(ValueError):
        Downsampled(factor=1)
    with pytest.raises(ValueError):
        Downsampled(mode="nearest")
    with pytest.raises(ValueError):
        JpegCompressd(quality=(50, 100))
    with pytest.raises(ValueError):
        GaussianBlurd(sigma=(2.0, 1.0))
    with pytest.raises(ValueError, match="spatial dims"):
        JpegCompressd()({"image": np.zeros((1, 8, 8, 8), np.float32)})
    with pytest.raises(ValueError, match="spatial dims"):
        Downsampled(mode="bicubic")({"image": np.zeros((1, 8, 8, 8), np.float32)})
    bad = np.zeros((1, 8, 8), np.float32)
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="img_3.png"):
        GaussianBlurd(seed_key="f")({"image": bad, "f": "img_3.png"})

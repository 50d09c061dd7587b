"""Tests of the noise models and the AddNoised transform (statistics, seeding, types, bookkeeping)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, list_data_collate
from monai.transforms import Compose
from monai.utils import set_determinism
from scipy import stats

from medical_denoise.noise import (
    NOISE_MODELS,
    AddNoised,
    AppendNoiseLevelMapd,
    GaussianNoise,
    PoissonGaussianNoise,
    RicianNoise,
    SpeckleNoise,
    make_noise_model,
    rician_mean,
)

KINDS = sorted(NOISE_MODELS)


def _flat(x, n=65536, dtype=np.float32):
    """A constant (1, n) image; (C, H, W) layout is irrelevant to the pixel-wise statistics."""
    return np.full((1, 256, n // 256), x, dtype=dtype)


def _noisy(model, clean, level, seed=0):
    return model.apply(clean, level, np.random.default_rng(seed))


# --- statistics ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [5.0, 25.0, 50.0])
def test_gaussian_residual_matches_theory(sigma):
    clean = np.random.default_rng(1).random((1, 256, 256), dtype=np.float32)
    res = (_noisy(GaussianNoise(sigma), clean, sigma) - clean).astype(np.float64)
    n, s = res.size, sigma / 255
    assert abs(res.mean()) < 5 * s / math.sqrt(n)
    assert abs(res.std() / s - 1) < 5 / math.sqrt(2 * n)
    assert abs(stats.skew(res.ravel())) < 0.05 and abs(stats.kurtosis(res.ravel())) < 0.1


def test_poisson_gaussian_variance_is_linear_in_signal():
    level, read = 25.0, 5.0
    model = PoissonGaussianNoise(level, read_sigma=read)
    a, b = model.gain(level)
    assert a * 0.5 + b == pytest.approx((level / 255) ** 2)  # documented: total std at mid-grey equals level
    xs = np.array([0.05, 0.25, 0.5, 0.75, 1.0])
    n = 40000
    var, mean = [], []
    for i, x in enumerate(xs):
        y = _noisy(model, _flat(x, n), level, seed=i).astype(np.float64)
        var.append(y.var())
        mean.append(y.mean())
    var = np.array(var)
    np.testing.assert_allclose(mean, xs, atol=5 * math.sqrt(a + b) / math.sqrt(n))  # unbiased
    np.testing.assert_allclose(var, a * xs + b, rtol=5 * math.sqrt(2 / n))
    slope, intercept = np.polyfit(xs, var, 1)
    assert slope == pytest.approx(a, rel=0.05) and intercept == pytest.approx(b, rel=0.3)
    assert var[-1] / var[0] > 10  # clearly signal dependent, unlike Gaussian noise


def test_poisson_gaussian_counts_are_quantised():
    model = PoissonGaussianNoise(20.0)  # no read noise: noisy = a * integer counts
    a, _ = model.gain(20.0)
    y = _noisy(model, _flat(0.3, 4096), 20.0).astype(np.float64)
    np.testing.assert_allclose(y / a, np.round(y / a), atol=1e-3)
    assert y.min() >= 0


@pytest.mark.parametrize("nu", [0.0, 0.05, 0.1, 0.3])
def test_rician_bias_matches_closed_form(nu):
    level = 25.0
    s = level / 255
    y = _noisy(RicianNoise(level), _flat(nu), level).astype(np.float64)
    expected = stats.rice.mean(nu / s, scale=s)  # independent closed form from scipy
    assert rician_mean(nu, s) == pytest.approx(expected, rel=1e-6)
    assert abs(y.mean() - expected) < 5 * y.std() / math.sqrt(y.size)
    assert y.min() >= 0
    if nu < s:  # low SNR: clearly biased upwards
        assert y.mean() - nu > 0.5 * s


def test_rician_mean_limits():
    assert rician_mean(0.0, 1.0) == pytest.approx(math.sqrt(math.pi / 2))
    assert rician_mean(100.0, 1.0) == pytest.approx(math.sqrt(100.0**2 + 1.0), rel=1e-4)  # high SNR, finite


@pytest.mark.parametrize("distribution", ["gaussian", "gamma"])
def test_speckle_variance_scales_with_signal_squared(distribution):
    level = 40.0
    s = level / 255
    model = SpeckleNoise(level, distribution=distribution)
    for i, x in enumerate([0.1, 0.4, 1.0]):
        y = _noisy(model, _flat(x), level, seed=i).astype(np.float64)
        n = y.size
        assert abs(y.mean() - x) < 5 * s * x / math.sqrt(n)
        assert y.var() / x**2 == pytest.approx(s**2, rel=0.05)
        if distribution == "gamma":
            assert y.min() >= 0


def test_zero_signal_stays_zero_for_multiplicative_and_poisson():
    clean = np.zeros((1, 16, 16), np.float32)
    assert np.all(_noisy(SpeckleNoise(30.0), clean, 30.0) == 0)
    assert np.all(_noisy(PoissonGaussianNoise(30.0), clean, 30.0) == 0)


# --- levels and construction --------------------------------------------------------------------------------------


def test_level_range_is_sampled_uniformly_within_bounds():
    model = GaussianNoise((10.0, 30.0))
    rng = np.random.default_rng(0)
    levels = np.array([model.sample_level(rng) for _ in range(2000)])
    assert levels.min() >= 10 and levels.max() <= 30
    assert stats.kstest((levels - 10) / 20, "uniform").pvalue > 1e-3
    assert GaussianNoise(7.0).sample_level(rng) == 7.0


@pytest.mark.parametrize("bad", [-1.0, (5.0, 1.0), (1.0, 2.0, 3.0), float("nan"), "x"])
def test_bad_levels_raise(bad):
    with pytest.raises(ValueError):
        GaussianNoise(bad)


def test_make_noise_model():
    for kind in KINDS:
        m = make_noise_model(kind, 10.0)
        assert m.name == kind and isinstance(m, NOISE_MODELS[kind])
    assert make_noise_model("poisson_gaussian", 10.0, read_sigma=3.0).read_sigma == 3.0
    with pytest.raises(ValueError, match="unknown noise kind"):
        make_noise_model("salt", 10.0)
    with pytest.raises(ValueError):
        PoissonGaussianNoise(5.0, read_sigma=10.0)  # read noise cannot exceed the total


def test_integer_images_are_rejected():
    with pytest.raises(TypeError, match="floating-point"):
        GaussianNoise(5.0).apply(np.zeros((1, 4, 4), np.uint8), 5.0, np.random.default_rng(0))


# --- AddNoised: seeding ---------------------------------------------------------------------------------------------


def _sample(name="a.png", value=0.5, shape=(1, 32, 32)):
    return {"image": np.full(shape, value, np.float32), "filename": name}


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_noise_different_seed_different(kind):
    def run(seed):
        t = AddNoised("image", kind, (10.0, 40.0))
        t.set_random_state(seed)
        return t(_sample())

    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["noise_level"] == b["noise_level"]
    assert not np.array_equal(a["image"], c["image"]) and a["noise_level"] != c["noise_level"]


def test_successive_calls_differ_and_compose_determinism():
    t = AddNoised()
    t.set_random_state(0)
    assert not np.array_equal(t(_sample())["image"], t(_sample())["image"])

    def run():
        set_determinism(seed=0)
        try:
            return Compose([AddNoised(level=(5.0, 50.0))])(_sample())["image"]
        finally:
            set_determinism(seed=None)

    np.testing.assert_array_equal(run(), run())
    c1, c2 = Compose([AddNoised()]).set_random_state(9), Compose([AddNoised()]).set_random_state(9)
    np.testing.assert_array_equal(c1(_sample())["image"], c2(_sample())["image"])


def test_level_map_holds_the_drawn_gaussian_std_in_the_image_range():
    """noise_level_map.yaml's training input: AddNoised's 0-255 sigma, scaled to [0, 1], as a 4th channel."""
    t = Compose([
        AddNoised(level=(10.0, 40.0), seed_key="filename"),
        AppendNoiseLevelMapd("image", level_key="noise_level", scale=1.0 / 255.0),
    ])  # fmt: skip
    out = t(_sample(shape=(3, 128, 128)))
    image, std = torch.as_tensor(out["image"]), out["noise_level"] / 255.0
    assert image.shape == (4, 128, 128) and 10.0 <= out["noise_level"] <= 40.0
    assert torch.allclose(image[3], torch.full((128, 128), std))
    assert float((image[:3] - 0.5).std()) == pytest.approx(std, rel=0.05)  # the map is the noise really added
    with pytest.raises(KeyError, match="noise_level"):
        AppendNoiseLevelMapd("image", level_key="noise_level")(_sample())


def test_seed_key_noise_is_independent_of_order_and_instance():
    names = ["p1/a.png", "p2/b.png", "p3/c.png"]
    t1 = AddNoised(noise="rician", level=(5.0, 40.0), seed_key="filename", seed=7)
    t1.set_random_state(1)
    first = {n: t1(_sample(n)) for n in names}
    t2 = AddNoised(noise="rician", level=(5.0, 40.0), seed_key="filename", seed=7)
    t2.set_random_state(2)  # the global/MONAI random state plays no role
    for n in reversed(names):
        d = t2(_sample(n))
        np.testing.assert_array_equal(d["image"], first[n]["image"])
        assert d["noise_level"] == first[n]["noise_level"]
    assert not np.array_equal(first[names[0]]["image"], first[names[1]]["image"])
    other_seed = AddNoised(noise="rician", level=(5.0, 40.0), seed_key="filename", seed=8)(_sample(names[0]))
    assert not np.array_equal(other_seed["image"], first[names[0]]["image"])
    other_level = AddNoised(noise="rician", level=25.0, seed_key="filename", seed=7)(_sample(names[0]))
    assert not np.array_equal(other_level["image"], first[names[0]]["image"])


# noise of "case_001.png" at sigma 25 on mid-grey; Python's salted hash() would change it per process. numpy does
# not promise Generator streams across major versions (NEP 19): if it changes, update and note it in the changelog.
PINNED = [0.29965150356292725, 0.5649264454841614, 0.5712763071060181, 0.5371206998825073]


def test_seed_key_is_stable_across_processes():
    d = AddNoised(level=25.0, seed_key="filename", seed=0)(_sample("case_001.png", shape=(1, 2, 2)))
    again = AddNoised(level=25.0, seed_key="filename", seed=0)(_sample("case_001.png", shape=(1, 2, 2)))
    np.testing.assert_array_equal(d["image"], again["image"])
    np.testing.assert_allclose(d["image"].ravel(), PINNED, rtol=0, atol=1e-6)


def test_seed_key_uses_filename_of_metatensor_or_meta_dict():
    img = MetaTensor(torch.full((1, 8, 8), 0.5), meta={"filename_or_obj": "/data/x.nii.gz"})
    by_tensor = AddNoised(seed_key="image")({"image": img})
    by_meta = AddNoised(seed_key="image_meta_dict")({"image": img.clone(), "image_meta_dict": dict(img.meta)})
    by_name = AddNoised(seed_key="f")({"image": img.clone(), "f": "/data/x.nii.gz"})
    torch.testing.assert_close(by_tensor["image"], by_meta["image"], rtol=0, atol=0)
    torch.testing.assert_close(by_tensor["image"], by_name["image"], rtol=0, atol=0)
    with pytest.raises(KeyError, match="seed_key"):
        AddNoised(seed_key="missing")({"image": img})


# --- AddNoised: values, types, bookkeeping --------------------------------------------------------------------------


def test_no_wraparound_near_one_and_clip():
    near_one = np.full((1, 64, 64), 254 / 255, np.float32)
    d = AddNoised(level=25.0)({"image": near_one})
    assert d["image"].max() > 1.0 and d["image"].min() > 0.5  # exceeds 1, never wraps to ~0
    c = AddNoised(level=25.0, clip=True)({"image": near_one})
    assert c["image"].max() <= 1.0 and c["image"].min() >= 0.0
    assert np.all(near_one == np.float32(254 / 255))  # input untouched


def test_target_and_metadata_recorded():
    img = MetaTensor(torch.rand(1, 16, 16), meta={"filename_or_obj": "a.nii"})
    data = {"image": img}
    d = AddNoised(noise="speckle", level=12.0)(data)
    assert data.keys() == {"image"} and data["image"] is img  # input dict untouched
    torch.testing.assert_close(d["label"], img, rtol=0, atol=0)
    assert d["label"] is not img and isinstance(d["label"], MetaTensor)
    assert d["image"].meta["noise_kind"] == "speckle" and d["image"].meta["noise_level"] == 12.0
    assert "noise_kind" not in d["label"].meta and "noise_kind" not in img.meta
    assert d["noise_kind"] == "speckle" and isinstance(d["noise_level"], float) and d["noise_level"] == 12.0
    assert d["degradations"] == [{"name": "noise", "noise_kind": "speckle", "noise_level": 12.0}]
    batch = list_data_collate([d, AddNoised(noise="speckle", level=12.0)({"image": img})])
    assert batch["noise_kind"] == ["speckle", "speckle"] and batch["noise_level"].shape == (2,)
    assert batch["image"].shape == (2, 1, 16, 16)


def test_target_key_rules():
    clean = np.full((1, 8, 8), 0.5, np.float32)
    d = AddNoised(keys=["image", "other"])({"image": clean, "other": clean * 0.2})
    np.testing.assert_array_equal(d["label"], clean)  # first key's clean copy
    assert not np.array_equal(d["image"] - 0.5, d["other"] - 0.1)  # keys get independent noise
    kept = AddNoised()({"image": clean, "label": np.zeros_like(clean)})
    assert np.all(kept["label"] == 0)  # an existing target is never replaced
    none = AddNoised(target_key=None)({"image": clean})
    assert "label" not in none
    missing = AddNoised(keys=["image", "nope"], allow_missing_keys=True)({"image": clean})
    assert missing["image"].shape == clean.shape
    with pytest.raises(KeyError):
        AddNoised(keys=["image", "nope"])({"image": clean})


@pytest.mark.parametrize("kind", KINDS)
def test_types_dtypes_and_3d(kind):
    shape = (2, 6, 8, 10)
    base = np.random.default_rng(0).random(shape, dtype=np.float32) * 0.8 + 0.1
    outs = {}
    for name, img in {
        "numpy": base,
        "torch": torch.from_numpy(base.copy()),
        "meta": MetaTensor(torch.from_numpy(base.copy())),
        "numpy64": base.astype(np.float64),
    }.items():
        t = AddNoised(noise=kind, level=20.0, seed_key="filename")
        out = t({"image": img, "filename": "same"})["image"]
        assert type(out) is type(img) and tuple(out.shape) == shape and out.dtype == img.dtype
        outs[name] = np.asarray(out, dtype=np.float64)
        assert not np.allclose(outs[name], base)
    # the same seed gives the same noise whatever the container
    np.testing.assert_allclose(outs["numpy"], outs["torch"], atol=1e-6)
    np.testing.assert_allclose(outs["numpy"], outs["meta"], atol=1e-6)
    np.testing.assert_allclose(outs["numpy"], outs["numpy64"], atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_tensor_stays_on_device(kind):
    img = torch.rand(1, 16, 16, device="cuda")
    out = AddNoised(noise=kind, level=20.0, seed_key="f")({"image": img, "f": "x"})["image"]
    ref = AddNoised(noise=kind, level=20.0, seed_key="f")({"image": img.cpu(), "f": "x"})["image"]
    assert out.device == img.device and out.dtype == img.dtype
    torch.testing.assert_close(out.cpu(), ref, atol=1e-6, rtol=0)


def test_bad_inputs_raise_clear_errors():
    nan = np.full((1, 4, 4), np.nan, np.float32)
    with pytest.raises(ValueError, match=r"scan_7\.dcm.*NaN"):
        AddNoised(seed_key="f")({"image": nan, "f": "scan_7.dcm"})
    with pytest.raises(ValueError, match="channel-first"):
        AddNoised()({"image": np.zeros((4, 4), np.float32)})
    with pytest.raises(TypeError, match="dtype"):
        AddNoised()({"image": np.zeros((1, 4, 4), np.uint8)})
    with pytest.raises(ValueError, match="unknown noise kind"):
        AddNoised(noise="pepper")


def test_estimate_noise_level_recovers_gaussian_sigma():
    from skimage import data

    from medical_denoise.noise import GaussianNoise, estimate_noise_level

    clean = np.moveaxis(data.astronaut()[:256, :256].astype(np.float32) / 255, -1, 0)
    rng = np.random.default_rng(0)
    for sigma in (10.0, 25.0, 50.0):
        noisy = GaussianNoise(sigma).apply(clean, sigma, rng)
        assert estimate_noise_level(noisy) == pytest.approx(sigma, rel=0.15)
    grey_volume = np.repeat(clean[:1, ..., None], 3, axis=-1)
    assert estimate_noise_level(GaussianNoise(25.0).apply(grey_volume, 25.0, rng)) == pytest.approx(25, rel=0.15)


@pytest.mark.parametrize("shape", [(1, 5, 5), (3, 5, 5), (1, 8, 8, 3)])
def test_estimate_noise_level_of_a_constant_image_is_zero_without_warnings(shape):
    from medical_denoise.noise import estimate_noise_level

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # skimage's estimator alone warns and returns NaN here
        assert estimate_noise_level(np.zeros(shape, np.float32)) == 0.0
        assert estimate_noise_level(np.full(shape, 0.25, np.float32)) == pytest.approx(0.0, abs=1e-6)

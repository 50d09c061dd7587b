"""CT/MR training noise in physical units and the 2.5D slab transform (noise/clinical.py, noise/ct_lowdose.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from medical_denoise.data import ClinicalSlabd, balanced_weights
from medical_denoise.io import CT_WINDOW
from medical_denoise.networks import ConditionalPatchDiscriminator, DenoiseUNet
from medical_denoise.noise import (
    AddClinicalNoised,
    AddScanNoised,
    AppendNoiseLevelMapd,
    CTNoiseBankd,
    LowDoseCTNoise,
)

LOW, HIGH = CT_WINDOW  # the fixed CT map: LOW HU -> 0, HIGH HU -> 1
CT_SPAN = HIGH - LOW


def water_cylinder(size: int = 96) -> np.ndarray:
    """A 0 HU disk (a water phantom) in air, -3024 HU outside the scan circle as on real scanners."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(yy, xx)
    hu = np.where(r < size * 0.35, 0.0, -1000.0)
    hu[r > size / 2] = -3024.0
    return hu.astype(np.float32)


def ct_info() -> dict:
    return {"low": LOW, "high": HIGH, "modality": "CT", "pixel_spacing": 4.0}


# ------------------------------------------------------------------------------------------ low-dose CT


def test_lowdose_noise_follows_the_dose_and_is_correlated():
    hu = water_cylinder()
    inside = np.hypot(*(np.mgrid[:96, :96] - 47.5)) < 96 * 0.25
    std = {}
    for i0 in (2e4, 8e4):
        noise = LowDoseCTNoise(i0=i0, electronic_sigma=0.0, n_angles=90).noise(hu, 4.0, np.random.default_rng(0))
        assert noise.shape == hu.shape and noise.dtype == np.float32
        std[i0] = noise[inside].std()
        assert abs(noise[inside].mean()) < 0.2 * std[i0]
    # Poisson noise: 4x the photons halves the std
    assert std[2e4] / std[8e4] == pytest.approx(2.0, rel=0.2)
    # FBP noise is not white: horizontal neighbours are correlated (white noise would give ~0)
    noise = LowDoseCTNoise(i0=2e4, n_angles=90).noise(hu, 4.0, np.random.default_rng(1))
    pair = inside[:, :-1] & inside[:, 1:]
    assert abs(np.corrcoef(noise[:, :-1][pair], noise[:, 1:][pair])[0, 1]) > 0.1


def test_lowdose_noise_is_seeded_and_validates_its_input():
    model = LowDoseCTNoise(i0=1e4, n_angles=30)
    a = model.noise(water_cylinder(32), 2.0, np.random.default_rng(3))
    b = model.noise(water_cylinder(32), 2.0, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="2D slice"):
        model.noise(np.zeros((2, 8, 8)), 1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="spacing"):
        model.noise(np.zeros((8, 8)), 0.0, np.random.default_rng(0))
    with pytest.raises(ValueError):
        LowDoseCTNoise(i0=0)


def test_noise_bank_is_cached_per_volume_and_only_for_ct(tmp_path):
    volume = np.stack([water_cylinder(32)] * 3, axis=-1)
    image = torch.from_numpy((volume[None] - LOW) / CT_SPAN)
    bank_t = CTNoiseBankd("image", LowDoseCTNoise(i0=1e4, n_angles=30), realizations=2, cache_dir=tmp_path)
    out = bank_t({"image": image, "image_intensity": ct_info(), "id": "phantom"})
    bank = out["image_lowdose"]
    assert bank.shape == (2, 32, 32, 3) and bank.dtype == np.float16  # noise in HU
    assert 1.0 < np.abs(bank).mean() < 1000.0
    assert not np.array_equal(bank[0], bank[1]) and not np.array_equal(bank[..., 0], bank[..., 1])
    cached = list(tmp_path.glob("ct_lowdose_*.npy"))
    assert len(cached) == 1
    # a second call reads the file: change it on disk and the change shows
    np.save(cached[0], np.zeros_like(bank))
    again = bank_t({"image": image, "image_intensity": ct_info(), "id": "phantom"})["image_lowdose"]
    assert not again.any()
    mr = bank_t({"image": image, "image_intensity": {**ct_info(), "modality": "MR"}, "id": "m"})
    assert mr["image_lowdose"] is None


# ------------------------------------------------------------------------------------------ clinical noise


def _slab(value: float = 0.3, shape=(3, 64, 64)) -> torch.Tensor:
    return torch.full(shape, value)


def test_ct_gaussian_noise_is_in_hu_and_spares_the_padding():
    t = AddClinicalNoised("image", clean_prob=0.0, ct_sigma_hu=40.0, lowdose_prob=0.0, seed_key="id")
    out = t({"image": _slab(), "image_intensity": ct_info(), "id": "a"})
    noise_hu = (out["image"].numpy() - 0.3) * CT_SPAN
    assert noise_hu.std() == pytest.approx(40.0, rel=0.05)
    padding = (-3024.0 - LOW) / CT_SPAN  # outside the reconstruction circle: no noise on a scanner
    spared = t({"image": _slab(padding), "image_intensity": ct_info(), "id": "a"})["image"]
    assert torch.equal(spared, _slab(padding))
    assert out["noise_params"] == {"kind": "gaussian_hu", "level": 40.0, "std": 40.0 / CT_SPAN}
    assert out["noise_std"] == 40.0 / CT_SPAN  # the level a noise-level-conditioned generator is told
    # seeded by id: the same noisy slab every time, another id gives another one
    again = t({"image": _slab(), "image_intensity": ct_info(), "id": "a"})["image"]
    other = t({"image": _slab(), "image_intensity": ct_info(), "id": "b"})["image"]
    assert torch.equal(out["image"], again) and not torch.equal(out["image"], other)
    # the three slices get independent noise
    n = out["image"].numpy() - 0.3
    assert abs(np.corrcoef(n[0].ravel(), n[1].ravel())[0, 1]) < 0.1


@pytest.mark.parametrize("info", [ct_info(), {"low": 0.0, "high": 800.0, "modality": "MR"}])
def test_a_repeated_slice_carries_the_same_noise_on_every_channel(info):
    # inference repeats one noisy slice (a 2D image, the clamped end of a volume): training must show the same
    t = AddClinicalNoised("image", clean_prob=0.0, ct_sigma_hu=30.0, lowdose_prob=0.0, mr_sigma=0.05, seed_key="id")
    out = t({"image": _slab(0.5), "image_intensity": info, "id": "a", "slab_indices": [4, 4, 5]})["image"]
    assert torch.equal(out[0], out[1]) and not torch.equal(out[1], out[2])
    flat = t({"image": _slab(0.5), "image_intensity": info, "id": "a", "slab_indices": [2, 2, 2]})["image"]
    assert torch.equal(flat[0], flat[1]) and torch.equal(flat[1], flat[2]) and flat.std() > 0


def test_scan_noise_goes_into_the_target_too_and_is_not_the_told_level():
    """AddScanNoised: CT only, the same noise on the slab's centre and the target, padding exact, untold."""
    t = AddScanNoised("image", sigma_hu=(20.0, 20.0), prob=1.0)
    t.set_random_state(0)
    indices = [3, 4, 4]  # a clamped slab: slices 4 and 4 must carry the same noise
    clean = _slab(0.3)
    clean[0, :4] = (-3024.0 - LOW) / CT_SPAN  # padding rows of slice 3
    data = {"image": clean, "label": clean[1:2].clone(), "image_intensity": ct_info(), "slab_indices": indices}
    out = t(data)
    noise_hu = (out["image"].numpy() - clean.numpy()) * CT_SPAN
    assert noise_hu[2, 8:].std() == pytest.approx(20.0, rel=0.1)
    assert np.array_equal(noise_hu[1], noise_hu[2]) and not np.array_equal(noise_hu[0], noise_hu[1])
    assert (noise_hu[0, :4] == 0).all()  # padding stays exact
    np.testing.assert_allclose(out["label"].numpy(), out["image"].numpy()[1:2], atol=1e-6)  # the target keeps it
    # then AddClinicalNoised adds its own and reports only that as the level
    told = AddClinicalNoised("image", clean_prob=0.0, ct_sigma_hu=10.0, lowdose_prob=0.0, seed_key="id")
    assert told({**out, "id": "a"})["noise_std"] == 10.0 / CT_SPAN
    mr = {"low": 0.0, "high": 800.0, "modality": "MR"}
    assert torch.equal(t({**data, "image_intensity": mr})["image"], clean)  # MR: never
    assert torch.equal(AddScanNoised("image", prob=0.0)(data)["image"], clean)
    with pytest.raises(ValueError, match="prob must be in"):
        AddScanNoised("image", prob=1.5)


def test_mr_rician_noise_is_relative_to_the_robust_range():
    info = {"low": 0.0, "high": 800.0, "modality": "MR"}
    t = AddClinicalNoised("image", clean_prob=0.0, mr_sigma=0.05, seed_key="id")
    bright = t({"image": _slab(0.8), "image_intensity": info, "id": "a"})["image"].numpy()
    dark = t({"image": _slab(0.0), "image_intensity": info, "id": "a"})["image"].numpy()
    assert bright.std() == pytest.approx(0.05, rel=0.1)  # high SNR: Rician ~ Gaussian with the same std
    assert dark.min() >= 0.0 and dark.mean() == pytest.approx(0.05 * np.sqrt(np.pi / 2), rel=0.1)  # Rayleigh floor


@pytest.mark.parametrize("modality", ["DX", "NM", "US", "photo"])
def test_other_grayscale_modalities_get_gaussian_noise_without_a_floor(modality):
    # their noise has no Rician floor: a dark region keeps its mean (inference routes them to the CT model)
    info = {"low": 0.0, "high": 800.0, "modality": modality}
    t = AddClinicalNoised("image", clean_prob=0.0, mr_sigma=0.05, seed_key="id")
    out = t({"image": _slab(0.0), "image_intensity": info, "id": "a"})
    dark = out["image"].numpy()
    assert out["noise_params"]["kind"] == "gaussian" and out["noise_std"] == pytest.approx(0.05)
    assert dark.std() == pytest.approx(0.05, rel=0.1) and abs(dark.mean()) < 0.005 and dark.min() < -0.05


def test_noise_families_override_the_modality_rule_except_for_ct():
    info = {"low": 0.0, "high": 800.0, "modality": "MR"}
    t = AddClinicalNoised("image", clean_prob=0.0, mr_sigma=0.05, seed_key="id", families={"mr": "additive"})
    dark = t({"image": _slab(0.0), "image_intensity": info, "id": "a"})["image"].numpy()
    assert abs(dark.mean()) < 0.005 and dark.std() == pytest.approx(0.05, rel=0.1)  # Gaussian: no Rayleigh floor
    with pytest.raises(ValueError, match="CT's noise"):
        AddClinicalNoised("image", families={"CT": "additive"})
    with pytest.raises(ValueError):
        AddClinicalNoised("image", families={"MR": "poisson"})


def test_level_map_carries_the_drawn_noise_std():
    t = Compose([
        AddClinicalNoised("image", clean_prob=0.0, mr_sigma=(0.01, 0.1), seed_key="id"),
        AppendNoiseLevelMapd("image"),
    ])  # fmt: skip
    out = t({"image": _slab(0.5), "image_intensity": {"low": 0.0, "high": 1.0, "modality": "MR"}, "id": "a"})
    level = out["noise_params"]["level"]
    assert out["image"].shape == (4, 64, 64) and 0.01 <= level <= 0.1
    assert torch.allclose(out["image"][3], torch.full((64, 64), level))
    with pytest.raises(KeyError, match="noise_std"):
        AppendNoiseLevelMapd("image")({"image": _slab()})


def test_clean_samples_are_left_alone_and_bank_noise_uses_the_slab_slices():
    clean = AddClinicalNoised("image", clean_prob=1.0)
    clean.set_random_state(0)
    out = clean({"image": _slab(), "image_intensity": ct_info()})
    assert torch.equal(out["image"], _slab()) and out["noise_params"]["kind"] == "none" and out["noise_std"] == 0.0

    bank = np.stack([np.full((64, 64), z, dtype=np.float16) for z in range(5)], axis=-1)[None]  # slice z: z HU
    t = AddClinicalNoised("image", clean_prob=0.0, lowdose_prob=1.0, lowdose_scale=2.0)
    t.set_random_state(0)
    d = {"image": _slab(0.0), "image_intensity": ct_info(), "image_lowdose": bank, "slab_indices": [3, 4, 4]}
    out = t(d)
    added_hu = [float(out["image"][c, 0, 0]) * CT_SPAN for c in range(3)]
    assert added_hu == pytest.approx([6.0, 8.0, 8.0], abs=1e-3)
    assert out["noise_std"] == pytest.approx(0.0, abs=1e-6)  # a constant bank slice: an offset, no spread

    rng = np.random.default_rng(0)
    real_bank = rng.normal(0.0, 20.0, (1, 64, 64, 5)).astype(np.float16)
    d = {"image": _slab(0.0), "image_intensity": ct_info(), "image_lowdose": real_bank, "slab_indices": [1, 2, 3]}
    assert t(d)["noise_std"] == pytest.approx(2.0 * 20.0 / CT_SPAN, rel=0.05)  # the factor times the bank's std
    assert "image_lowdose" not in out and "image_lowdose" in d  # the (cached) input dict keeps its bank


# ------------------------------------------------------------------------------------------------ 2.5D slab


def test_slab_clamps_at_the_volume_ends_and_never_changes_the_volume():
    volume = torch.arange(5, dtype=torch.float32).view(1, 1, 1, 5).expand(1, 4, 4, 5).clone()
    before = volume.clone()
    centre = ClinicalSlabd("image", context=1, random=False)({"image": volume})
    assert centre["image"].shape == (3, 4, 4) and centre["slab_indices"] == [1, 2, 3]
    assert torch.equal(centre["label"], volume[..., 2])
    t = ClinicalSlabd("image", context=2)
    seen = set()
    for seed in range(40):
        t.set_random_state(seed)
        out = t({"image": volume})
        z = out["slab_indices"][2]
        assert out["slab_indices"] == [max(z - 2, 0), max(z - 1, 0), z, min(z + 1, 4), min(z + 2, 4)]
        assert [float(out["image"][c, 0, 0]) for c in range(5)] == out["slab_indices"]
        seen.add(z)
    assert seen == set(range(5))
    assert torch.equal(volume, before)
    # random spacing: neighbours 1 or 2 slices apart; flat: a slab of the centre slice only (the 2D input)
    volume = torch.arange(9, dtype=torch.float32).view(1, 1, 1, 9).expand(1, 4, 4, 9).clone()
    t = ClinicalSlabd("image", context=1, max_stride=2, flat_prob=0.3)
    steps = []
    for seed in range(60):
        t.set_random_state(seed)
        out = t({"image": volume})
        a, z, b = out["slab_indices"]
        if 2 <= z <= 6:
            steps.append(z - a)
            assert b - z == z - a and torch.equal(out["label"], volume[..., z])
    assert set(steps) == {0, 1, 2} and 0.1 < steps.count(0) / len(steps) < 0.5
    assert ClinicalSlabd("image", max_stride=2, flat_prob=1.0, random=False)({"image": volume})["slab_indices"] == [
        3,
        4,
        5,
    ]  # validation: fixed, stride 1
    with pytest.raises(ValueError, match="max_stride"):
        ClinicalSlabd("image", max_stride=0)
    with pytest.raises(ValueError, match="flat_prob"):
        ClinicalSlabd("image", flat_prob=1.5)
    # a 2D image is its own neighbour
    flat = ClinicalSlabd("image", context=1)({"image": torch.rand(1, 8, 8)})
    assert torch.equal(flat["image"][0], flat["image"][2]) and torch.equal(flat["label"][0], flat["image"][1])
    with pytest.raises(ValueError, match="grayscale"):
        ClinicalSlabd("image")({"image": torch.rand(3, 8, 8, 2)})


def test_balanced_weights_give_each_modality_the_same_share():
    w = balanced_weights([{"modality": "CT"}, {"modality": "MR"}, {"modality": "mr"}, {"modality": "MR"}])
    assert w[0] == pytest.approx(sum(w[1:]))
    items = [{"modality": "CT"}, {"modality": "MR"}, {"modality": "mr"}, {}]
    w = balanced_weights(items, shares={"ct": 3, "MR": 1})  # unnamed groups get 1
    assert w[0] == pytest.approx(3 * (w[1] + w[2])) and w[3] == pytest.approx(w[1] + w[2])
    assert balanced_weights(items, shares={"CT": 0})[0] == 0
    with pytest.raises(ValueError, match="shares must be >= 0"):
        balanced_weights(items, shares={"CT": -1})


# ------------------------------------------------------------------------------------------------ networks


def test_residual_2_5d_generator_corrects_the_centre_slice():
    net = DenoiseUNet(in_channels=3, out_channels=1, channels=(4, 8), strides=(2,), num_res_units=0, residual=True)
    x = torch.rand(2, 3, 20, 18)
    for p in net.unet.parameters():  # no predicted noise: the output is the centre slice itself
        torch.nn.init.zeros_(p)
    assert torch.equal(net(x), x[:, 1:2])
    with pytest.raises(ValueError, match="centre block"):
        DenoiseUNet(in_channels=2, out_channels=1, residual=True)
    d = ConditionalPatchDiscriminator(image_channels=1, condition_channels=3, channels=4, num_layers_d=2)
    assert d(x, net(x))[-1].shape[0] == 2

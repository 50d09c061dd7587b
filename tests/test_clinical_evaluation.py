"""The clinical evaluation: noise levels in physical units, the same noise for every method and run, stated slice
samples, slice-level bootstrap intervals, the report files, and the bundle's `evaluating` run id end to end.

Data: pydicom's CT_small/MR_small and small volumes the tests write (no ../shared data).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medical_denoise.data import LoadClinicald
from medical_denoise.evaluation import mean_ci
from medical_denoise.evaluation.baselines import bm3d_available
from medical_denoise.evaluation.clinical import (
    FOV_MIN_HU,
    ClinicalVolume,
    NoiseCondition,
    NoiseKind,
    NoisyVolume,
    baseline_methods,
    choose_slices,
    clinical_conditions,
    evaluate_clinical_split,
    evaluate_items,
    evaluate_volume,
    load_volume,
    model_method,
)
from medical_denoise.evaluation.metrics import bootstrap_ci, masked_psnr, masked_ssim
from medical_denoise.io import CT_WINDOW
from medical_denoise.networks import DenoiseUNet

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "gan_denoise"
CONFIGS = ["configs/train.yaml", "configs/clinical.yaml", "configs/evaluate.yaml"]
TINY_CLINICAL = {"clinical_network_def#channels": [4, 8], "clinical_network_def#strides": [2],
                 "clinical_network_def#num_res_units": 0}  # fmt: skip
CT_INFO = {"low": CT_WINDOW[0], "high": CT_WINDOW[1], "modality": "CT", "pixel_spacing": 1.0}  # synthetic volumes


def span(volume: ClinicalVolume) -> float:
    """Original units per network unit (CT: the width of the HU map)."""
    return float(volume.info["high"]) - float(volume.info["low"])


def load(path: str | Path, image_id: str, modality: str | None = None) -> ClinicalVolume:
    item = {"image": str(path), "id": image_id, **({"modality": modality} if modality else {})}
    return load_volume(item, LoadClinicald("image", clip=False))


def ct_phantom(path: Path, size: int = 48, slices: int = 5, padding: bool = True) -> np.ndarray:
    """A water disc (0 HU, a brighter insert per slice) in air (-1000 HU), -3024 HU padding outside the scan circle,
    as int16 HU NIfTI with 5 mm pixels (a 24 cm body: realistic attenuation for the low-dose simulation)."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(yy, xx)
    vol = np.full((size, size, slices), -1000.0)
    vol[r < size * 0.35] = 0.0
    for z in range(slices):
        vol[..., z][np.hypot(yy - 4, xx + 3) < 5] = 60.0 + 20 * z
    if padding:
        vol[r > size / 2] = -3024.0
    vol = vol.astype(np.int16)
    nib.save(nib.Nifti1Image(vol, np.diag([5.0, 5.0, 5.0, 1.0])), path)
    return vol


def mr_series(folder: Path, slices: int = 3) -> None:
    """MR_small copies as one DICOM series (slice i holds MR_small + 30 i)."""
    folder.mkdir(parents=True)
    source = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    uid = generate_uid()
    for i in range(slices):
        ds = copy.deepcopy(source)
        ds.PixelData = (source.pixel_array + 30 * i).astype(source.pixel_array.dtype).tobytes()
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [-83.9, -91.2, 5.0 * i]
        ds.InstanceNumber = i + 1
        ds.save_as(folder / f"{i}.dcm")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def centre_predictor(slab: np.ndarray) -> np.ndarray:
    """A stand-in model: a 3x3 mean of the centre slice (checks that the model gets the whole slab)."""
    from scipy.ndimage import uniform_filter

    assert slab.ndim == 3 and slab.shape[0] % 2 == 1
    return uniform_filter(slab[slab.shape[0] // 2], 3, mode="nearest")[None]


# ------------------------------------------------------------------------------------------------ noise levels


def test_ct_gaussian_noise_has_the_asked_std_in_hu_on_a_real_ct():
    vol = load(get_testdata_file("CT_small.dcm"), "ct_small")
    assert vol.modality == "CT" and vol.clean.shape == (128, 128, 1)
    noisy = NoisyVolume(vol.clean, vol.info, NoiseCondition(NoiseKind.GAUSSIAN_HU, 25.0), 0, "ct_small")
    noise_hu = (noisy.slice(0) - vol.clean[..., 0]) * span(vol)
    assert abs(noise_hu.std() - 25.0) < 1.0 and abs(noise_hu.mean()) < 1.0  # 16384 pixels: 0.6% standard error
    assert noisy.noise_std(0) * span(vol) == pytest.approx(noise_hu.std(), rel=1e-4)


def test_ct_padding_outside_the_scan_circle_gets_no_noise_and_is_not_scored(tmp_path):
    ct_phantom(tmp_path / "ct.nii.gz")
    vol = load(tmp_path / "ct.nii.gz", "phantom", "CT")
    clean = vol.clean[..., 0]
    hu = clean * span(vol) + vol.info["low"]
    padding = hu < FOV_MIN_HU
    assert padding.any() and clean.min() < 0  # -3024 HU maps below 0 and is kept, not clipped
    condition = NoiseCondition(NoiseKind.GAUSSIAN_HU, 50.0)
    noisy = NoisyVolume(vol.clean, vol.info, condition, 0, "phantom").slice(0)
    assert np.array_equal(noisy[padding], clean[padding])
    assert not condition.score_mask(clean, vol.info)[padding].any()
    assert condition.score_mask(clean, vol.info)[~padding].all()


def test_rician_std_is_a_fraction_of_the_robust_range():
    # synthetic: magnitude 0.8 of the range on the top half (Rician ~ Gaussian there), 0 below (Rician bias)
    clean = np.zeros((200, 200, 1), np.float32)
    clean[:100] = 0.8
    info = {"low": 0.0, "high": 2000.0, "modality": "MR"}
    condition = NoiseCondition(NoiseKind.RICIAN, 0.05)
    noisy = NoisyVolume(clean, info, condition, 0, "flat").slice(0)
    assert abs(np.std(noisy[:100] - 0.8) - 0.05) < 0.002  # 5% of the range = 100 original units
    assert abs(np.mean(noisy[100:]) - 0.05 * math.sqrt(math.pi / 2)) < 0.002  # Rayleigh mean on a zero background
    # a real MR: the robust range does not start at 0 (low = 148), the level is still 5% of the span
    vol = load(get_testdata_file("MR_small.dcm"), "mr_small")
    assert vol.modality == "MR" and vol.info["low"] > 0
    measured = NoisyVolume(vol.clean, vol.info, condition, 0, "mr_small").noise_std(0)
    assert measured == pytest.approx(0.05, rel=0.08)


def test_conditions_follow_the_noise_of_the_modality_as_inference_routes_it():
    kinds = {m: {c.kind for c in clinical_conditions(m)} for m in ("CT", "MR", "UNKNOWN", "DX", "NM", "photo")}
    assert kinds["CT"] == {NoiseKind.GAUSSIAN_HU, NoiseKind.LOWDOSE}
    assert kinds["MR"] == kinds["UNKNOWN"] == {NoiseKind.RICIAN}
    assert kinds["DX"] == kinds["NM"] == kinds["photo"] == {NoiseKind.GAUSSIAN_RANGE}
    assert [c.name for c in clinical_conditions("CR", gaussian_sigma=[0.05])] == ["gaussian_5pct"]
    # additive: zero-mean on a black region (no floor), the std a fraction of the robust range, every pixel scored
    clean = np.zeros((200, 200, 1), np.float32)
    clean[:100] = 0.8
    info = {"low": 100.0, "high": 2100.0, "modality": "DX"}
    condition = NoiseCondition(NoiseKind.GAUSSIAN_RANGE, 0.05)
    volume = NoisyVolume(clean, info, condition, 0, "flat")
    noise = volume.slice(0) - clean[..., 0]
    assert abs(noise[100:].mean()) < 0.002 and volume.noise_std(0) == pytest.approx(0.05, rel=0.03)
    assert condition.score_mask(clean[..., 0], info).all() and condition.label == "Gaussian 5% of range"


def test_a_radiograph_is_scored_under_additive_noise_with_the_model_inference_routes_it_to(tmp_path):
    # a DX DICOM (MR_small's pixels): Gaussian conditions, scored by the CT model's methods, not the shared model's
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.Modality = "DX"
    ds.save_as(tmp_path / "dx.dcm")
    used = []

    def method(name):
        def run(slab, sigma):
            used.append(name)
            return slab[slab.shape[0] // 2]

        return run

    rows, samplings, _ = evaluate_items(
        [{"image": str(tmp_path / "dx.dcm"), "id": "dx"}], LoadClinicald("image", clip=False), {"model": method("shared")},
        mr_sigma=[0.05], gaussian_sigma=[0.05], progress=False, ct_methods={"model": method("ct")},
    )  # fmt: skip
    assert samplings[0].modality == "DX" and set(used) == {"ct"}
    assert {r.condition for r in rows} == {"gaussian_5pct"} and {r.unit for r in rows} == {"% range"}
    noisy = next(r for r in rows if r.method == "noisy")
    assert noisy.noise_std == pytest.approx(5.0, rel=0.05)


def test_lowdose_noise_is_in_hu_and_grows_as_the_dose_falls(tmp_path):
    ct_phantom(tmp_path / "ct.nii.gz", size=64, slices=1)
    vol = load(tmp_path / "ct.nii.gz", "phantom", "CT")
    stds = {}
    for i0 in (1e6, 1e5):
        noisy = NoisyVolume(vol.clean, vol.info, NoiseCondition(NoiseKind.LOWDOSE, i0), 0, "phantom")
        stds[i0] = noisy.noise_std(0) * span(vol)  # measured in the body (> -500 HU), in HU
        padding = vol.clean[..., 0] * span(vol) + vol.info["low"] < FOV_MIN_HU
        assert np.array_equal(noisy.slice(0)[padding], vol.clean[..., 0][padding])
    assert 1.0 < stds[1e6] < 200.0
    assert stds[1e5] / stds[1e6] == pytest.approx(math.sqrt(10), rel=0.3)  # std ~ 1 / sqrt(I0)


# ----------------------------------------------------------------------------------------- seeding and sharing


def test_noise_is_seeded_per_slice_and_shared_by_centre_and_neighbours():
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.2, 0.3, (32, 32, 4)).astype(np.float32)
    condition = NoiseCondition(NoiseKind.GAUSSIAN_HU, 25.0)
    a, b = (NoisyVolume(clean, CT_INFO, condition, 0, "vol") for _ in range(2))
    assert np.array_equal(a.slab(2, 1), b.slab(2, 1))  # the same in every run
    assert np.array_equal(a.slab(1, 1)[2], a.slab(2, 1)[1])  # slice 2 as a neighbour = slice 2 as the centre
    assert np.array_equal(a.slab(0, 1)[0], a.slab(0, 1)[1])  # edge slices repeat, as at inference
    n1, n2 = (a.slice(z) - clean[..., z] for z in (1, 2))
    assert abs(np.corrcoef(n1.ravel(), n2.ravel())[0, 1]) < 0.1  # neighbours: independent noise
    other = NoisyVolume(clean, CT_INFO, condition, 1, "vol").slice(2)
    assert not np.array_equal(other, a.slice(2))  # another seed, other noise


def test_every_method_gets_the_same_noisy_slab_and_runs_repeat_exactly():
    clean = np.random.default_rng(1).uniform(0.2, 0.4, (24, 24, 5)).astype(np.float32)
    volume = ClinicalVolume("vol", "CT", clean, CT_INFO)
    seen: dict[str, list[np.ndarray]] = {"a": [], "b": []}

    def recorder(name):
        def run(slab, sigma):
            seen[name].append(slab.copy())
            out = slab[slab.shape[0] // 2].copy()
            slab += 1.0  # in place: must not reach the other method
            return out

        return run

    conditions = [NoiseCondition(NoiseKind.GAUSSIAN_HU, 10.0), NoiseCondition(NoiseKind.GAUSSIAN_HU, 50.0)]
    rows, _, _ = evaluate_volume(volume, {"a": recorder("a"), "b": recorder("b")}, conditions, 1, 0, 3, False)
    assert len(seen["a"]) == len(seen["b"]) == 3 * 2
    assert all(np.array_equal(x, y) for x, y in zip(seen["a"], seen["b"]))
    rerun, _, _ = evaluate_volume(volume, {"a": recorder("a"), "b": recorder("b")}, conditions, 1, 0, 3, False)
    assert [(r.slice, r.condition, r.method, r.psnr) for r in rows] == [
        (r.slice, r.condition, r.method, r.psnr) for r in rerun
    ]
    noisy = {(r.slice, r.condition): r.psnr for r in rows if r.method == "noisy"}
    assert all(r.psnr == noisy[(r.slice, r.condition)] for r in rows if r.method != "noisy")  # identity methods


def test_slice_sampling_is_seeded_sorted_and_stated():
    first = choose_slices(50, 20, 0, "series_a")
    assert first == choose_slices(50, 20, 0, "series_a") and first == sorted(set(first)) and len(first) == 20
    assert first != choose_slices(50, 20, 0, "series_b") and first != choose_slices(50, 20, 1, "series_a")
    assert choose_slices(12, 20, 0, "short") == list(range(12)) and choose_slices(50, None, 0, "a") == list(range(50))
    clean = np.zeros((16, 16, 30), np.float32) + 0.3
    _, sampling, _ = evaluate_volume(ClinicalVolume("s", "CT", clean, CT_INFO), {},
                                     [NoiseCondition(NoiseKind.GAUSSIAN_HU, 10.0)], 1, 7, 4, False)  # fmt: skip
    assert sampling.slices == tuple(choose_slices(30, 4, 7, "s"))
    assert sampling.describe().startswith("a random sample of 4 of 30 slices (seed 7): [")


# ------------------------------------------------------------------------------------------- metrics and CIs


def test_metrics_use_the_given_range_without_clipping():
    rng = np.random.default_rng(0)
    clean = rng.uniform(-0.5, 1.2, (32, 32))  # a CT in the network range reaches outside [0, 1]
    out = clean + rng.normal(0, 0.01, clean.shape)
    assert masked_psnr(clean, out) == pytest.approx(peak_signal_noise_ratio(clean, out, data_range=1.0))
    assert masked_ssim(clean, out) == pytest.approx(structural_similarity(clean, out, data_range=1.0))
    mask = np.zeros(clean.shape, bool)
    mask[:16] = True
    out[16:] += 0.5  # errors outside the mask do not count
    assert masked_psnr(clean, out, mask=mask) == pytest.approx(
        peak_signal_noise_ratio(clean[:16], out[:16], data_range=1.0))  # fmt: skip
    assert masked_psnr(clean, out, data_range=2.0) > masked_psnr(clean, out)


def test_bootstrap_interval_stays_inside_the_observed_values():
    mean, low, high = bootstrap_ci([[0.91, 0.99]], resamples=500)
    assert (mean, low, high) == pytest.approx((0.95, 0.91, 0.99))
    assert (
        mean_ci([0.91, 0.99])[2] > 1.0
    )  # a t-interval from 2 values leaves the SSIM range: the reason for the bootstrap
    values = [list(np.random.default_rng(0).uniform(0.97, 1.0, 20)), [0.99, 0.995, 1.0]]
    mean, low, high = bootstrap_ci(values, resamples=1000, seed=3)
    flat = np.concatenate([np.asarray(v) for v in values])
    assert flat.min() <= low <= mean <= high <= flat.max()
    assert bootstrap_ci(values, resamples=1000, seed=3) == (mean, low, high)  # seeded
    assert math.isnan(bootstrap_ci([[0.5]])[1]) and math.isnan(bootstrap_ci([])[0])  # no interval from one value


# ------------------------------------------------------------------------------------------------- the report


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A CT phantom NIfTI (HU, 5 slices) and an MR DICOM series (3 slices), with a datalist marking the CT."""
    root = tmp_path_factory.mktemp("clinical_eval")
    ct_phantom(root / "ct.nii.gz", size=40, slices=5)
    mr_series(root / "mr")
    test = [{"image": "ct.nii.gz", "id": "ct_phantom", "modality": "CT"}, {"image": "mr", "id": "mr_series"}]
    (root / "datalist.json").write_text(
        json.dumps({"dataset_dir": ".", "training": [], "validation": [], "test": test})
    )
    return root


def test_report_files_tables_and_pictures(dataset, tmp_path):
    baselines = ["tv", "nlm"]  # BM3D costs ~1 s even on a tiny slice: tested alone below
    report = evaluate_clinical_split(
        dataset / "datalist.json", dataset, LoadClinicald("image", clip=False), centre_predictor, tmp_path, context=1,
        ct_sigma_hu=[25.0, 50.0], ct_lowdose_i0=[1e6], mr_sigma=[0.05], baselines=baselines, max_slices=2,
        resamples=200, progress=False,
    )  # fmt: skip
    assert {"per_slice.csv", "summary.csv", "paired.csv", "summary.md", "psnr_vs_level.png"} <= set(report.files)
    assert all(p.is_file() and p.stat().st_size > 0 for p in report.files.values())
    methods = ["noisy", "model", *baselines]
    rows = read_csv(tmp_path / "per_slice.csv")
    assert len(rows) == (2 * 3 + 2 * 1) * len(methods)  # CT: 2 slices x 3 conditions, MR: 2 of 3 slices x 1
    assert {r["unit"] for r in rows if r["series"] == "ct_phantom"} == {"HU"}
    ct25 = [float(r["noise_std"]) for r in rows if r["condition"] == "ct_gaussian_25hu" and r["method"] == "noisy"]
    assert all(abs(s - 25.0) < 3.0 for s in ct25)  # measured std in HU
    given = {float(r["sigma_given"]) for r in rows if r["condition"] == "ct_gaussian_25hu" and r["method"] == "tv"}
    ct_span = span(load(dataset / "ct.nii.gz", "ct", "CT"))
    assert len(given) == 1 and given.pop() == pytest.approx(25.0 / ct_span)  # the true std, network units
    assert all(math.isnan(float(r["sigma_given"])) for r in rows if r["method"] in ("noisy", "model"))
    summary = read_csv(tmp_path / "summary.csv")
    assert {r["scope"] for r in summary} == {"modality", "series"}
    for r in summary:
        for m in ("psnr", "ssim", "rmse"):
            assert float(r[f"{m}_low"]) <= float(r[f"{m}_mean"]) + 1e-9 <= float(r[f"{m}_high"]) + 2e-9
        assert float(r["ssim_high"]) <= 1.0
    md = (tmp_path / "summary.md").read_text()
    assert "a random sample of 2 of 3 slices (seed 0)" in md and "every slice (1)" not in md
    assert "bootstrap over slices" in md and "not independent" in md and "**" in md
    assert "(CT series:" not in md  # one model for every series: no separate CT weights named
    assert f"ct_window [{CT_WINDOW[0]:g}, " in md and "RMSE HU" in md and "RMSE % range" in md
    pictures = {name.rsplit("_z", 1)[0] for name in report.files if name.startswith("example_")}
    # the middle level of each noise model, on the scored slice nearest the middle of the series
    assert pictures == {"example_ct_phantom_ct_gaussian_50hu", "example_ct_phantom_ct_lowdose_i0_1e+06",
                        "example_mr_series_mr_rician_5pct"}  # fmt: skip


@pytest.mark.skipif(not bm3d_available(), reason="optional bm3d package not installed")
def test_bm3d_denoises_the_centre_slice_given_the_std_in_network_units():
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(0.2, 0.4, 32, dtype=np.float32), (32, 1))
    slab = np.stack([clean + rng.normal(0, 0.02, clean.shape).astype(np.float32) for _ in range(3)])
    out = baseline_methods(["bm3d"])["bm3d"](slab.copy(), 0.02)
    assert out.shape == clean.shape
    assert masked_psnr(clean, out) > masked_psnr(clean, slab[1]) + 5.0


def test_unknown_baseline_and_photo_loading_are_refused(dataset, tmp_path):
    with pytest.raises(ValueError, match="unknown baselines"):
        evaluate_clinical_split(dataset / "datalist.json", dataset, LoadClinicald("image"), centre_predictor, tmp_path,
                                baselines=["median"])  # fmt: skip
    with pytest.raises(ValueError, match="LoadClinicald"):
        evaluate_clinical_split(dataset / "datalist.json", dataset, lambda d: {"image": np.zeros((1, 8, 8))},
                                centre_predictor, tmp_path, progress=False)  # fmt: skip


# --------------------------------------------------------------------------------------------------- the bundle


def _parser(configs: list[str], overrides: dict):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / c) for c in configs])
    parser.update({"bundle_root": str(BUNDLE), **overrides})
    return parser


def test_evaluate_yaml_picks_the_evaluation_from_the_loading():
    assert _parser(["configs/train.yaml", "configs/evaluate.yaml"], {}).get_parsed_content("eval_task") == "photo"
    assert _parser(CONFIGS, {}).get_parsed_content("eval_task") == "clinical"
    forced = _parser(CONFIGS, {"eval_task": "photo"}).get_parsed_content("eval_task")
    assert forced == "photo"


def _tiny_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    net = DenoiseUNet(
        2, 3, out_channels=1, channels=(4, 8), strides=(2,), num_res_units=0, residual=True, noise_level_input=True
    )
    torch.save(net.state_dict(), path)
    return path


def test_bundle_evaluating_runs_the_clinical_evaluation_in_process(dataset, tmp_path):
    overrides = {**TINY_CLINICAL, "datalist_file": str(dataset / "datalist.json"), "eval_dir": str(tmp_path / "eval"),
                 "checkpoint": str(_tiny_checkpoint(tmp_path / "tiny.pt")), "baselines": ["tv"], "eval_max_slices": 2,
                 "eval_ct_sigma_hu": [25], "eval_ct_lowdose_i0": [1e6], "eval_mr_sigma": [0.05], "num_workers": 0,
                 "device": "$torch.device('cpu')"}  # fmt: skip
    _parser(CONFIGS, overrides).get_parsed_content("evaluating")
    rows = read_csv(tmp_path / "eval" / "per_slice.csv")
    # the bundle's clinical network takes a noise-level map: scored blind and told the baselines' std
    assert {r["method"] for r in rows} == {"noisy", "model", "model_sigma", "tv"}
    assert {r["series"] for r in rows} == {"ct_phantom", "mr_series"}
    told = {(r["series"], r["slice"], r["condition"]): r["sigma_given"] for r in rows if r["method"] == "model_sigma"}
    tv = {(r["series"], r["slice"], r["condition"]): r["sigma_given"] for r in rows if r["method"] == "tv"}
    assert told == tv and all(math.isnan(float(r["sigma_given"])) for r in rows if r["method"] == "model")
    paired = read_csv(tmp_path / "eval" / "paired.csv")
    assert {r["method"] for r in paired} == {"model", "model_sigma"}
    assert "## model_sigma minus noisy" in (tmp_path / "eval" / "summary.md").read_text()  # no bm3d: vs noisy
    assert "tiny.pt" in (tmp_path / "eval" / "summary.md").read_text()


def test_ct_checkpoint_scores_the_ct_series_and_is_named_in_the_report(dataset, tmp_path):
    identity = _tiny_checkpoint(tmp_path / "identity.pt")  # all-zero residual: returns its noisy centre slice
    state = torch.load(identity, weights_only=True)
    torch.save({k: torch.zeros_like(v) for k, v in state.items()}, identity)
    overrides = {**TINY_CLINICAL, "datalist_file": str(dataset / "datalist.json"), "eval_dir": str(tmp_path / "eval"),
                 "checkpoint": str(_tiny_checkpoint(tmp_path / "tiny.pt")), "ct_checkpoint": str(identity),
                 "eval_max_slices": 2, "eval_ct_sigma_hu": [25], "eval_ct_lowdose_i0": [], "eval_mr_sigma": [0.05],
                 "num_workers": 0, "device": "$torch.device('cpu')"}  # fmt: skip
    _parser(CONFIGS, overrides).get_parsed_content("evaluating")
    rows = read_csv(tmp_path / "eval" / "per_slice.csv")
    psnr = {(r["series"], r["slice"], r["method"]): float(r["psnr"]) for r in rows}
    for series, z, method in psnr:
        if method == "model":  # CT: the identity's output is the noisy slice; MR: the random tiny network's is not
            same = psnr[series, z, "model"] == pytest.approx(psnr[series, z, "noisy"], abs=1e-6)
            assert same == (series == "ct_phantom")
    assert "(CT and other non-MR series: `" in (tmp_path / "eval" / "summary.md").read_text()


@pytest.mark.slow
def test_bundle_evaluating_command_line(dataset, tmp_path):
    ckpt = _tiny_checkpoint(tmp_path / "tiny.pt")
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "evaluating", "--config_file", str(CONFIGS).replace('"', "'"),
        "--bundle_root", str(BUNDLE), "--datalist_file", str(dataset / "datalist.json"), "--checkpoint", str(ckpt),
        "--eval_dir", str(tmp_path / "eval"), "--baselines", "['nlm','tv']", "--eval_max_slices", "2",
        "--num_workers", "0", "--device", "$torch.device('cpu')",
        *[f"--{k}={json.dumps(v)}" for k, v in TINY_CLINICAL.items()],
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(cmd, check=False, cwd=BUNDLE, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    rows = read_csv(tmp_path / "eval" / "per_slice.csv")
    conditions = {r["condition"] for r in rows}
    assert conditions == {"ct_gaussian_10hu", "ct_gaussian_25hu", "ct_gaussian_50hu", "ct_lowdose_i0_1e+06",
                          "ct_lowdose_i0_3e+05", "mr_rician_2pct", "mr_rician_5pct", "mr_rician_10pct"}  # fmt: skip
    assert {r["method"] for r in rows} == {"noisy", "model", "model_sigma", "nlm", "tv"}


def test_a_told_model_gets_the_slab_plus_a_level_channel():
    seen = []

    def predictor(x: np.ndarray) -> np.ndarray:
        seen.append(x.copy())
        return x[1:2]

    slab = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    told, blind = model_method(predictor, told_level=True), model_method(predictor)
    assert told.sigma_aware and not blind.sigma_aware
    np.testing.assert_array_equal(told(slab, 0.07), slab[1])
    assert seen[-1].shape == (4, 8, 8) and np.all(seen[-1][3] == np.float32(0.07))
    blind(slab, 0.07)
    assert seen[-1].shape == (3, 8, 8)

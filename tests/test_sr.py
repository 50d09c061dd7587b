"""Deblurring / super-resolution: SR networks, degradation chains, baselines, output geometry and the bundle overlays."""

from __future__ import annotations

import csv
import json
import os

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image
from skimage import data as skdata

from medical_denoise.evaluation.metrics import psnr
from medical_denoise.evaluation.report import run_comparison
from medical_denoise.evaluation.restoration import (
    BicubicUpsampler,
    DegradationChain,
    LowResolutionInput,
    RichardsonLucyDeconvolver,
    WienerDeconvolver,
    gaussian_psf,
)
from medical_denoise.io import denoise_path, predict_array, read_image, write_like
from medical_denoise.io.geometry import zoom_affine, zoom_dicom_dataset, zoomed_like
from medical_denoise.networks import (
    ConditionalPatchDiscriminator,
    ModCropd,
    SuperResolutionUNet,
    UpsampledConditionDiscriminator,
    UpsampleToReferenced,
    upsample,
)
from medical_denoise.noise import gaussian_blur
from tests.utils import BUNDLE, TINY_NET, TINY_NETWORKS
from tests.utils import run_bundle as bundle


def clean_rgb(h: int = 48, w: int = 40) -> np.ndarray:
    """A small textured RGB image in [0, 1] from skimage's astronaut."""
    return np.moveaxis(skdata.astronaut()[100 : 100 + h, 180 : 180 + w], -1, 0).astype(np.float32) / 255.0


# ------------------------------------------------------------------------------------------------ networks


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("size", [(16, 16), (17, 23), (9, 12)])
def test_sr_generator_output_shape(scale, size):
    net = SuperResolutionUNet(scale, in_channels=3, **TINY_NET)
    out = net(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, size[0] * scale, size[1] * scale)


@pytest.mark.parametrize("num_res_units", [0, 1])
def test_sr_generator_starts_at_bicubic_and_learns_a_correction(num_res_units):
    net = SuperResolutionUNet(2, in_channels=1, **{**TINY_NET, "num_res_units": num_res_units})
    x = torch.rand(1, 1, 11, 13)
    assert torch.equal(net(x), upsample(x, [22, 26]))  # zero output block: exactly the bicubic baseline
    target = torch.rand(1, 1, 22, 26)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.l1_loss(net(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] and not torch.equal(net(x), upsample(x, [22, 26]))
    plain = SuperResolutionUNet(2, in_channels=1, residual=False, **TINY_NET)
    assert not torch.equal(plain(x), upsample(x, [22, 26]))


def test_sr_generator_rejects_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="scale"):
        SuperResolutionUNet(1.5, **TINY_NET)
    with pytest.raises(ValueError, match="centre block"):  # residual: in = (2k + 1) * out
        SuperResolutionUNet(2, in_channels=2, out_channels=1, **TINY_NET)
    with pytest.raises(ValueError, match="expected"):
        SuperResolutionUNet(2, in_channels=3, **TINY_NET)(torch.rand(1, 1, 8, 8))


def test_upsampled_condition_discriminator_sees_bicubic_input():
    torch.manual_seed(0)
    d = UpsampledConditionDiscriminator(spatial_dims=2, image_channels=1, channels=8, num_layers_d=2).eval()
    plain = ConditionalPatchDiscriminator(spatial_dims=2, image_channels=1, channels=8, num_layers_d=2).eval()
    plain.load_state_dict(d.state_dict())
    lr, hr = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 32, 32)
    expected = plain(upsample(lr, [32, 32]), hr)[-1]
    assert torch.allclose(d(lr, hr)[-1], expected)
    assert torch.allclose(d(hr, hr)[-1], plain(hr, hr)[-1])  # same size: unchanged
    with pytest.raises(ValueError, match="differ"):
        d(torch.rand(2, 3, 16, 16), hr)
    with pytest.raises(ValueError, match="larger"):
        d(torch.rand(2, 1, 64, 16), hr)


def test_modcrop_and_upsample_to_reference():
    d = ModCropd("image", 4)({"image": torch.rand(3, 17, 23)})
    assert d["image"].shape == (3, 16, 20)
    with pytest.raises(ValueError, match="smaller"):
        ModCropd("image", 4)({"image": torch.rand(3, 3, 23)})
    out = UpsampleToReferenced("image", "label")({"image": torch.rand(3, 8, 10), "label": torch.rand(3, 16, 20)})
    assert out["image"].shape == (3, 16, 20)


# ---------------------------------------------------------------------------------- degradations, baselines


def test_sr_chain_is_deterministic_under_a_seed_and_matches_validation():
    clean = clean_rgb()
    chain = DegradationChain("sr", blur_sigma=0.5, scale=2, seed=0)
    lr = chain.degrade(clean, 2.0, "img_a")
    assert lr.shape == (3, 24, 20)
    assert np.array_equal(lr, DegradationChain("sr", blur_sigma=0.5, scale=2, seed=0).degrade(clean, 2.0, "img_a"))
    assert not np.array_equal(lr, chain.degrade(clean, 2.0, "img_b"))
    assert not np.array_equal(lr, DegradationChain("sr", blur_sigma=0.5, scale=2, seed=1).degrade(clean, 2.0, "img_a"))
    # the evaluation degrades exactly as the bundle's validation does
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "train.yaml"), str(BUNDLE / "configs" / "sr.yaml")])
    parser.update({"bundle_root": str(BUNDLE)})
    d = {"image": clean, "id": "img_a"}
    for t in parser.get_parsed_content("validate#degradations"):
        d = t(d)
    assert np.array_equal(np.asarray(d["image"]), lr) and np.array_equal(d["label"], clean)
    assert [s["name"] for s in d["degradations"]] == ["blur", "downsample", "noise"]


def test_sr_evaluation_feeds_the_model_the_low_resolution_input():
    clean = clean_rgb()
    chain = DegradationChain("sr", blur_sigma=0.5, scale=2)
    seen = []

    def model(lr):
        seen.append(lr.shape)
        return BicubicUpsampler(2)(lr)

    result = run_comparison([("a", clean), ("b", clean[:, ::-1].copy())], [0.0, 5.0],
                            {"gan": LowResolutionInput(model, chain), "bicubic": lambda up: up}, add_noise=chain,
                            progress=False)  # fmt: skip
    assert set(seen) == {(3, 24, 20)}
    by_method = {(r.image_id, r.sigma, r.method): r.psnr for r in result.rows}
    for (image_id, sigma, _method), value in by_method.items():  # a bicubic "GAN" scores exactly like bicubic
        assert value == pytest.approx(by_method[(image_id, sigma, "bicubic")], abs=1e-4)
    with pytest.raises(KeyError, match="not produced"):
        chain.low_resolution(np.zeros((3, 48, 40), np.float32))


def test_psf_matches_the_blur_and_deconvolution_beats_the_blurred_input():
    delta = np.zeros((1, 31, 31), np.float32)
    delta[0, 15, 15] = 1.0
    psf = gaussian_psf(2.0)
    blurred_delta = gaussian_blur(delta, 2.0)[0]
    r = psf.shape[0] // 2
    assert np.allclose(blurred_delta[15 - r : 16 + r, 15 - r : 16 + r], psf, atol=1e-6)

    clean = skdata.camera()[200:264, 200:264].astype(np.float32)[None] / 255.0
    chain = DegradationChain("deblur", noise_level=1.0)
    blurred = chain(clean, 2.0, "cam")
    assert np.array_equal(blurred, DegradationChain("deblur", noise_level=1.0)(clean, 2.0, "cam"))
    base = psnr(clean, blurred)
    for method in (RichardsonLucyDeconvolver(num_iter=20), WienerDeconvolver(balance=0.01)):
        out = method(blurred, sigma=2.0)
        assert out.shape == clean.shape and out.dtype == np.float32
        assert psnr(clean, out) > base + 0.5, type(method).__name__


# ------------------------------------------------------------------------------------------------ geometry


def test_zoom_affine_keeps_the_outer_edges():
    affine = np.array([[0.8, 0.1, 0, -10], [0, 0.7, 0.2, 5], [0.05, 0, 2.5, 3], [0, 0, 0, 1]])
    zoomed = zoom_affine(affine, [2, 4, 1])
    # a (9, 7, 4) grid becomes (18, 28, 4): its outer corners stay in place
    assert np.allclose(affine @ [-0.5, -0.5, -0.5, 1], zoomed @ [-0.5, -0.5, -0.5, 1])
    assert np.allclose(affine @ [8.5, 6.5, 3.5, 1], zoomed @ [17.5, 27.5, 3.5, 1])
    assert np.allclose(np.linalg.norm(zoomed[:3, :3], axis=0), np.linalg.norm(affine[:3, :3], axis=0) / [2, 4, 1])


def test_super_resolved_nifti_keeps_its_physical_extent(tmp_path):
    affine = np.array([[-0.9, 0, 0, 40.0], [0, 0.75, 0.1, -20.0], [0, 0, 3.0, 7.0], [0, 0, 0, 1]])
    src = tmp_path / "vol.nii.gz"
    nib.Nifti1Image(np.random.default_rng(0).random((9, 7, 3)).astype(np.float32), affine).to_filename(src)
    image = read_image(src)
    zoomed = zoomed_like(image, 2)
    assert zoomed.array.shape == (1, 18, 14, 3)
    write_like(zoomed, zoomed.array * 0.5, tmp_path / "vol_sr.nii.gz", description="sr")
    out = nib.load(tmp_path / "vol_sr.nii.gz")
    assert out.shape == (18, 14, 3)
    assert np.allclose(out.header.get_zooms(), np.linalg.norm(affine[:3, :3], axis=0) / [2, 2, 1], atol=1e-5)
    half_voxel = np.abs(out.affine[:3, :3]).sum(axis=1) / 2
    for old, new in (([-0.5, -0.5, -0.5], [-0.5, -0.5, -0.5]), ([8.5, 6.5, 2.5], [17.5, 13.5, 2.5])):
        edge_old, edge_new = affine @ [*old, 1], out.affine @ [*new, 1]
        assert np.all(np.abs(edge_old - edge_new)[:3] < half_voxel)
        assert np.allclose(edge_old, edge_new, atol=1e-4)  # in fact exact up to float32 storage
    assert np.allclose(nib.load(src).affine, affine)  # input untouched


def dicom_edges(ds) -> tuple[np.ndarray, np.ndarray]:
    """World positions of the outer corner of the first and last pixel (pixel-centre convention)."""
    cos = np.asarray([float(v) for v in ds.ImageOrientationPatient])
    dr, dc = (float(v) for v in ds.PixelSpacing)
    ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
    first = ipp - 0.5 * dc * cos[:3] - 0.5 * dr * cos[3:]
    last = ipp + (int(ds.Columns) - 0.5) * dc * cos[:3] + (int(ds.Rows) - 0.5) * dr * cos[3:]
    return first, last


@pytest.mark.parametrize("scale", [2, 4])
def test_super_resolved_dicom_keeps_its_physical_extent(tmp_path, scale, dicom_file):
    src = dicom_file("CT_small.dcm")
    image = read_image(src)
    zoomed = zoomed_like(image, scale)
    write_like(zoomed, zoomed.array, tmp_path / "ct_sr.dcm", description="sr")
    before, after = pydicom.dcmread(src), pydicom.dcmread(tmp_path / "ct_sr.dcm")
    assert (after.Rows, after.Columns) == (before.Rows * scale, before.Columns * scale)
    assert after.pixel_array.shape == (before.Rows * scale, before.Columns * scale)
    assert np.allclose([float(v) for v in after.PixelSpacing], [float(v) / scale for v in before.PixelSpacing])
    half_new_pixel = float(after.PixelSpacing[0]) / 2
    for edge_before, edge_after in zip(dicom_edges(before), dicom_edges(after)):
        assert np.abs(edge_before - edge_after).max() < half_new_pixel
        assert np.allclose(edge_before, edge_after, atol=1e-4)
    assert after.SeriesInstanceUID != before.SeriesInstanceUID and after.ImageType[0] == "DERIVED"


def test_zoom_dicom_dataset_moves_the_first_pixel_along_an_oblique_plane():
    ds = pydicom.Dataset()
    ds.Rows, ds.Columns = 10, 6
    ds.PixelSpacing = [2.0, 1.0]
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal: columns along +y, rows along -z
    ds.ImagePositionPatient = [5.0, 0.0, 0.0]
    out = zoom_dicom_dataset(ds, 2)
    assert [float(v) for v in out.ImagePositionPatient] == pytest.approx([5.0, -0.25, 0.5])
    for a, b in zip(dicom_edges(ds), dicom_edges(out)):
        assert np.allclose(a, b)
    assert float(ds.PixelSpacing[0]) == 2.0  # the input dataset is not modified
    with pytest.raises(ValueError, match="fractional"):
        zoom_dicom_dataset(ds, 1.3)  # 6 columns -> 7.8


def test_super_resolved_png_is_simply_larger(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray((np.random.default_rng(0).random((7, 5, 4)) * 255).astype(np.uint8), "RGBA").save(src)
    image = read_image(src)
    zoomed = zoomed_like(image, 2)
    write_like(zoomed, zoomed.array, tmp_path / "b.png", description="sr")
    with Image.open(tmp_path / "b.png") as out:
        assert out.size == (10, 14) and out.mode == "RGBA"
    # the SR output itself can stand in for the repeated copy, if its shape is the zoomed one
    assert zoomed_like(image, 2, array=zoomed.array * 0.5).array.shape == zoomed.array.shape
    with pytest.raises(ValueError, match=r"zoomed array has shape \(3, 7, 5\), expected \(3, 14, 10\)"):
        zoomed_like(image, 2, array=image.array)


def sr_predictor(scale: int, channels: int = 1):
    """The untrained SR generator: exactly bicubic, which is all the file-level plumbing needs."""
    return SuperResolutionUNet(scale=scale, spatial_dims=2, in_channels=channels, **TINY_NET).eval()


@pytest.mark.parametrize("scale", [2, 4])
def test_sr_inference_writes_larger_dicom_with_the_same_extent(tmp_path, scale, dicom_file):
    src = dicom_file("CT_small.dcm")
    with torch.no_grad():
        written = denoise_path(src, tmp_path / "out", sr_predictor(scale), model_channels=1, description="sr",
                               progress=False, scale=scale)  # fmt: skip
    before, after = pydicom.dcmread(src), pydicom.dcmread(written[0])
    assert after.pixel_array.shape == (before.Rows * scale, before.Columns * scale)
    for edge_before, edge_after in zip(dicom_edges(before), dicom_edges(after)):
        assert np.abs(edge_before - edge_after).max() < float(after.PixelSpacing[0]) / 2
    # bicubic of the HU image: the mean intensity is kept (a geometry bug would not break this, a scaling bug would)
    assert abs(float(after.pixel_array.mean()) - float(before.pixel_array.mean())) < 0.02 * float(
        before.pixel_array.std()
    )


def test_sr_inference_writes_larger_nifti_and_png(tmp_path):
    affine = np.array([[0.8, 0, 0, -10.0], [0, 0.8, 0, 5.0], [0, 0, 2.5, 0.0], [0, 0, 0, 1]])
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    nib.Nifti1Image(rng.random((12, 10, 3)).astype(np.float32) * 100, affine).to_filename(inputs / "vol.nii.gz")
    Image.fromarray((rng.random((9, 11)) * 255).astype(np.uint8)).save(inputs / "photo.png")
    with torch.no_grad():
        written = denoise_path(inputs, tmp_path / "out", sr_predictor(2), model_channels=1, description="sr",
                               progress=False, scale=2)  # fmt: skip
    assert sorted(p.name for p in written) == ["photo.png", "vol.nii.gz"]
    vol = nib.load(tmp_path / "out" / "vol.nii.gz")
    assert vol.shape == (24, 20, 3)
    assert np.allclose(affine @ [-0.5, -0.5, 0, 1], vol.affine @ [-0.5, -0.5, 0, 1], atol=1e-4)
    assert np.allclose(affine @ [11.5, 9.5, 2, 1], vol.affine @ [23.5, 19.5, 2, 1], atol=1e-4)
    with Image.open(tmp_path / "out" / "photo.png") as png:
        assert png.size == (22, 18)


def test_sr_inference_rejects_a_predictor_of_the_wrong_scale(tmp_path):
    array = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)
    assert predict_array(array, sr_predictor(2), model_channels=1, scale=2).shape == (1, 32, 32)
    with pytest.raises(ValueError, match=r"expected \(1, 1, 64, 64\)"):
        predict_array(array, sr_predictor(2), model_channels=1, scale=4)
    with pytest.raises(ValueError, match="scale must be a positive integer"):
        predict_array(array, sr_predictor(2), model_channels=1, scale=1.5)


# ------------------------------------------------------------------------------------------ bundle, e2e

# the SR overlay derives the high-resolution patch from lr_patch_size, so patch_size is not overridden here
TINY = [*TINY_NETWORKS, "--lr_patch_size", "[16,16]", "--samples_per_image", "2", "--num_workers", "0"]
SR = ["--config_file", "['configs/train.yaml','configs/sr.yaml']"]


@pytest.mark.slow
def test_sr_bundle_trains_and_evaluates_against_bicubic(tmp_path):
    env = {**os.environ, "MEDICAL_DENOISE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "2"}
    out, eval_dir = tmp_path / "train", tmp_path / "eval"
    bundle("run", "training", *SR, *TINY, "--output_dir", str(out), "--num_epochs", "1", "--val_interval", "1",
           "--image_interval", "1", env=env)  # fmt: skip
    assert (out / "checkpoints" / "model.pt").is_file()
    state = torch.load(out / "checkpoints" / "model.pt", weights_only=True)
    state = state.get("generator", state)
    assert any(k.startswith("refine.unet.") for k in state)  # the SR generator was trained, not the denoiser
    with Image.open(out / "images" / "combined_epoch_1.png") as grid:  # bicubic input | output | label, equal widths
        width = grid.size[0]
    assert width % 3 == 0

    bundle("run", "evaluating", *SR, *TINY, "--output_dir", str(out), "--eval_dir", str(eval_dir),
           "--eval_sigmas", "[2.0]", env=env)  # fmt: skip
    rows = list(csv.DictReader(open(eval_dir / "per_image.csv")))
    datalist = json.loads((out / "datalist.json").read_text())
    assert {r["image_id"] for r in rows} == {r["id"] for r in datalist["test"]}
    assert {r["method"] for r in rows} == {"noisy", "gan", "bicubic"}
    assert "bicubic" in (eval_dir / "summary.md").read_text()

    # inference with the trained checkpoint: a PNG comes out twice as large
    src = tmp_path / "in.png"
    Image.fromarray(skdata.astronaut()[:40, :30]).save(src)
    bundle("run", "inference", "--config_file", "['configs/train.yaml','configs/sr.yaml','configs/inference.yaml']",
           *TINY_NETWORKS, "--input", str(src), "--output_dir", str(tmp_path / "sr"),
           "--checkpoint", str(out / "checkpoints" / "model.pt"), env=env)  # fmt: skip
    with Image.open(tmp_path / "sr" / "in.png") as result:
        assert result.size == (60, 80)

"""Tests for medical_denoise.io.denoise_path: round trips, slicing, batching, the channel rule, failures.

Routing, 2.5D slabs, intensity fidelity and the fidelity guard: tests/test_clinical_fidelity.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from nibabel.testing import data_path as NIB_DATA
from PIL import Image

from medical_denoise.io import FailedInputsError, ModelRouter, ModelSpec, denoise_path, predict_array, read_image
from tests.utils import dicom_file, make_series

pytestmark = pytest.mark.filterwarnings("ignore:builtin type:DeprecationWarning")


def identity(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


def identity_router() -> ModelRouter:
    """Identity models for both kinds of input: RGB photographs and grayscale images."""
    return ModelRouter(dermoscopy=ModelSpec(predictor=identity, image_channels=3),
                       clinical=ModelSpec(predictor=identity, image_channels=1))  # fmt: skip


def test_identity_round_trip_dicom_file(tmp_path):
    src = dicom_file("CT_small.dcm")
    out = denoise_path(src, tmp_path / "out", identity, model_channels=1, description="id", progress=False)
    assert out == [tmp_path / "out" / "CT_small.dcm"]
    np.testing.assert_array_equal(pydicom.dcmread(out[0]).pixel_array, pydicom.dcmread(src).pixel_array)
    assert pydicom.dcmread(out[0]).DerivationDescription == "id"


def test_identity_round_trip_series_each_file_keeps_its_slice(tmp_path):
    files = make_series(tmp_path / "ser", n=4)
    calls = []

    def recording(x):
        calls.append(tuple(x.shape))
        return x

    out = denoise_path(
        tmp_path / "ser", tmp_path / "out", recording, model_channels=1, description="id", batch_size=3, progress=False
    )
    assert calls == [(3, 1, 128, 128), (1, 1, 128, 128)]  # slice by slice, in batches
    assert sorted(out) == sorted(tmp_path / "out" / "ser" / f.name for f in files)
    for f in files:
        np.testing.assert_array_equal(
            pydicom.dcmread(tmp_path / "out" / "ser" / f.name).pixel_array, pydicom.dcmread(f).pixel_array
        )


def test_identity_round_trip_nifti_within_one_step(tmp_path):
    path = Path(NIB_DATA) / "anatomical.nii"
    calls = []

    def recording(x):
        calls.append(x.shape[0])
        return x

    out = denoise_path(path, tmp_path, recording, model_channels=1, description="id", batch_size=8, progress=False)
    assert calls == [8, 8, 8, 1]  # 25 slices along the last axis
    a, b = nib.load(path), nib.load(out[0])
    np.testing.assert_array_equal(b.affine, a.affine)
    np.testing.assert_array_equal(np.asarray(b.dataobj.get_unscaled()), np.asarray(a.dataobj.get_unscaled()))


def test_identity_round_trip_png_8_16_and_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    g8 = rng.integers(0, 256, (16, 20), dtype=np.uint8)
    g16 = rng.integers(0, 65536, (16, 20), dtype=np.uint16)
    (tmp_path / "in").mkdir()
    Image.fromarray(g8).save(tmp_path / "in" / "g8.png")
    Image.fromarray(g16).save(tmp_path / "in" / "g16.png")
    Image.fromarray(np.dstack([g8] * 3)).save(tmp_path / "in" / "c.jpg")
    (tmp_path / "in" / "metadata.csv").write_text("id,dx\n")  # skipped, not an image
    out = denoise_path(tmp_path / "in", tmp_path / "out", identity_router(), description="id", progress=False)
    assert sorted(p.name for p in out) == ["c.png", "g16.png", "g8.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "g8.png")), g8)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "g16.png")), g16)
    jpeg = read_image(tmp_path / "in" / "c.jpg").array
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "c.png").array, jpeg)


def test_channel_rule_grayscale_image_rgb_model_only_when_asked():
    image = np.random.default_rng(0).random((1, 6, 7, 2)).astype(np.float32)
    seen = []

    def rgb_model(x):
        seen.append(x)
        return x * torch.tensor([0.0, 1.0, 2.0]).view(1, 3, 1, 1)  # mean over channels is x

    with pytest.raises(ValueError, match="1 channel.*takes 3"):
        predict_array(image, rgb_model, model_channels=3)
    out = predict_array(image, rgb_model, model_channels=3, adapt_channels=True)
    assert seen[0].shape == (2, 3, 6, 7)
    assert torch.equal(seen[0][:, 0], seen[0][:, 2])  # replicated
    np.testing.assert_allclose(out, image, rtol=1e-6)


def test_channel_rule_rgb_image_grayscale_model_only_when_asked(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    seen = []

    def invert(x):
        seen.append(tuple(x.shape))
        return 1.0 - x

    with pytest.raises(ValueError, match="rgb.png: RGB photograph has 3 channel"):  # files: never adapted
        denoise_path(tmp_path / "rgb.png", tmp_path / "out", invert, model_channels=1, description="inv",
                     progress=False)  # fmt: skip
    image = read_image(tmp_path / "rgb.png")
    out = predict_array(image.intensity.forward(image.array), invert, model_channels=1, adapt_channels=True)
    assert seen == [(1, 1, 8, 9)] * 3  # one grayscale image per colour channel
    np.testing.assert_allclose(image.intensity.inverse(out), 255 - image.array, atol=1e-4)  # channels not mixed


def test_unsupported_channel_count_and_bad_predictor(tmp_path):
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png"):
        denoise_path(tmp_path / "rgb.png", tmp_path / "o", identity, model_channels=2, description="x", progress=False)
    with pytest.raises(ValueError, match="predictor returned"):
        denoise_path(
            tmp_path / "rgb.png",
            tmp_path / "o",
            lambda x: x[:, :, :2],
            model_channels=3,
            description="x",
            progress=False,
        )
    with pytest.raises(ValueError, match="NaN"):
        denoise_path(
            tmp_path / "rgb.png",
            tmp_path / "o",
            lambda x: x * np.nan,
            model_channels=3,
            description="x",
            progress=False,
        )
    assert not (tmp_path / "o").exists()


def test_output_next_to_input(tmp_path):
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "b.jpg")
    both = identity_router()
    with pytest.raises(ValueError, match="input"):
        denoise_path(tmp_path / "a.png", tmp_path, both, description="x", progress=False)
    out = denoise_path(tmp_path / "b.jpg", tmp_path, identity, model_channels=3, description="x", progress=False)
    assert out == [tmp_path / "b.png"]
    with pytest.raises(ValueError, match="both be written"):  # b.jpg and the new b.png collide
        denoise_path(tmp_path, tmp_path / "den", both, description="x", progress=False)
    (tmp_path / "b.png").unlink()
    # an output folder inside the input folder is allowed, and not read back as an input next time
    out = denoise_path(tmp_path, tmp_path / "den", both, description="x", progress=False)
    assert sorted(p.name for p in out) == ["a.png", "b.png"]
    with pytest.raises(ValueError, match="already exists"):
        denoise_path(tmp_path, tmp_path / "den", both, description="x", progress=False)
    out = denoise_path(tmp_path, tmp_path / "den", both, description="x", progress=False, overwrite=True)
    assert len(out) == 2


def _bad_inputs(tmp_path: Path) -> list[Path]:
    bad = tmp_path / "bad"
    (bad / "empty").mkdir(parents=True)
    (bad / "zero.png").write_bytes(b"")
    (bad / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    (bad / "notes.txt").write_text("hello")
    nib.Nifti1Image(np.full((4, 4, 3), np.nan, np.float32), np.eye(4)).to_filename(bad / "nan.nii.gz")
    # (a folder mixing series is grouped by SeriesInstanceUID now: tests/test_inference_folders.py)
    return [
        bad / "missing.png",
        bad / "empty",
        dicom_file("MR_truncated.dcm"),
        bad / "zero.png",
        bad / "corrupt.png",
        bad / "notes.txt",
        bad / "nan.nii.gz",
    ]


def test_bad_inputs_name_the_file_and_write_nothing(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("pre-existing")
    for path in _bad_inputs(tmp_path):
        with pytest.raises((ValueError, FileNotFoundError)) as err:
            denoise_path(path, out_dir, identity, model_channels=1, description="x", progress=False)
        assert str(path) in str(err.value)
        assert os.listdir(out_dir) == ["keep.txt"], path


def test_folder_with_one_bad_file_keeps_the_good_ones(tmp_path):
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "in" / "a.png")  # processed first
    (tmp_path / "in" / "b.png").write_bytes(b"garbage")
    with pytest.raises(FailedInputsError, match="b.png") as err:
        denoise_path(tmp_path / "in", tmp_path / "out", identity, model_channels=1, description="x", progress=False)
    assert os.listdir(tmp_path / "out") == ["a.png"]  # written before the bad file, and kept
    assert err.value.written == [tmp_path / "out" / "a.png"]


def test_progress_bar_runs(tmp_path, capsys):
    out = denoise_path(dicom_file("MR_small.dcm"), tmp_path, identity, model_channels=1, description="x")
    assert len(out) == 1

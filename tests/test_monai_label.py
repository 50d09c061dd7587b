"""MONAI Label: a real ``monailabel start_server`` (in ``.venv-label``) serves the bundle and returns denoised images.

The generator is a tiny bundle network trained here for 100 steps on other images (seconds), so "denoised" is
measured: the returned image must beat the noisy input's PSNR against the clean one by a clear margin. Grayscale
inputs (NIfTI volumes, CT DICOM) go to the clinical model: ``tests/test_monai_label_routing.py``.
"""

from __future__ import annotations

import io
import json
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from skimage import data

from medical_denoise.label.bundle import DEFAULT_BUNDLE, bundle_parser, load_bundle_model
from tests.label_server import (
    HTTP,
    LABEL_PYTHON,
    REQUEST_S,
    label_server,
    needs_label_env,
    post_file,
    psnr_gain,
    train_l1,
)

TINY = {"network_def#channels": [16, 32], "network_def#strides": [2], "network_def#num_res_units": 1}
SIGMA = 25.0 / 255.0
MARGIN_DB = 2.0  # the trained tiny model gains ~4-6 dB; an identity or broken pipeline gains <= 0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """The bundle's network (tiny overrides) trained 100 steps on noisy crops of images the tests never send."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = bundle_parser(DEFAULT_BUNDLE, TINY).get_parsed_content("network_def")
    train = np.concatenate([data.astronaut()[300:], data.coffee()[:212, :512]], 0)  # test crops: astronaut[:300]
    train = torch.from_numpy(train.transpose(2, 0, 1).astype(np.float32) / 255.0)

    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        ys, xs = rng.integers(0, train.shape[1] - 32, 8), rng.integers(0, train.shape[2] - 32, 8)
        clean = torch.stack([train[:, y : y + 32, x : x + 32] for y, x in zip(ys, xs)])
        return clean + torch.randn_like(clean) * torch.empty(8, 1, 1, 1).uniform_(10 / 255, 40 / 255), clean

    train_l1(net, draw, steps=100, lr=6e-3)
    path = tmp_path_factory.mktemp("weights") / "model.pt"
    torch.save(net.state_dict(), path)
    return path


def test_bundle_model_loads_the_weights_architecture(weights):
    model = load_bundle_model(DEFAULT_BUNDLE, weights, TINY)
    model.network.load_state_dict(torch.load(weights, weights_only=True))  # strict: same architecture
    assert model.channels == 3 and model.weights == weights.resolve() and model.batch_size >= 1


def test_missing_weights_or_bundle_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_bundle_model(DEFAULT_BUNDLE, tmp_path / "missing.pt", TINY)
    with pytest.raises(FileNotFoundError, match="gan_denoise bundle"):
        load_bundle_model(tmp_path, tmp_path / "missing.pt")


@needs_label_env
@pytest.mark.parametrize("name", ["MR_small_implicit.dcm", "SC_rgb_rle_2frame.dcm"])
def test_dicom_writer_under_real_pydicom2(tmp_path, name, dicom_file):
    """``.venv-label`` (pydicom 2.4) writes the derived DICOM: explicit VR as its header says, same pixels."""
    src = str(dicom_file(name))
    out = tmp_path / name
    script = (
        "import sys, pydicom; from medical_denoise.io import read_image, write_like; "
        "assert pydicom.__version__.startswith('2.'), pydicom.__version__; "
        "im = read_image(sys.argv[1]); write_like(im, im.array, sys.argv[2], description='t')"
    )
    subprocess.run([str(LABEL_PYTHON), "-c", script, src, str(out)], check=True, timeout=REQUEST_S)
    written = pydicom.dcmread(out)
    assert written.original_encoding == (False, True)  # pydicom 2 would keep an implicit-VR source's encoding
    np.testing.assert_array_equal(written.pixel_array, pydicom.dcmread(src).pixel_array)
    assert written.file_meta.MediaStorageSOPInstanceUID == written.SOPInstanceUID


def _noisy_astronaut(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A clean 128x128 RGB crop (float64, 0-255) of a part of the photograph training never sees, and its noisy PNG."""
    clean = data.astronaut()[100:228, 150:278].astype(np.float64)
    noisy = np.clip(np.round(clean + np.random.default_rng(seed).normal(0, 255 * SIGMA, clean.shape)), 0, 255)
    return clean, noisy.astype(np.uint8)


@pytest.fixture(scope="module")
def server(weights, tmp_path_factory):
    """``monailabel start_server`` with the tiny weights and one datastore image, ``sample``."""
    tmp = tmp_path_factory.mktemp("label")
    (tmp / "studies").mkdir()
    Image.fromarray(_noisy_astronaut(3)[1]).save(tmp / "studies" / "sample.png")
    with label_server(tmp, {"weights": str(weights), "bundle_overrides": json.dumps(TINY)}) as running:
        yield running


@needs_label_env
def test_info_lists_one_image_model_and_no_trainer(server):
    _, info, _ = server
    assert set(info["models"]) == {"gan_denoise"}
    assert info["models"]["gan_denoise"]["type"] == "others"  # not a segmentation: the answer is an image
    assert info["trainers"] == {} and info["strategies"] == {}


@needs_label_env
def test_png_comes_back_as_a_denoised_png(server, tmp_path):
    url, _, log = server
    clean, noisy = _noisy_astronaut(1)
    sent = tmp_path / "noisy.png"
    Image.fromarray(noisy).save(sent)
    status, ctype, body = post_file(f"{url}/infer/gan_denoise?output=image", sent)
    assert status == 200, f"{body[:500]!r}\n{log.read_text()[-3000:]}"
    assert ctype == "image/png"
    out = np.asarray(Image.open(io.BytesIO(body)))
    assert out.shape == clean.shape and out.dtype == np.uint8
    gain = psnr_gain(out, noisy, clean, 255.0)
    assert gain > MARGIN_DB, f"PSNR gain {gain:.2f} dB"


@needs_label_env
def test_datastore_image_is_denoised_and_left_untouched(server):
    url, _, log = server
    studies = log.parent / "studies"
    sample = studies / "sample.png"
    before = sample.read_bytes()
    request = urllib.request.Request(f"{url}/infer/gan_denoise?image=sample&output=image", data=b"", method="POST")
    with HTTP.open(request, timeout=REQUEST_S) as r:
        status, body = r.status, r.read()
    assert status == 200
    clean, noisy = _noisy_astronaut(3)
    out = np.asarray(Image.open(io.BytesIO(body)))
    assert psnr_gain(out, noisy, clean, 255.0) > MARGIN_DB
    assert sample.read_bytes() == before  # the input is never overwritten
    assert not [p for p in (studies / "labels").rglob("*") if p.is_file()]  # nothing stored as a label


@needs_label_env
def test_corrupt_upload_is_a_400_that_says_why(server, tmp_path):
    url, _, _ = server
    bad = tmp_path / "truncated.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    status, _, body = post_file(f"{url}/infer/gan_denoise?output=image", bad)
    assert status == 400
    assert "cannot read the input image" in json.loads(body)["detail"]

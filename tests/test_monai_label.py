"""MONAI Label: a real ``monailabel start_server`` (in ``.venv-label``) serves the bundle and returns denoised images.

The generator is a tiny bundle network trained here for 100 steps on other images (seconds), so "denoised" is
measured: the returned image must beat the noisy input's PSNR against the clean one by a clear margin.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file
from skimage import data

from medical_denoise.io import CT_WINDOW
from medical_denoise.label.bundle import DEFAULT_BUNDLE, bundle_parser, load_bundle_model

ROOT = Path(__file__).resolve().parents[1]
LABEL_PYTHON = ROOT / ".venv-label" / "bin" / "python"
APP_MAIN = ROOT / "medical_denoise" / "label" / "main.py"
TINY = {"network_def#channels": [16, 32], "network_def#strides": [2], "network_def#num_res_units": 1}
SIGMA = 25.0 / 255.0
MARGIN_DB = 2.0  # the trained tiny model gains ~4-6 dB; an identity or broken pipeline gains <= 0
STARTUP_S, REQUEST_S = 240.0, 120.0
# loopback only, never through a proxy from the environment
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

pytestmark = pytest.mark.slow
needs_label_env = pytest.mark.skipif(
    not LABEL_PYTHON.exists(), reason=".venv-label not built: run scripts/setup_label_env.sh (CI builds it first)"
)


def psnr(estimate: np.ndarray, clean: np.ndarray, data_range: float) -> float:
    mse = np.mean((np.asarray(estimate, np.float64) - np.asarray(clean, np.float64)) ** 2)
    return float(10.0 * np.log10(data_range**2 / mse))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """The bundle's network (tiny overrides) trained 100 steps on noisy crops of images the tests never send."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = bundle_parser(DEFAULT_BUNDLE, TINY).get_parsed_content("network_def")
    train = np.concatenate([data.astronaut()[300:], data.coffee()[:212, :512]], 0)  # test crops: astronaut[:300]
    train = torch.from_numpy(train.transpose(2, 0, 1).astype(np.float32) / 255.0)
    opt = torch.optim.Adam(net.parameters(), lr=6e-3)
    for _ in range(100):
        ys, xs = rng.integers(0, train.shape[1] - 32, 8), rng.integers(0, train.shape[2] - 32, 8)
        clean = torch.stack([train[:, y : y + 32, x : x + 32] for y, x in zip(ys, xs)])
        noisy = clean + torch.randn_like(clean) * torch.empty(8, 1, 1, 1).uniform_(10 / 255, 40 / 255)
        loss = torch.nn.functional.l1_loss(net(noisy), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
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
def test_dicom_writer_under_real_pydicom2(tmp_path, name):
    """``.venv-label`` (pydicom 2.4) writes the derived DICOM: explicit VR as its header says, same pixels."""
    src = get_testdata_file(name, download=False)
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float) -> bytes:
    with HTTP.open(url, timeout=timeout) as r:
        return r.read()


def _post_file(url: str, path: Path) -> tuple[int, str, bytes]:
    """POST ``path`` as the multipart ``file`` field; returns status, content type and body."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    body = head.encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    try:
        with HTTP.open(request, timeout=REQUEST_S) as r:
            return r.status, r.headers.get_content_type(), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_content_type(), e.read()


def _noisy_astronaut(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A clean 128x128 RGB crop (float64, 0-255) of a part of the photograph training never sees, and its noisy PNG."""
    clean = data.astronaut()[100:228, 150:278].astype(np.float64)
    noisy = np.clip(np.round(clean + np.random.default_rng(seed).normal(0, 255 * SIGMA, clean.shape)), 0, 255)
    return clean, noisy.astype(np.uint8)


@pytest.fixture(scope="module")
def server(weights, tmp_path_factory):
    """``monailabel start_server`` on a free loopback port; always stopped at the end."""
    tmp = tmp_path_factory.mktemp("label")
    app, studies, scratch = tmp / "app", tmp / "studies", tmp / "scratch"  # MONAI Label writes into app/
    for folder in (app, studies, scratch):
        folder.mkdir()
    shutil.copy(APP_MAIN, app / "main.py")
    Image.fromarray(_noisy_astronaut(3)[1]).save(studies / "sample.png")  # a datastore image, id "sample"
    port = _free_port()
    cmd = [
        str(LABEL_PYTHON), "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies),
        "--host", "127.0.0.1", "--port", str(port),
        "--conf", "weights", str(weights), "--conf", "bundle_overrides", json.dumps(TINY),
    ]  # fmt: skip
    log_path = tmp / "server.log"
    # uploads and results are temporary files; MONAI Label leaves a failed request's upload behind
    env = {**os.environ, "OMP_NUM_THREADS": "2", "TMPDIR": str(scratch)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        info = None
        while info is None:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"server not up after {STARTUP_S}s:\n{log_path.read_text()[-4000:]}")
            try:
                info = json.loads(_get(f"{url}/info/", timeout=5))
            except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout):
                time.sleep(1.0)
        yield url, info, log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and anything it started
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)


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
    status, ctype, body = _post_file(f"{url}/infer/gan_denoise?output=image", sent)
    assert status == 200, f"{body[:500]!r}\n{log.read_text()[-3000:]}"
    assert ctype == "image/png"
    out = np.asarray(Image.open(io.BytesIO(body)))
    assert out.shape == clean.shape and out.dtype == np.uint8
    gain = psnr(out, clean, 255.0) - psnr(noisy, clean, 255.0)
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
    assert psnr(out, clean, 255.0) - psnr(noisy, clean, 255.0) > MARGIN_DB
    assert sample.read_bytes() == before  # the input is never overwritten
    assert not [p for p in (studies / "labels").rglob("*") if p.is_file()]  # nothing stored as a label


@needs_label_env
def test_nifti_volume_keeps_shape_affine_dtype_and_is_denoised(server, tmp_path):
    url, _, log = server
    camera = data.camera().astype(np.float32)  # grayscale volume through the RGB model (channel rule)
    clean = np.stack([camera[200 + 8 * i : 264 + 8 * i, 180:244] for i in range(6)], axis=-1) * 4.0  # 0..1020
    noisy = clean + np.random.default_rng(2).normal(0, 1020 * SIGMA, clean.shape).astype(np.float32)
    affine = np.array([[0.5, 0, 0, -10], [0, 0.7, 0, 5], [0, 0, 2.0, 30], [0, 0, 0, 1]])
    sent = tmp_path / "noisy.nii.gz"
    nib.save(nib.Nifti1Image(noisy, affine), sent)
    status, _, body = _post_file(f"{url}/infer/gan_denoise?output=image", sent)
    assert status == 200, f"{body[:500]!r}\n{log.read_text()[-3000:]}"
    got = tmp_path / "denoised.nii.gz"
    got.write_bytes(body)
    out = nib.load(got)
    assert out.shape == clean.shape and out.get_data_dtype() == np.float32
    np.testing.assert_allclose(out.affine, affine, atol=1e-5)
    gain = psnr(out.get_fdata(), clean, 1020.0) - psnr(noisy, clean, 1020.0)
    assert gain > MARGIN_DB, f"PSNR gain {gain:.2f} dB"


@needs_label_env
def test_dicom_comes_back_as_a_derived_denoised_dicom(server, tmp_path):
    """The server's pydicom 2.4 reads the upload and writes the derived DICOM (the writer's pydicom-2 path)."""
    url, _, log = server
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    slope, inter = float(src.RescaleSlope), float(src.RescaleIntercept)
    clean = src.pixel_array * slope + inter  # HU
    window = CT_WINDOW[1] - CT_WINDOW[0]  # the CT mapping to the network range
    noise = np.random.default_rng(4).normal(0, window * SIGMA, clean.shape)
    src.PixelData = np.rint((clean + noise - inter) / slope).astype(src.pixel_array.dtype).tobytes()
    sent = tmp_path / "noisy_ct.dcm"
    src.save_as(sent, enforce_file_format=True)
    noisy = pydicom.dcmread(sent).pixel_array * slope + inter
    status, ctype, body = _post_file(f"{url}/infer/gan_denoise?output=image", sent)
    assert status == 200, f"{body[:500]!r}\n{log.read_text()[-3000:]}"
    assert ctype in ("application/dicom", "application/octet-stream")
    out = pydicom.dcmread(io.BytesIO(body))
    assert (out.Rows, out.Columns) == (src.Rows, src.Columns)
    assert out.PatientID == src.PatientID and out.StudyInstanceUID == src.StudyInstanceUID
    assert out.SeriesInstanceUID != src.SeriesInstanceUID and out.SOPInstanceUID != src.SOPInstanceUID
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert list(out.ImageType[:2]) == ["DERIVED", "SECONDARY"]
    denoised = out.pixel_array * float(out.RescaleSlope) + float(out.RescaleIntercept)
    assert denoised.shape == clean.shape
    gain = psnr(denoised, clean, window) - psnr(noisy, clean, window)
    assert gain > MARGIN_DB, f"PSNR gain {gain:.2f} dB"


@needs_label_env
def test_corrupt_upload_is_a_400_that_says_why(server, tmp_path):
    url, _, _ = server
    bad = tmp_path / "truncated.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    status, _, body = _post_file(f"{url}/infer/gan_denoise?output=image", bad)
    assert status == 400
    assert "cannot read the input image" in json.loads(body)["detail"]

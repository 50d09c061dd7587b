"""A live MONAI Label server with this project's app, for the tests that talk to it over HTTP.

MONAI Label 0.8.5 needs pydicom 2 and numpy < 2, so the server runs under ``.venv-label`` (built by
``scripts/setup_label_env.sh``); tests marked ``needs_label_env`` skip without it.
"""

from __future__ import annotations

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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from tests.utils import ROOT

__all__ = [
    "APP_MAIN",
    "HTTP",
    "LABEL_PYTHON",
    "REQUEST_S",
    "STARTUP_S",
    "free_port",
    "http_get",
    "label_server",
    "needs_label_env",
    "post_file",
    "psnr_gain",
    "train_l1",
]

LABEL_PYTHON = ROOT / ".venv-label" / "bin" / "python"
APP_MAIN = ROOT / "medical_denoise" / "label" / "main.py"
STARTUP_S, REQUEST_S = 240.0, 120.0
# loopback only, never through a proxy from the environment
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
needs_label_env = pytest.mark.skipif(
    not LABEL_PYTHON.exists(), reason=".venv-label not built: run scripts/setup_label_env.sh (CI builds it first)"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = REQUEST_S) -> bytes:
    """The body of ``GET url``."""
    with HTTP.open(url, timeout=timeout) as r:
        return r.read()


def post_file(url: str, path: Path, timeout: float = REQUEST_S) -> tuple[int, str, bytes]:
    """POST ``path`` as the multipart ``file`` field; returns status, content type and body (errors included)."""
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
        with HTTP.open(request, timeout=timeout) as r:
            return r.status, r.headers.get_content_type(), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_content_type(), e.read()


def psnr_gain(denoised: np.ndarray, noisy: np.ndarray, clean: np.ndarray, data_range: float) -> float:
    """PSNR (dB) of ``denoised`` minus that of ``noisy``, both against ``clean`` in its own units."""
    psnr = peak_signal_noise_ratio
    return float(psnr(clean, denoised, data_range=data_range) - psnr(clean, noisy, data_range=data_range))


def train_l1(
    net: torch.nn.Module, draw: Callable[[], tuple[torch.Tensor, torch.Tensor]], steps: int, lr: float
) -> None:
    """Fit ``net`` for ``steps`` Adam steps of L1 loss on ``(noisy, clean) = draw()`` batches (tiny test weights)."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        noisy, clean = draw()
        loss = torch.nn.functional.l1_loss(net(noisy), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()


@contextmanager
def label_server(folder: Path, conf: Mapping[str, str]) -> Iterator[tuple[str, dict, Path]]:
    """``monailabel start_server`` with the app on a free loopback port; always stopped on exit.

    Args:
        folder: working folder; the app is copied to ``app/``, the datastore is ``studies/`` (created if missing,
            so a test can put images there first) and temporary files go to ``scratch/``.
        conf: the app's ``--conf`` key/value pairs, e.g. ``{"weights": "...", "bundle_overrides": "{...}"}``.

    Yields:
        the base URL, the server's ``/info/`` answer and the server log's path.
    """
    app, studies, scratch = folder / "app", folder / "studies", folder / "scratch"  # MONAI Label writes into app/
    for sub in (app, studies, scratch):
        sub.mkdir(exist_ok=True)
    shutil.copy(APP_MAIN, app / "main.py")
    port = free_port()
    cmd = [str(LABEL_PYTHON), "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies),
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    for key, value in conf.items():
        cmd += ["--conf", key, value]
    log_path = folder / "server.log"
    # uploads and results are temporary files; MONAI Label leaves a failed request's upload behind
    env = {**os.environ, "OMP_NUM_THREADS": "2", "TMPDIR": str(scratch)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
                info = json.loads(http_get(f"{url}/info/", timeout=5))
            except (urllib.error.URLError, ConnectionError, TimeoutError):
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

"""Training faults: killed runs resume where they stopped, and the same seed gives the same run."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import torch

from tests.utils import BUNDLE, TINY, TRAIN, bundle_command
from tests.utils import run_bundle as bundle

pytestmark = pytest.mark.slow
EPOCHS = 5


def _args(out):
    return ["run", "training", *TRAIN, *TINY, "--output_dir", str(out), "--num_epochs", str(EPOCHS),
            "--val_interval", "2", "--image_interval", "100", "--samples_per_image", "8"]  # fmt: skip


def _generator(path):
    return torch.load(path, weights_only=True)["generator"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reliability")
    return {**os.environ, "MEDICAL_DENOISE_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}, tmp


@pytest.fixture(scope="module")
def uninterrupted(env):
    environ, tmp = env
    out = tmp / "straight"
    log = bundle(*_args(out), env=environ)
    return out, log.stdout + log.stderr


def test_same_seed_same_run(env, uninterrupted):
    environ, tmp = env
    out, log = uninterrupted
    again = bundle(*_args(tmp / "again"), env=environ)

    def psnr(text: str) -> list[str]:
        return [line.split("val_psnr: ")[1].split()[0] for line in text.splitlines() if "Metrics -- val_psnr" in line]

    assert psnr(log) and psnr(log) == psnr(again.stdout + again.stderr)
    a, b = (
        _generator(out / "checkpoints" / f"checkpoint_epoch={EPOCHS}.pt"),
        _generator(tmp / "again" / "checkpoints" / f"checkpoint_epoch={EPOCHS}.pt"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(env, uninterrupted):
    environ, tmp = env
    out = tmp / "killed"
    proc = subprocess.Popen(bundle_command(*_args(out)), cwd=BUNDLE, env=environ, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    first = out / "checkpoints" / "checkpoint_epoch=2.pt"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists(), "training never reached epoch 2"
    saved = sorted(int(p.stem.split("=")[1]) for p in (out / "checkpoints").glob("checkpoint_epoch=*.pt"))
    assert saved[-1] < EPOCHS, "the run finished before it was killed; nothing to resume"
    for p in (out / "checkpoints").glob("*.pt"):  # whatever was on disk at the kill loads cleanly
        torch.load(p, weights_only=True)

    resumed = bundle(*_args(out), "--resume_from", "latest", env=environ)
    log = resumed.stdout + resumed.stderr
    assert "taking over the stale lock" in log  # the killed run's lock names a dead pid
    assert f"Epoch: {saved[-1] + 1}/{EPOCHS}, Iter: 1/" in log  # continues after the last complete epoch
    assert f"Epoch: {saved[-1]}/{EPOCHS}, Iter:" not in log  # so at most the interrupted epoch is redone
    straight_out, _ = uninterrupted
    a = _generator(straight_out / "checkpoints" / f"checkpoint_epoch={EPOCHS}.pt")
    b = _generator(out / "checkpoints" / f"checkpoint_epoch={EPOCHS}.pt")
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run diverged from the uninterrupted one"
    # no temp files left (key_metric.json: the best score, read back on resume)
    assert not [p for p in (out / "checkpoints").iterdir() if p.suffix != ".pt" and p.name != "key_metric.json"]

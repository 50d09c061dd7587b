"""Helpers the training benchmarks share: run the bundle as a subprocess, pick a run's last checkpoint, read scores."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import torch

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "gan_denoise"


def bundle(*args: str, threads: int) -> subprocess.Popen:
    """``python -m monai.bundle run ARGS`` in the bundle folder, with ``threads`` OpenMP threads (stderr kept)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "monai.bundle", "run", *args, "--bundle_root", str(BUNDLE)]
    return subprocess.Popen(cmd, cwd=BUNDLE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait(procs: list[subprocess.Popen]) -> None:
    """Wait for every process; the first failure ends the benchmark with the tail of its stderr."""
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"{' '.join(proc.args)} failed:\n{err[-3000:]}")


def last_checkpoint(run: Path) -> Path:
    """The highest-epoch ``checkpoint_epoch=N.pt`` of a training run (not the best-validation ``model.pt``)."""
    found = list((run / "checkpoints").glob("checkpoint_epoch=*.pt"))
    if not found:
        raise SystemExit(f"{run}: no checkpoint_epoch=*.pt (did the training run?)")
    return max(found, key=lambda p: int(p.stem.split("=")[1]))


def trained_iterations(run: Path) -> int:
    """How many iterations the last checkpoint of a training run had trained (its trainer state)."""
    return int(torch.load(last_checkpoint(run), map_location="cpu", weights_only=True)["trainer"]["iteration"])


def model_rows(summary: Path) -> dict[float, tuple[float, float]]:
    """``{sigma: (PSNR mean, SSIM mean)}`` of the generator in a photo evaluation's ``summary.csv``."""
    with open(summary, newline="") as f:
        return {float(r["sigma"]): (float(r["psnr_mean"]), float(r["ssim_mean"])) for r in csv.DictReader(f)
                if r["method"] == "gan"}  # fmt: skip

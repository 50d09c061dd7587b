"""The built wheel carries the bundle (configs, docs, weights, licence) and the command, and nothing from runs/.

scripts/check_wheel.sh goes further: it installs the wheel without extras in a fresh environment and runs it.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "gan_denoise"
IN_WHEEL = "medical_denoise/bundles/gan_denoise/"


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    pytest.importorskip("build")  # the test extra installs it
    out = tmp_path_factory.mktemp("dist")
    # sdist, then the wheel from the sdist, as `python -m build` does; .venv's setuptools, no download
    cmd = [sys.executable, "-m", "build", "--no-isolation", "--skip-dependency-check", "--outdir", str(out), str(ROOT)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_wheel_carries_the_bundle(dist):
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    expected = {"LICENSE", "configs/metadata.json", "configs/logging.conf", "docs/README.md"}
    expected |= {f"configs/{p.name}" for p in (BUNDLE / "configs").glob("*.yaml")}
    expected |= {f"models/{p.name}" for p in (BUNDLE / "models").glob("*.pt")}  # clinical.pt too, once it ships
    assert "models/model.pt" in expected
    bundle_files = {n[len(IN_WHEEL) :] for n in names if n.startswith(IN_WHEEL)}
    assert expected <= bundle_files, sorted(expected - bundle_files)
    # only the bundle's own files: no training runs, caches or byte code
    assert not [n for n in names if "/runs/" in n or "/cache/" in n or "__pycache__" in n or n.endswith(".pyc")]
    weights = sum(p.stat().st_size for p in (BUNDLE / "models").glob("*.pt"))
    assert wheel.stat().st_size < weights + 2_000_000
    assert "medical_denoise/cli.py" in names and "medical-denoise = medical_denoise.cli:main" in entry_points
    # the wheel's requirements are setup.cfg's (PyWavelets among them)
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = [line.split("#")[0].strip() for line in cfg["options"]["install_requires"].splitlines()]
    for req in (Requirement(line) for line in lines if line):
        assert f"Requires-Dist: {req.name}" in meta
    assert "Requires-Dist: PyWavelets" in meta


def test_sdist_holds_the_bundle_once(dist):
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"setup.py", "setup.cfg", "bundles/gan_denoise/models/model.pt", "bundles/gan_denoise/LICENSE"} <= names
    # the repository keeps one copy: nothing under medical_denoise/bundles is tracked
    tracked = subprocess.run(
        ["git", "ls-files", "medical_denoise/bundles"], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert tracked.returncode != 0 or not tracked.stdout.strip()

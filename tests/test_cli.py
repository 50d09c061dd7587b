"""The ``medical-denoise`` command: help, versions, bundle path, pass-through options, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from medical_denoise import cli
from medical_denoise.bundle import bundle_config_file, bundle_path

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "gan_denoise"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80"}
    cmd = [sys.executable, "-m", "medical_denoise", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd or ROOT, env=env, timeout=600)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and not result.stdout.strip(), (result.stdout, result.stderr)
    return lines[0]


@pytest.fixture
def png(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(path)
    return path


def test_help_fits_one_screen_and_starts_fast():
    for command in ([], ["denoise"], ["evaluate"], ["train"], ["bundle-path"]):
        result = run_cli(*command, "--help")
        assert result.returncode == 0
        assert len(result.stdout.splitlines()) <= 24, result.stdout
    assert "INPUT OUTPUT_DIR" in run_cli("denoise", "--help").stdout
    # --help, --version and bundle-path answer without loading PyTorch
    code = (
        "import sys, medical_denoise.cli as c\n"
        "c.main(['--version']); c.main(['bundle-path']); print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT, timeout=120
    )
    assert result.stdout.strip().splitlines()[-1] == "False", result.stdout + result.stderr


def test_version_and_bundle_path():
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    result = run_cli("--version")
    assert result.returncode == 0
    import monai

    import medical_denoise

    assert f"medical-denoise {medical_denoise.__version__}" in result.stdout
    assert f"gan_denoise bundle {meta['version']}" in result.stdout
    assert f"MONAI {monai.__version__}" in result.stdout
    result = run_cli("bundle-path", cwd=Path("/"))
    assert result.returncode == 0 and Path(result.stdout.strip()) == BUNDLE == bundle_path()


def test_bundle_config_file(tmp_path):
    assert bundle_config_file("clinical") == BUNDLE / "configs" / "clinical.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text("num_epochs: 1\n")
    assert bundle_config_file(str(own)) == own
    with pytest.raises(FileNotFoundError, match="clinical"):  # the message lists the bundle's configs
        bundle_config_file("nonexistent")


def test_parse_overrides():
    parsed = cli.parse_overrides(
        [
            "--num_epochs",
            "5",
            "--train_noise_level=[0,50]",
            "--self_ensemble",
            "false",
            "--dataset_dir",
            "/d x",
            "--resume_from",
            "None",
            "--lr",
            "1e-3",
            "--noise_kind",
            "rician",
        ]
    )
    assert parsed == {
        "num_epochs": 5,
        "train_noise_level": [0, 50],
        "self_ensemble": False,
        "dataset_dir": "/d x",
        "resume_from": None,
        "lr": 1e-3,
        "noise_kind": "rician",
    }
    for bad in (["stray"], ["--num_epochs"], ["--a", "--b", "1"]):
        with pytest.raises(cli.UsageError):
            cli.parse_overrides(bad)


def test_denoise_png(png, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["denoise", str(png), str(out), "--self_ensemble", "False"]) == 0
    assert "1 file(s) written" in capsys.readouterr().out
    with Image.open(out / png.name) as result, Image.open(png) as source:
        assert (result.size, result.mode) == (source.size, source.mode)
    # an existing output is kept unless --overwrite, and the message names the command's option
    assert cli.main(["denoise", str(png), str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_denoise_user_errors_are_one_line(png, tmp_path):
    missing = one_line_error(result := run_cli("denoise", str(tmp_path / "missing.png"), str(tmp_path / "o1")))
    assert result.returncode != 0 and "missing.png" in missing
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    message = one_line_error(result := run_cli("denoise", str(corrupt), str(tmp_path / "o2")))
    assert result.returncode != 0 and "corrupt.png" in message
    assert not (tmp_path / "o2").exists()  # nothing left behind
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    try:
        message = one_line_error(result := run_cli("denoise", str(png), str(read_only / "out")))
        assert result.returncode != 0 and "read-only" in message and not (read_only / "out").exists()
    finally:
        read_only.chmod(0o755)
    message = one_line_error(result := run_cli("denoise", str(png), str(tmp_path / "o3"), "--self_ensembl", "0"))
    assert result.returncode == 2 and "--self_ensemble" in message  # a typo is refused, with a suggestion


def test_check_writable_dir(tmp_path):
    cli.check_writable_dir(tmp_path / "new" / "deeper")  # created later, under a writable folder
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        cli.check_writable_dir(tmp_path / "file" / "out")


class FakeWorkflow:
    """Records what the command hands to ``ConfigWorkflow``."""

    calls: ClassVar[list[dict]] = []

    def __init__(self, **kwargs):
        FakeWorkflow.calls.append(kwargs)

    def initialize(self):
        pass

    def run(self):
        return [[]]

    def finalize(self):
        pass


@pytest.fixture
def fake_workflow(monkeypatch):
    import monai.bundle

    FakeWorkflow.calls = []
    monkeypatch.setattr(monai.bundle, "ConfigWorkflow", FakeWorkflow)
    return FakeWorkflow.calls


def test_denoise_maps_options_to_config_ids(fake_workflow, png, tmp_path):
    weights = BUNDLE / "models" / "model.pt"
    argv = [
        "denoise",
        str(png),
        str(tmp_path / "o"),
        "--model",
        "ct",
        "--overwrite",
        "--checkpoint",
        str(weights),
        "--device",
        "cpu",
        "--batch_size",
        "2",
    ]
    assert cli.main(argv) == 0
    (call,) = fake_workflow
    assert call["run_id"] == "inference" and call["bundle_root"] == str(BUNDLE)
    assert call["config_file"] == [str(BUNDLE / "configs" / f) for f in ("train.yaml", "inference.yaml")]
    assert call["meta_file"] == str(BUNDLE / "configs" / "metadata.json")
    assert {
        k: call[k] for k in ("input", "output_dir", "model", "overwrite", "clinical_checkpoint", "device", "batch_size")
    } == {
        "input": str(png),
        "output_dir": str(tmp_path / "o"),
        "model": "ct",
        "overwrite": True,
        "clinical_checkpoint": str(weights),
        "device": "$torch.device('cpu')",
        "batch_size": 2,
    }
    # without --model (auto) the weights are the photo model's; grayscale ones go as --clinical_checkpoint PATH
    assert cli.main(["denoise", str(png), str(tmp_path / "o"), "--checkpoint", str(weights)]) == 0
    assert fake_workflow[1]["checkpoint"] == str(weights) and "model" not in fake_workflow[1]
    assert cli.main(["denoise", str(png), str(tmp_path / "o"), "--bundle_root", "/elsewhere"]) == 2


def test_train_and_evaluate_pass_options_through(fake_workflow, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--num_epochs", "3", "--dataset_dir", "data"]) == 0
    assert cli.main(["evaluate", "--config", "clinical", "--eval_dir", "elsewhere"]) == 0
    train, evaluate = fake_workflow
    assert train["run_id"] == "training" and train["config_file"] == [str(BUNDLE / "configs" / "train.yaml")]
    assert train["num_epochs"] == 3 and train["dataset_dir"] == "data"
    assert train["logging_file"] == str(BUNDLE / "configs" / "logging.conf")
    # runs go to ./runs of the working folder, not into the (possibly installed, read-only) bundle
    assert train["output_dir"] == f"${str(tmp_path)!r} + '/runs/train'"
    assert evaluate["run_id"] == "evaluating"
    stack = ("train.yaml", "clinical.yaml", "evaluate.yaml")
    assert evaluate["config_file"] == [str(BUNDLE / "configs" / f) for f in stack]
    assert evaluate["eval_dir"] == "elsewhere"  # what the user gives wins
    assert cli.main(["train", "--num_epoch", "3"]) == 2  # unknown setting


def test_runs_overrides_resolve_under_working_folder(tmp_path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / f) for f in ("train.yaml", "evaluate.yaml")])
    overrides = cli._runs_overrides(parser, tmp_path / "runs", {})
    parser.update({"bundle_root": str(BUNDLE), **overrides})
    assert parser.get_parsed_content("output_dir") == str(tmp_path / "runs" / "train")
    assert parser.get_parsed_content("eval_dir") == str(tmp_path / "runs" / "eval")
    assert parser.get_parsed_content("model_file") == str(BUNDLE / "models" / "model.pt")  # shipped weights stay


# ------------------------------------------------------------------- python -m monai.bundle run: one-line errors

_RAISE_WRAPPED = """
from medical_denoise.errors import install_excepthook
install_excepthook()
try:
    raise FileNotFoundError("/data/scan.dcm does not exist.")
except FileNotFoundError as e:
    raise RuntimeError("Failed to evaluate ConfigExpression: $medical_denoise.io.denoise_path(...)") from e
"""


@pytest.mark.parametrize("debug", [False, True])
def test_uncaught_bundle_errors_are_one_line_unless_debugging(debug):
    env = {**os.environ, "MEDICAL_DENOISE_DEBUG": "1" if debug else "0"}
    proc = subprocess.run([sys.executable, "-c", _RAISE_WRAPPED], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 1
    if debug:
        assert "Traceback" in proc.stderr and "Failed to evaluate ConfigExpression" in proc.stderr
    else:
        assert proc.stderr.strip() == "medical-denoise: error: /data/scan.dcm does not exist."


def test_bundle_run_reports_a_missing_input_in_one_line(tmp_path):
    cmd = [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file",
           "['configs/train.yaml','configs/inference.yaml']", "--bundle_root", ".",
           "--input", str(tmp_path / "missing.png"), "--output_dir", str(tmp_path / "out")]  # fmt: skip
    env = {**os.environ, "MEDICAL_DENOISE_DEBUG": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=BUNDLE, capture_output=True, text=True, env=env, check=False, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"medical-denoise: error: {tmp_path / 'missing.png'} does not exist."
    assert not (tmp_path / "out").exists()

"""End-to-end: the bundle's run ids in subprocesses, as a user runs them (tiny network, tiny schedule)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from medical_denoise.networks import DenoiseUNet, load_generator
from tests.utils import BUNDLE, EVAL, INFER, TINY, TINY_NET, TRAIN
from tests.utils import run_bundle as bundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train on the embedded default images for 2 epochs, then resume for a third."""
    tmp = tmp_path_factory.mktemp("bundle")
    env = {**os.environ, "MEDICAL_DENOISE_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "2"}
    out = tmp / "train"
    common = [*TINY, "--output_dir", str(out), "--val_interval", "1", "--image_interval", "1"]
    bundle("run", "training", *TRAIN, *common, "--num_epochs", "2", env=env)
    resumed = bundle("run", "training", *TRAIN, *common, "--num_epochs", "3", "--resume_from", "latest", env=env)
    return tmp, out, env, resumed


def test_training_leaves_checkpoints_logs_and_pictures(trained):
    _, out, _, _ = trained
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert "model.pt" in ckpts and "checkpoint_epoch=3.pt" in ckpts
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith("tmp")]  # no half-written files
    state = torch.load(out / "checkpoints" / "checkpoint_epoch=3.pt", weights_only=True)
    assert {"generator", "discriminator", "g_optimizer", "d_optimizer", "g_lr_scheduler", "trainer"} <= set(state)
    assert list((out / "tensorboard").glob("events.out.tfevents*"))
    for epoch in (1, 2, 3):
        assert Image.open(out / "images" / f"combined_epoch_{epoch}.png").size[0] > 0
    datalist = json.loads((out / "datalist.json").read_text())
    assert datalist["layout"] == "folder" and datalist["test"] and datalist["validation"]


def test_resume_continues_from_the_saved_epoch(trained):
    _, out, _, resumed = trained
    log = resumed.stdout + resumed.stderr
    assert "Epoch: 3/3, Iter: 1/" in log and "Epoch: 2/3, Iter:" not in log and "Epoch: 1/3, Iter:" not in log
    state = torch.load(out / "checkpoints" / "checkpoint_epoch=3.pt", weights_only=True)
    first_run = torch.load(out / "checkpoints" / "checkpoint_epoch=2.pt", weights_only=True)
    assert state["trainer"]["iteration"] == 3 * first_run["trainer"]["iteration"] // 2


def test_evaluating_reports_only_held_out_images(trained):
    tmp, out, env, _ = trained
    eval_dir = tmp / "eval"
    bundle("run", "evaluating", *EVAL, *TINY, "--output_dir", str(out), "--eval_dir", str(eval_dir),
           "--baselines", "['wavelet']", "--eval_sigmas", "[25]", env=env)  # fmt: skip
    rows = list(csv.DictReader(open(eval_dir / "per_image.csv")))
    datalist = json.loads((out / "datalist.json").read_text())
    assert {r["image_id"] for r in rows} == {r["id"] for r in datalist["test"]}
    assert {r["method"] for r in rows} == {"noisy", "gan", "wavelet"}
    noisy = next(r for r in rows if r["method"] == "noisy")
    assert float(noisy["psnr"]) == pytest.approx(20.2, abs=0.5)  # sigma 25 on [0, 1] images: 20*log10(255/25)
    assert (eval_dir / "summary.md").read_text().count("|") > 10
    assert (eval_dir / "psnr_vs_sigma.png").is_file()


def test_verify_net_in_out_and_torchscript_export(trained):
    tmp, out, env, _ = trained
    bundle("verify_net_in_out", "network_def", "--meta_file", "configs/metadata.json", *TRAIN, *TINY, env=env)
    ts = tmp / "model.ts"
    bundle("ckpt_export", "network_def", "--filepath", str(ts), "--ckpt_file", str(out / "checkpoints" / "model.pt"),
           "--meta_file", "configs/metadata.json", *TRAIN, *TINY, env=env)  # fmt: skip
    exported = torch.jit.load(str(ts))
    eager = load_generator(DenoiseUNet(**TINY_NET), out / "checkpoints" / "model.pt")
    x = torch.rand(1, 3, 37, 50)
    with torch.no_grad():
        assert torch.allclose(exported(x), eager.eval()(x), atol=1e-5)


def test_inference_writes_same_format_and_size(trained):
    tmp, out, env, _ = trained
    src = tmp / "inputs"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(src / "photo.jpg")
    Image.fromarray(rng.integers(0, 255, (40, 30), dtype=np.uint8)).save(src / "grey.png")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    dst = tmp / "denoised"
    # grey.png goes to the clinical model: untrained weights of its network stand in for models/clinical.pt
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.yaml"))
    torch.save(parser.get_parsed_content("clinical_network_def").state_dict(), tmp / "clinical.pt")
    bundle("run", "inference", *INFER, *TINY, "--checkpoint", str(out / "checkpoints" / "model.pt"),
           "--clinical_checkpoint", str(tmp / "clinical.pt"), "--input", str(src), "--output_dir", str(dst),
           "--roi_size", "[32,32]", env=env)  # fmt: skip
    assert np.asarray(Image.open(dst / "photo.png")).shape == (70, 90, 3)
    assert np.asarray(Image.open(dst / "grey.png")).shape == (40, 30)
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # inputs untouched


def test_noise_level_map_overlay_trains_told_and_evaluates_blind(tmp_path):
    """configs/noise_level_map.yaml: training gives the true sigma as a 4th channel (the discriminator's condition
    too); validation and evaluation give the colour channels only and the network estimates the sigma."""
    env = {**os.environ, "MEDICAL_DENOISE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "2"}
    out, eval_dir = tmp_path / "train", tmp_path / "eval"
    configs = ["configs/train.yaml", "configs/noise_level_map.yaml"]
    as_option = lambda files: "[" + ",".join(f"'{f}'" for f in files) + "]"  # noqa: E731
    bundle("run", "training", "--config_file", as_option(configs), *TINY, "--output_dir", str(out),
           "--num_epochs", "1", "--val_interval", "1", env=env)  # fmt: skip
    state = torch.load(out / "checkpoints" / "model.pt", weights_only=True)
    first_conv = next(v for k, v in state.items() if k.endswith("weight") and v.dim() == 4)
    assert first_conv.shape[1] == 4  # colour channels + the level map
    bundle("run", "evaluating", "--config_file", as_option([*configs, "configs/evaluate.yaml"]), *TINY,
           "--output_dir", str(out), "--eval_dir", str(eval_dir), "--baselines", "[]", "--eval_sigmas", "[25]",
           env=env)  # fmt: skip
    rows = [r for r in csv.DictReader(open(eval_dir / "per_image.csv")) if r["method"] == "gan"]
    assert rows and all(np.isfinite(float(r["psnr"])) for r in rows)

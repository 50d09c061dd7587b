"""scripts/train_gpu.sh dry runs on the CPU (dermoscopy and --clinical): a tiny budget, the schedule fitted to it, a
checkpoint, an evaluation."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from tests.utils import BUNDLE, TINY, phantom_volume

SCRIPT = BUNDLE.parents[1] / "scripts" / "train_gpu.sh"


@pytest.mark.slow
def test_budgeted_run_fits_its_schedule_stops_in_time_and_evaluates(tmp_path):
    out = tmp_path / "gpu"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "MEDICAL_DENOISE_CACHE": os.environ.get("MEDICAL_DENOISE_CACHE", str(tmp_path / "cache"))}  # fmt: skip
    cmd = ["bash", str(SCRIPT), "0.25", *TINY, "--output_dir", str(out), "--val_interval", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]

    fitted = int(re.search(r"time budget: (\d+) epochs fit in 0\.2 min", log).group(1))
    assert 1 <= fitted < 1000000  # the upper bound of gpu.yaml was replaced by what the budget holds
    epochs = sorted(int(re.search(r"epoch=(\d+)", p.name).group(1)) for p in (out / "checkpoints").glob("checkpoint_*"))
    assert epochs and epochs[-1] <= fitted + 1  # stopped at (or one epoch within) the fitted length
    state = torch.load(out / "checkpoints" / f"checkpoint_epoch={epochs[-1]}.pt", weights_only=True)
    assert state["g_lr_scheduler"]["T_max"] == fitted  # the cosine schedule ends with the budget
    assert (out / "checkpoints" / "model.pt").is_file()
    reports = list((out / "eval").glob("*"))
    assert reports, "no evaluation output"
    assert "fp16" not in log and "images per batch" not in log  # CPU: float32, the configured batch


@pytest.mark.slow
def test_clinical_budgeted_run_trains_the_2_5d_generator_and_evaluates_in_physical_units(tmp_path):
    """--clinical stacks clinical.yaml and clinical_gpu.yaml on gpu.yaml: the clinical chain, not gpu.yaml's device
    cache, feeds the budgeted run, and the evaluation is the clinical one."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(5):  # five patients: every split gets one
        phantom_volume(data / f"phantom{i}.nii.gz", slices=4, scale=500.0 * (i + 1))
    out = tmp_path / "gpu"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    tiny = [
        "--clinical_network_def#channels", "[8,16]", "--clinical_network_def#strides", "[2]",
        "--clinical_network_def#num_res_units", "0", "--discriminator_def#channels", "8",
        "--discriminator_def#num_layers_d", "2", "--samples_per_image", "2", "--num_workers", "0",
        "--patch_size", "[32,32]", "--noise_cache_dir", str(tmp_path / "bank"), "--eval_max_slices", "2",
    ]  # fmt: skip
    cmd = ["bash", str(SCRIPT), "0.25", "--clinical", *tiny, "--dataset_dir", str(data), "--output_dir", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert re.search(r"time budget: \d+ epochs fit in 0\.2 min", log)
    state = torch.load(out / "checkpoints" / "model.pt", weights_only=True)
    first = next(v for k, v in state.items() if k.endswith("weight") and v.ndim == 4)
    assert first.shape[1] == 4  # the slice, its two neighbours and the noise-level map
    assert (out / "eval" / "per_slice.csv").is_file()  # the clinical evaluation, not the photographs'


def test_probe_input_has_the_generators_channels_and_its_noise_level_map():
    from medical_denoise.engine.budget import input_channels
    from medical_denoise.networks.generator import DenoiseUNet

    assert input_channels(DenoiseUNet(in_channels=3, channels=(8, 16), strides=(2,))) == 3
    clinical = DenoiseUNet(in_channels=3, out_channels=1, channels=(8, 16), strides=(2,), noise_level_input=True)
    assert input_channels(clinical) == 4
    clinical(torch.rand(1, input_channels(clinical), 16, 16))  # what the batch probe feeds runs


def test_time_budget_fits_the_schedule_after_calibration_and_stops_before_an_overrun(monkeypatch):
    from ignite.engine import Engine, Events

    from medical_denoise.engine import TimeBudget
    from medical_denoise.engine import budget as budget_module

    clock = [0.0]
    monkeypatch.setattr(budget_module.time, "monotonic", lambda: clock[0])

    def step(engine, batch):
        clock[0] += 6.0 if engine.state.epoch < 3 else 12.0  # 4 iterations: 24 s epochs, then 48 s ones

    engine = Engine(step)
    engine.adv_start_iteration = 10**9
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10**6)
    TimeBudget(minutes=2.5, lr_scheduler=sched, adv_start_share=0.25, reserve_minutes=0.5).attach(engine)
    ended = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: ended.append((e.state.epoch, clock[0])))
    engine.run(range(4), max_epochs=10**6)
    # 120 s usable: the first 24 s epoch fits 5 epochs (T_max and the adversarial start follow); epochs 3-4 take
    # 48 s, so after epoch 3 (96 s) a 4th would overrun: the run stops at an epoch end, inside the budget
    assert sched.T_max == 5 and engine.adv_start_iteration == int(0.25 * 5 * 4)
    assert ended[-1] == (3, 96.0) and engine.state.epoch == 3

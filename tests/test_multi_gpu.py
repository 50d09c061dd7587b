"""configs/multi_gpu_train.yaml: two gloo (CPU) processes under torchrun, as a user runs it on N GPUs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
import yaml
from monai.bundle import ConfigParser

from tests.utils import BUNDLE, TINY

CONFIGS = [str(BUNDLE / "configs" / "train.yaml"), str(BUNDLE / "configs" / "multi_gpu_train.yaml")]
WRITES = re.compile(r"TensorBoard|Image|Checkpoint|ProgressBar|Stats|SummaryWriter")  # logs or writes files


def test_rank0_only_components_are_switched_off_by_one_named_flag(tmp_path):
    """The overlay names what it changes: `is_not_rank0` and `train#seeder#seed`, never a list position."""
    overlay = yaml.safe_load((BUNDLE / "configs" / "multi_gpu_train.yaml").read_text())
    assert not [k for k in overlay if re.search(r"#\d+(#|$)", k)], "an override addresses a list position"
    assert {"is_not_rank0", "train#seeder#seed"} <= set(overlay)

    parser = ConfigParser(ConfigParser.load_config_files(CONFIGS))
    assert parser["train#handlers"][0] == "@train#seeder"
    # every component that logs or writes carries the flag (a new writer in train.yaml needs it too)
    ids = [f"{key}#{i}" for key in ("train#handlers", "validate#handlers") for i in range(len(parser[key]))]
    writers = [i for i in ids if isinstance(parser[i], dict) and WRITES.search(parser[i]["_target_"])]
    assert len(writers) == 7 and parser["summary_writer"]["_disabled_"] == "@is_not_rank0"
    for i in writers:
        assert parser[i].get("_disabled_") == "@is_not_rank0", parser[i]["_target_"]

    # resolved (train.yaml alone, no process group): with the flag set they are dropped before anything is
    # built; single-process runs keep them all
    for flag in (True, False):
        single = ConfigParser(ConfigParser.load_config_files(CONFIGS[:1]))
        single.update({"bundle_root": str(BUNDLE), "output_dir": str(tmp_path), "device": "cpu"})
        if flag:
            single["is_not_rank0"] = True
        assert (single.get_parsed_content("summary_writer") is None) is flag
        for i in writers:
            assert (single.get_parsed_content(i) is None) is flag, parser[i]["_target_"]


@pytest.mark.slow
def test_two_process_training_keeps_ranks_in_sync_and_only_rank0_writes(tmp_path):
    out = tmp_path / "train"
    probe = tmp_path / "probe"
    probe.mkdir()
    overlay = yaml.safe_load((BUNDLE / "configs" / "multi_gpu_train.yaml").read_text())
    extra = {
        # a rank that writes anything would do so under train_rank1/
        "output_dir": f"$'{out}' + ('' if os.environ['RANK'] == '0' else '_rank' + os.environ['RANK'])",
        "datalist_path": str(out / "datalist.json"),
        # every rank dumps its final weights (test-only) before the process group goes
        "finalize": [
            "$torch.save({'g': @network.module.state_dict(), 'd': @discriminator.module.state_dict()},"
            f" '{probe}/rank' + os.environ['RANK'] + '.pt')",
            *overlay["finalize"],
        ],
    }
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(extra))
    configs = [*CONFIGS, str(tmp_path / "probe.yaml")]
    env = {**os.environ, "MEDICAL_DENOISE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run", "training", "--bundle_root", str(BUNDLE), "--config_file", str(configs),
        *TINY, "--num_epochs", "2", "--val_interval", "1", "--image_interval", "1",
        "--val_fraction", "0.34",  # two validation images: one per rank, so the metric must be gathered
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=BUNDLE, env=env, capture_output=True, text=True, timeout=240)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]

    # DDP kept the ranks identical, and they did train (the weights moved away from the checkpoint of epoch 1)
    rank0, rank1 = (torch.load(probe / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for net in ("g", "d"):
        assert rank0[net].keys() == rank1[net].keys()
        # BatchNorm running statistics in D are per rank (DDP broadcasts rank 0's before each forward)
        differ = [k for k in rank0[net] if not torch.equal(rank0[net][k], rank1[net][k])]
        assert all(".running_" in k for k in differ), differ
    saved = torch.load(out / "checkpoints" / "checkpoint_epoch=2.pt", weights_only=True)
    assert all(torch.equal(saved["generator"][k], v) for k, v in rank0["g"].items())  # unwrapped: no "module."
    first = torch.load(out / "checkpoints" / "checkpoint_epoch=1.pt", weights_only=True)
    assert any(not torch.equal(first["generator"][k], v) for k, v in rank0["g"].items())

    # only rank 0 wrote: one TensorBoard file, pictures, checkpoints; nothing under rank 1's output folder
    assert not (tmp_path / "train_rank1").exists()
    assert len(list((out / "tensorboard").glob("events.out.tfevents*"))) == 1
    assert (out / "images" / "combined_epoch_2.png").is_file() and (out / "checkpoints" / "model.pt").is_file()
    assert log.count("Epoch[2] Metrics -- val_psnr") == 1  # rank 0's StatsHandler only

    # val_psnr is the mean over both validation images although each rank saw one
    logged = float(re.search(r"Epoch\[2\] Metrics -- val_psnr: ([\d.]+)", log).group(1))
    parser = ConfigParser()
    parser.read_config(CONFIGS[0])
    args = dict(zip(TINY[::2], TINY[1::2]))
    parser.update({k.lstrip("-"): yaml.safe_load(v) for k, v in args.items()})
    parser.update({"bundle_root": str(BUNDLE), "output_dir": str(out), "val_fraction": 0.34, "device": "cpu"})
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(saved["generator"])
    psnr = []
    with torch.no_grad():
        for item in parser.get_parsed_content("validate#dataset"):
            pred = network.eval()(item["image"][None]).clamp(0, 1)
            psnr.append(10 * torch.log10(1.0 / torch.mean((pred - item["label"][None]) ** 2)).item())
    assert len(psnr) == 2 and abs(psnr[0] - psnr[1]) > 1e-3
    assert logged == pytest.approx(sum(psnr) / 2, abs=2e-4)

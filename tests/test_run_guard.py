"""One run per output folder: used folders refused, concurrent runs refused, resumes keep the best model.pt."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from ignite.engine import Engine, Events

from medical_denoise.engine import AtomicCheckpointSaver, RunFolderError, RunFolderGuard, latest_checkpoint, run_guard
from medical_denoise.engine.checkpoint import KEY_METRIC_STATE
from tests.utils import BUNDLE, TINY, TRAIN, bundle_command


def _used_folder(out):
    """A folder as a finished run leaves it, plus a file of the user's."""
    files = ["checkpoints/checkpoint_epoch=4.pt", "checkpoints/checkpoint_epoch=5.pt", "checkpoints/model.pt",
             f"checkpoints/{KEY_METRIC_STATE}", "checkpoints/tmpab12cd", "datalist.json",
             "tensorboard/events.out.tfevents.1.host", "images/combined_epoch_5.png", "notes.txt"]  # fmt: skip
    for name in files:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("x")
    return out


def _write_lock(out, pid, host=None):
    out.mkdir(parents=True, exist_ok=True)
    owner = {"pid": pid, "host": host or socket.gethostname(), "started": "2025-01-01 00:00:00", "token": "t"}
    (out / "training.lock").write_text(json.dumps(owner))


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- refusing a used folder ----


def test_fresh_folder_is_locked_then_released(tmp_path):
    guard = RunFolderGuard(tmp_path / "run").acquire()
    owner = json.loads((tmp_path / "run" / "training.lock").read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname() and guard.held
    guard.release()
    guard.release()  # idempotent
    assert not (tmp_path / "run" / "training.lock").exists()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == []  # no temporary files left


def test_used_folder_is_refused_with_one_line_naming_the_folder_and_both_options(tmp_path):
    out = _used_folder(tmp_path / "run")
    with pytest.raises(RunFolderError) as err:
        RunFolderGuard(out).acquire()
    message = str(err.value)
    assert "\n" not in message and str(out) in message
    assert "--resume_from" in message and "--overwrite_run True" in message
    assert not (out / "training.lock").exists()  # a refused run leaves no lock behind
    assert (out / "checkpoints" / "model.pt").read_text() == "x"


def test_resume_may_use_its_own_folder(tmp_path):
    out = _used_folder(tmp_path / "run")
    RunFolderGuard(out, resume_from="latest").acquire().release()
    assert (out / "checkpoints" / "checkpoint_epoch=5.pt").exists()


def test_a_folder_of_unrelated_files_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    RunFolderGuard(tmp_path).acquire().release()


def test_a_datalist_outside_the_folder_is_the_users(tmp_path):
    split = tmp_path / "split.json"  # a curated split passed as --datalist_path
    split.write_text("{}")
    RunFolderGuard(tmp_path / "run", datalist_path=split).acquire().release()
    _used_folder(tmp_path / "run")
    RunFolderGuard(tmp_path / "run", datalist_path=split, overwrite_run=True).acquire().release()
    assert split.read_text() == "{}"


def test_overwrite_run_deletes_only_the_earlier_runs_files(tmp_path):
    out = _used_folder(tmp_path / "run")
    guard = RunFolderGuard(out, overwrite_run="True").acquire()  # as it arrives from `--overwrite_run True`
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert left == ["notes.txt", "training.lock"]
    assert latest_checkpoint(out / "checkpoints") is None  # nothing of the old run can be resumed
    guard.release()


def test_overwrite_run_refuses_contradictions_before_deleting_anything(tmp_path):
    out = _used_folder(tmp_path / "run")
    with pytest.raises(ValueError, match="not both"):
        RunFolderGuard(out, resume_from="latest", overwrite_run=True).acquire()
    with pytest.raises(ValueError, match="init_weights"):
        RunFolderGuard(out, overwrite_run=True, init_weights=out / "checkpoints" / "model.pt").acquire()
    with pytest.raises(ValueError, match="overwrite_run"):
        RunFolderGuard(out, overwrite_run="maybe")
    assert (out / "checkpoints" / "model.pt").exists() and not (out / "training.lock").exists()


# ---- the lock ----


def test_concurrent_run_is_refused(tmp_path):
    out = tmp_path / "run"
    first = RunFolderGuard(out).acquire()
    with pytest.raises(RunFolderError) as err:  # a second run in this process
        RunFolderGuard(out).acquire()
    assert "\n" not in str(err.value) and f"pid {os.getpid()}" in str(err.value) and str(out) in str(err.value)
    first.release()

    _write_lock(out, os.getppid())  # another live process holds it
    with pytest.raises(RunFolderError, match=f"in use by another training \\(pid {os.getppid()} "):
        RunFolderGuard(out).acquire()
    _write_lock(out, 1, host="another-host")  # liveness unknowable: refused, with how to recover
    with pytest.raises(RunFolderError, match="delete the lock file"):
        RunFolderGuard(out).acquire()


def test_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    out = tmp_path / "run"
    _write_lock(out, _dead_pid())
    with caplog.at_level(logging.WARNING, logger="medical_denoise"):
        guard = RunFolderGuard(out).acquire()
    assert "stale lock" in caplog.text
    assert json.loads((out / "training.lock").read_text())["pid"] == os.getpid()
    guard.release()
    # a lock of this process that no live guard holds (a run here ended without releasing it) is stale too
    _write_lock(out, os.getpid())
    RunFolderGuard(out).acquire().release()


def test_lock_released_when_training_completes_or_fails(tmp_path):
    out = tmp_path / "run"
    guard = RunFolderGuard(out).acquire()
    engine = Engine(lambda e, b: b)
    guard.attach(engine)
    guard.attach(engine)  # attaching twice registers once
    assert len(engine._event_handlers[Events.COMPLETED]) == 1
    engine.run([1, 2], max_epochs=1)
    assert not (out / "training.lock").exists() and not guard.held

    guard = RunFolderGuard(out).acquire()

    def fail(engine, batch):
        raise FloatingPointError("non-finite loss")

    failing = Engine(fail)
    guard.attach(failing)
    with pytest.raises(FloatingPointError):  # re-raised, not swallowed by ignite
        failing.run([1], max_epochs=1)
    assert not (out / "training.lock").exists()


def test_only_rank0_guards(tmp_path, monkeypatch):
    monkeypatch.setattr(run_guard, "global_rank", lambda: 1)
    out = _used_folder(tmp_path / "run")
    RunFolderGuard(out).acquire()  # rank 1 neither refuses nor locks (rank 0 does)
    assert not (out / "training.lock").exists()
    RunFolderGuard(tmp_path / "rank1").acquire()
    assert not (tmp_path / "rank1").exists()  # and writes nothing


# ---- resume keeps the saver's state ----


def _validate(engine, net, scores, saver):
    """An evaluator-like engine: epoch k's key metric is scores[k - 1]; the weights hold that score."""

    @engine.on(Events.EPOCH_COMPLETED)
    def _metric(engine):
        score = scores[engine.state.epoch - 1]
        with torch.no_grad():
            net.weight.fill_(score)
        engine.state.metrics["val_psnr"] = score
        if score > engine.state.best_metric:  # as MONAI's Workflow does before the handlers run
            engine.state.best_metric, engine.state.best_metric_epoch = score, engine.state.epoch

    saver.attach(engine)


def _key_saver(folder, net):
    return AtomicCheckpointSaver(save_dir=str(folder), save_dict={"generator": net}, save_key_metric=True,
                                 key_metric_name="val_psnr", key_metric_filename="model.pt")  # fmt: skip


def test_resumed_run_never_replaces_a_better_model_pt(tmp_path):
    net = torch.nn.Linear(1, 1)
    first = Engine(lambda e, b: b)
    first.state.best_metric, first.state.best_metric_epoch = -1, -1
    _validate(first, net, [10.0, 12.0], _key_saver(tmp_path, net))
    first.run([0], max_epochs=2)
    assert torch.load(tmp_path / "model.pt", weights_only=True)["weight"].item() == 12.0

    # a new process resumes: fresh network, saver and evaluator; its validation is worse
    net = torch.nn.Linear(1, 1)
    resumed = Engine(lambda e, b: b)
    resumed.state.best_metric, resumed.state.best_metric_epoch = -1, -1
    _validate(resumed, net, [7.0, 11.0, 13.0], _key_saver(tmp_path, net))
    assert resumed.state.best_metric == 12.0  # MONAI's best-metric log continues too
    resumed.run([0], max_epochs=2)
    assert torch.load(tmp_path / "model.pt", weights_only=True)["weight"].item() == 12.0
    resumed.run([0], max_epochs=3)  # ... until it does better
    assert torch.load(tmp_path / "model.pt", weights_only=True)["weight"].item() == 13.0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files


def _interval_run(folder, start_epoch, max_epochs, n_saved=2):
    net = torch.nn.Linear(1, 1)
    engine = Engine(lambda e, b: b)
    saver = AtomicCheckpointSaver(save_dir=str(folder), save_dict={"generator": net, "trainer": engine},
                                  save_interval=1, n_saved=n_saved)  # fmt: skip
    saver.attach(engine)
    if start_epoch:
        engine.load_state_dict({"epoch": start_epoch, "epoch_length": 1, "max_epochs": max_epochs})
    engine.run([0], max_epochs=max_epochs)
    return sorted(int(p.stem.split("=")[1]) for p in folder.glob("checkpoint_epoch=*.pt"))


def test_old_interval_checkpoints_are_pruned_after_a_resume(tmp_path):
    assert _interval_run(tmp_path, 0, 3) == [2, 3]
    assert _interval_run(tmp_path, 3, 5) == [4, 5]  # n_saved holds across the two processes
    # resuming from an older checkpoint replaces the later ones of the abandoned continuation
    assert _interval_run(tmp_path, 3, 4) == [4]
    assert _interval_run(tmp_path, 0, 1, n_saved=None) == [1]


# ---- the bundle, end to end ----


def _run(out, *extra, env):
    """A training run that may fail (``tests.utils.run_bundle`` asserts success)."""
    cmd = bundle_command("run", "training", *TRAIN, *TINY, "--output_dir", str(out), "--image_interval", "100",
                         "--val_interval", "1", *extra)  # fmt: skip
    return subprocess.run(cmd, check=False, cwd=BUNDLE, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run_guard")
    env = {**os.environ, "MEDICAL_DENOISE_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp / "first"
    proc = _run(out, "--num_epochs", "2", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp, out, env


def _copy(first_run, name):
    tmp, out, env = first_run
    shutil.copytree(out, tmp / name)
    return tmp / name, env


@pytest.mark.slow
def test_bundle_refuses_a_used_folder_then_overwrites_it_on_request(first_run):
    out, env = _copy(first_run, "used")
    best = (out / "checkpoints" / "model.pt").read_bytes()
    proc = _run(out, "--num_epochs", "1", env=env)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "holds another training run" in line]
    assert (
        lines and "--resume_from latest" in lines[-1] and "--overwrite_run True" in lines[-1] and str(out) in lines[-1]
    )
    assert (out / "checkpoints" / "model.pt").read_bytes() == best and not (out / "training.lock").exists()

    proc = _run(out, "--num_epochs", "1", "--overwrite_run", "True", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == ["checkpoint_epoch=1.pt", "model.pt"]
    assert len(list((out / "tensorboard").glob("events.out.tfevents*"))) == 1  # the old run's log is gone
    assert not (out / "training.lock").exists()


@pytest.mark.slow
def test_bundle_refuses_a_folder_another_training_holds(first_run):
    tmp, _, env = first_run
    out = tmp / "locked"
    _write_lock(out, os.getpid())  # this test process plays the running training
    proc = _run(out, "--num_epochs", "1", env=env)
    assert proc.returncode != 0 and f"in use by another training (pid {os.getpid()}" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["training.lock"]  # refused before writing anything


@pytest.mark.slow
def test_bundle_resume_keeps_the_better_model_and_prunes(first_run):
    out, env = _copy(first_run, "resumed")
    best = (out / "checkpoints" / "model.pt").read_bytes()
    best_score = json.loads((out / "checkpoints" / KEY_METRIC_STATE).read_text())["best_metric"]
    # validation sees black predictions after the resume: every score is worse than the first run's best
    proc = _run(out, "--num_epochs", "4", "--resume_from", "latest", "--validate#postprocessing#func",
                "$lambda x: 0.0 * x", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "resumed key metric tracking" in proc.stdout
    later = [
        float(line.split("val_psnr: ")[1].split()[0])
        for line in proc.stdout.splitlines()
        if "Metrics -- val_psnr" in line
    ]
    assert len(later) == 2 and max(later) < best_score
    assert (out / "checkpoints" / "model.pt").read_bytes() == best
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint_epoch=*.pt")) == [
        "checkpoint_epoch=3.pt", "checkpoint_epoch=4.pt"]  # fmt: skip

"""Folder runs of ``denoise_path`` on real small files: independent inputs, resume, mixed folders, output permissions,
writability and the pixel budget (issue 16, inference side). Predictors are identities: no trained weights."""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from medical_denoise.atomic import atomic_path, atomic_paths
from medical_denoise.io import FailedInputsError, InputItem, collect_inputs, denoise_path, read_image, write_like
from medical_denoise.networks.export import export_torchscript
from tests.utils import dicom_file, make_series

pytestmark = pytest.mark.filterwarnings("ignore:builtin type:DeprecationWarning")


class Recording:
    """Identity predictor that counts its calls and the shapes it saw; ``fail_at`` raises on that call (1-based)."""

    def __init__(self, fail_at: int | None = None, error: BaseException | None = None) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.fail_at, self.error = fail_at, error

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        if self.fail_at is not None and len(self.shapes) == self.fail_at:
            raise self.error or KeyboardInterrupt()
        return x.clone()


def run(src: Path, out: Path, predictor=None, **kwargs) -> list[Path]:
    predictor = Recording() if predictor is None else predictor
    return denoise_path(src, out, predictor, model_channels=1, description="t", progress=False, **kwargs)


def png(path: Path, value: int = 7, size: tuple[int, int] = (6, 5)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)
    return path


def truncated_jpeg(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ----------------------------------------------------------------------------------------------- permissions


def test_outputs_get_umask_permissions_also_when_overwritten(tmp_path, umask_022):
    src = tmp_path / "in"
    png(src / "a.png")
    shutil.copy(dicom_file("CT_small.dcm"), src / "ct.dcm")
    nib.Nifti1Image(np.arange(120, dtype=np.int16).reshape(6, 5, 4), np.eye(4)).to_filename(src / "v.nii.gz")
    make_series(tmp_path / "ser", n=2)
    out = run(src, tmp_path / "out") + run(tmp_path / "ser", tmp_path / "out")
    assert len(out) == 5 and {mode(p) for p in out} == {0o644}
    (tmp_path / "out" / "a.png").chmod(0o600)  # overwrite gives the umask's mode, as a plain open() would
    again = run(src, tmp_path / "out", overwrite=True)
    assert {mode(p) for p in again} == {0o644}
    image = read_image(tmp_path / "ser")
    assert {mode(p) for p in write_like(image, image.array, tmp_path / "w", description="t")} == {0o644}
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_atomic_helpers_and_export_share_the_permissions(tmp_path, umask_022):
    with atomic_path(tmp_path / "a.nii.gz", keep_suffix=True) as tmp:
        assert tmp.name.startswith(".a.nii.gz.") and tmp.name.endswith(".tmp.nii.gz")
        tmp.write_bytes(b"x")
    assert mode(tmp_path / "a.nii.gz") == 0o644
    (tmp_path / "b").write_text("old")
    with pytest.raises(RuntimeError):  # a failure while writing: no file moved, old file untouched, no temps
        with atomic_paths([tmp_path / "b", tmp_path / "c"]) as temps:
            temps[0].write_text("new")
            raise RuntimeError("disk full")
    assert (tmp_path / "b").read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.nii.gz", "b"]
    path = export_torchscript(torch.nn.Conv2d(1, 1, 3, padding=1), tmp_path / "net.ts")
    assert mode(path) == 0o644


# ---------------------------------------------------------------------------------- independent inputs


def bad_folder(root: Path) -> Path:
    """Two good PNGs around a truncated JPEG, a dangling link, a corrupt DICOM, a text file named .dcm and a pair of
    links pointing at each other."""
    src = root / "in"
    png(src / "a.png", 1)
    truncated_jpeg(src / "b.jpg")
    (src / "c.png").symlink_to(root / "nowhere.png")
    shutil.copy(dicom_file("MR_truncated.dcm"), src / "d.dcm")
    (src / "e.dcm").write_text("not a DICOM file\n")
    png(src / "f.png", 2)
    (src / "g.png").symlink_to(src / "h.png")
    (src / "h.png").symlink_to(src / "g.png")
    return src


def test_folder_writes_good_files_reports_bad_ones_and_fails_at_the_end(tmp_path, caplog):
    src = bad_folder(tmp_path)
    predictor = Recording()
    with caplog.at_level(logging.INFO, logger="medical_denoise.io.inference"):
        with pytest.raises(FailedInputsError) as err:
            run(src, tmp_path / "out", predictor)
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "f.png"]  # f.png comes after the bad ones
    assert len(predictor.shapes) == 2
    failed = sorted(p.name for p, _ in err.value.failures)
    assert failed == ["b.jpg", "c.png", "d.dcm", "e.dcm", "g.png", "h.png"]
    lines = str(err.value).splitlines()
    assert lines[0].startswith("6 of 8 input(s) failed") and "2 written, 0 skipped" in lines[0]
    for (path, reason), line in zip(err.value.failures, lines[1:]):  # one line per failure, naming its file
        assert line == reason and str(path) in reason and "\n" not in reason
    assert sorted(err.value.written) == [tmp_path / "out" / "a.png", tmp_path / "out" / "f.png"]
    summary = [r.getMessage() for r in caplog.records if "input(s) written" in r.getMessage()]
    assert summary == [f"{tmp_path / 'out'}: 2 input(s) written (2 files), 0 skipped (outputs already there), 6 failed"]
    assert sum(r.levelno == logging.ERROR for r in caplog.records) == 6  # each failure logged as it happens


def test_a_single_input_raises_its_own_error(tmp_path):
    with pytest.raises(ValueError, match="b.jpg") as err:
        run(truncated_jpeg(tmp_path / "b.jpg"), tmp_path / "out")
    assert not isinstance(err.value, FailedInputsError) and not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        run(tmp_path / "nowhere.png", tmp_path / "out")


def test_killed_run_resumes_with_skip_existing(tmp_path):
    src = tmp_path / "in"
    for k in range(4):
        png(src / f"{k}.png", k)
    with pytest.raises(KeyboardInterrupt):  # killed while denoising the third file
        run(src, tmp_path / "out", Recording(fail_at=3))
    assert sorted(os.listdir(tmp_path / "out")) == ["0.png", "1.png"]
    (tmp_path / "out" / ".2.png.x1y2.tmp").write_bytes(b"")  # what a kill during a write leaves
    first = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("[01].png")}
    with pytest.raises(ValueError, match="already exists.*skip_existing=True"):
        run(src, tmp_path / "out")
    predictor = Recording()
    out = run(src, tmp_path / "out", predictor, skip_existing=True)
    assert sorted(p.name for p in out) == ["2.png", "3.png"] and len(predictor.shapes) == 2
    assert {p: p.stat().st_mtime_ns for p in first} == first  # finished outputs left alone
    for k in range(4):
        assert np.asarray(Image.open(tmp_path / "out" / f"{k}.png")).max() == k
    assert run(src, tmp_path / "out", skip_existing=True) == []  # nothing left to do


def test_skip_existing_treats_an_empty_or_partial_output_as_unfinished(tmp_path):
    files = make_series(tmp_path / "in" / "ser", n=3)
    png(tmp_path / "in" / "a.png")
    (tmp_path / "out" / "ser").mkdir(parents=True)
    shutil.copy(files[0], tmp_path / "out" / "ser" / files[0].name)  # one slice of three
    (tmp_path / "out" / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match="already exists; pass overwrite=True"):
        run(tmp_path / "in", tmp_path / "out", skip_existing=True)
    out = run(tmp_path / "in", tmp_path / "out", skip_existing=True, overwrite=True)
    assert len(out) == 4 and len({pydicom.dcmread(p).SeriesInstanceUID for p in out if p.suffix == ".dcm"}) == 1


def test_overwrite_replaces_file_by_file(tmp_path):
    src = tmp_path / "in"
    png(src / "a.png", 3)
    truncated_jpeg(src / "b.jpg")
    png(src / "c.png", 4)
    png(tmp_path / "out" / "a.png", 100)
    png(tmp_path / "out" / "c.png", 100)
    inode = (tmp_path / "out" / "c.png").stat().st_ino
    with pytest.raises(FailedInputsError, match="b.jpg"):
        run(src, tmp_path / "out", overwrite=True)
    assert np.asarray(Image.open(tmp_path / "out" / "a.png")).max() == 3
    assert np.asarray(Image.open(tmp_path / "out" / "c.png")).max() == 4
    assert (tmp_path / "out" / "c.png").stat().st_ino != inode  # a new file moved into place, not rewritten


# --------------------------------------------------------------------------------------------- mixed folders


def test_mixed_folder_groups_dicom_by_series_and_keeps_other_files_apart(tmp_path):
    src = tmp_path / "in"
    series = make_series(src, n=3)
    png(src / "a.png")
    nib.Nifti1Image(np.ones((4, 5, 2), np.float32), np.eye(4)).to_filename(src / "v.nii.gz")
    shutil.copy(dicom_file("MR_small.dcm"), src / "stray.dcm")
    (src / "notes.txt").write_text("skipped")
    items = collect_inputs(src)
    assert sorted(items, key=lambda i: str(i.path)) == sorted(
        [InputItem(src / "a.png"), InputItem(src / "stray.dcm"), InputItem(src / "v.nii.gz"),
         InputItem(src, tuple(sorted(series)))], key=lambda i: str(i.path))  # fmt: skip
    predictor = Recording()
    out = run(src, tmp_path / "out", predictor)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in out) == sorted(
        ["a.png", "stray.dcm", "v.nii.gz", *(f.name for f in series)]
    )
    assert (3, 1, 128, 128) in predictor.shapes  # the series is one volume, denoised in one batch
    derived = {pydicom.dcmread(tmp_path / "out" / f.name).SeriesInstanceUID for f in series}
    assert len(derived) == 1 and derived != {pydicom.dcmread(series[0]).SeriesInstanceUID}


def test_folder_of_two_series_and_a_sub_folder(tmp_path):
    src = tmp_path / "in"
    first = make_series(src, n=2, seed=1)
    for k, f in enumerate(make_series(tmp_path / "tmp", n=2, seed=2)):
        shutil.move(f, src / f"z{k}.dcm")
    sub = make_series(src / "sub", n=2)
    png(src / "sub" / "ignored.png")  # sub-folders give their DICOM items only, as before
    items = collect_inputs(src)
    assert [len(i.files) for i in items] == [2, 2, 2]
    out = run(src, tmp_path / "out")
    names = sorted(p.relative_to(tmp_path / "out").as_posix() for p in out)
    assert names == sorted([f.name for f in first] + ["z0.dcm", "z1.dcm"] + [f"sub/{f.name}" for f in sub])


def test_a_failed_series_is_named_by_its_files_not_by_the_folder_it_shares(tmp_path):
    import pydicom

    src = tmp_path / "in"
    good = make_series(src, n=2, seed=1)
    for k, f in enumerate(make_series(tmp_path / "tmp", n=2, seed=2)):
        shutil.move(f, src / f"z{k}.dcm")
    ds = pydicom.dcmread(src / "z1.dcm")  # one slice of the second series of another size
    ds.PixelData, ds.Rows, ds.Columns = ds.pixel_array[:64, :64].tobytes(), 64, 64
    ds.save_as(src / "z1.dcm")
    with pytest.raises(FailedInputsError) as err:
        run(src, tmp_path / "out")
    [(path, reason)] = err.value.failures
    assert path == src / "z0.dcm" and reason.startswith(f"{src / 'z0.dcm'} (series of 2 files): ")
    assert str(src / "z0.dcm") in str(err.value).splitlines()[0]  # not just the folder both series share
    assert sorted(os.listdir(tmp_path / "out")) == sorted(f.name for f in good)


def test_multi_frame_files_of_one_series_are_each_a_volume_of_their_own(tmp_path):
    """Cine clips of one ultrasound exam, or enhanced multi-frame MR split over files, share a series; each file is
    a volume (grouping them as one series failed every one of them)."""
    import pydicom
    from pydicom.uid import generate_uid

    src = tmp_path / "in"
    src.mkdir()
    for name in ("clip1.dcm", "clip2.dcm"):
        ds = pydicom.dcmread(dicom_file("emri_small.dcm"))  # 10 frames
        ds.SOPInstanceUID = generate_uid()
        ds.save_as(src / name)
    assert [(i.path.name, i.files) for i in collect_inputs(src)] == [("clip1.dcm", ()), ("clip2.dcm", ())]
    predictor = Recording()
    assert sorted(p.name for p in run(src, tmp_path / "out", predictor)) == ["clip1.dcm", "clip2.dcm"]
    assert sum(shape[0] for shape in predictor.shapes) == 20  # 10 frames each


def test_a_folder_that_is_one_series_is_still_written_as_a_folder(tmp_path):
    files = make_series(tmp_path / "ser", n=2)
    (tmp_path / "ser" / "README").write_text("not a slice")
    out = run(tmp_path / "ser", tmp_path / "out")
    assert sorted(out) == sorted(tmp_path / "out" / "ser" / f.name for f in files)


# ----------------------------------------------------------------------------------------- before any work


def test_read_only_output_folder_refused_before_the_model_runs(tmp_path):
    png(tmp_path / "in" / "a.png")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    predictor = Recording()
    try:
        with pytest.raises(PermissionError, match="read-only") as err:
            run(tmp_path / "in", locked / "out", predictor)
        assert "\n" not in str(err.value)
    finally:
        locked.chmod(0o755)
    assert predictor.shapes == [] and not (locked / "out").exists()


def test_images_over_the_pixel_budget_are_refused_before_decoding(tmp_path, monkeypatch):
    import tifffile

    src = tmp_path / "in"
    png(src / "big.png", size=(100, 120))
    # 10800 pixels over its 3 pages
    tifffile.imwrite(src / "pages.tif", np.zeros((3, 60, 60), np.uint8), photometric="minisblack")
    png(src / "small.png", size=(50, 50))
    predictor = Recording()
    with pytest.raises(FailedInputsError) as err:
        run(src, tmp_path / "out", predictor, max_pixels=10_000)
    reasons = dict(err.value.failures)
    assert sorted(p.name for p in reasons) == ["big.png", "pages.tif"]
    assert all("max_pixels" in r and str(p) in r for p, r in reasons.items())
    assert predictor.shapes == [(1, 1, 50, 50)] and os.listdir(tmp_path / "out") == ["small.png"]
    with pytest.raises(ValueError, match="big.png.*12000 pixels exceed the max_pixels"):
        run(src / "big.png", tmp_path / "out2", max_pixels=10_000)
    # with no budget at all, Pillow's own decompression-bomb refusal, reported the same way (with a budget, the
    # budget replaces it: tests/test_tiled_inference.py)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match="big.png: refused before decoding .*max_pixels"):
        run(src / "big.png", tmp_path / "out3", max_pixels=None, max_memory_gb=None)

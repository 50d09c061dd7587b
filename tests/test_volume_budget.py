"""Volumes (NIfTI, DICOM series) are judged against ``max_memory_gb`` from their headers, before any pixel is read;
4D NIfTI is denoised one volume at a time through ``volume_index``."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path as NIB_DATA

from medical_denoise.io import ModelRouter, ModelSpec, denoise_path
from medical_denoise.io import readers as readers_module
from medical_denoise.io.budget import MAX_MEMORY_GB, VOLUME_BYTES_PER_VOXEL, check_memory_budget
from medical_denoise.io.tiled import BASE_MEMORY_GB
from tests.test_tiled_inference import Recording, tiny_predictor


def nifti_header_only(path: Path, shape: tuple[int, ...]) -> Path:
    """A .nii whose header claims ``shape`` (int16) and that holds no voxel data."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352
    with open(path, "wb") as f:
        header.write_to(f)
        f.write(b"\0" * 4)  # extension flag
    return path


def test_the_default_budget_takes_a_512_cube_ct_not_a_thousand_slices():
    need = BASE_MEMORY_GB + 512 * 512 * 300 * VOLUME_BYTES_PER_VOXEL / 2**30
    assert need < MAX_MEMORY_GB < BASE_MEMORY_GB + 512 * 512 * 1000 * VOLUME_BYTES_PER_VOXEL / 2**30


def test_a_nifti_over_the_budget_is_refused_from_its_header_in_one_line(tmp_path, monkeypatch):
    big = nifti_header_only(tmp_path / "big.nii", (1024, 1024, 900))
    read = []
    monkeypatch.setattr(readers_module, "_read_nifti", lambda *a: read.append(a))
    predictor = Recording(tiny_predictor(channels=1, context=1))
    router = ModelRouter.fixed(ModelSpec(predictor=predictor, image_channels=1, context_slices=1))
    with pytest.raises(ValueError) as err:
        denoise_path(big, tmp_path / "out", router, description="t", progress=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{big}: 1024 x 1024 x 900 NIfTI (944 M voxels) needs about")
    assert "over the max_memory_gb budget of 4; refused before reading" in message
    assert "about 99 slices of this size fit" in message
    assert read == [] and predictor.shapes == [] and not (tmp_path / "out" / "big.nii").exists()


def test_a_dicom_series_is_judged_by_its_slices_and_the_budget_is_an_option(tmp_path, make_series):
    files = make_series(tmp_path / "series", n=4)  # 4 x 128 x 128 CT_small copies
    need = BASE_MEMORY_GB + 4 * 128 * 128 * VOLUME_BYTES_PER_VOXEL / 2**30
    with pytest.raises(ValueError, match=r"series: 128 x 128 x 4 DICOM series \(0 M voxels\) needs about 1\.0 GiB"):
        check_memory_budget(tmp_path / "series", files, max_memory_gb=BASE_MEMORY_GB + 1e-4)
    assert check_memory_budget(tmp_path / "series", files, max_memory_gb=need + 1e-6) is None
    assert check_memory_budget(tmp_path / "series", files, max_memory_gb=None) is None
    with pytest.raises(ValueError, match=r"series.dcm: 128 x 128 x 1 DICOM file"):
        check_memory_budget(files[0].rename(tmp_path / "series.dcm"), (), max_memory_gb=BASE_MEMORY_GB + 1e-6)


def test_a_damaged_header_is_left_to_the_reader(tmp_path):
    bad = tmp_path / "bad.nii"
    bad.write_bytes(b"not a nifti header")
    assert check_memory_budget(bad, max_memory_gb=1.0) is None  # read_image then names the damage


def test_a_4d_nifti_is_denoised_one_volume_at_a_time(tmp_path):
    src = Path(NIB_DATA) / "functional.nii"  # 4D, 12 volumes
    router = ModelRouter.fixed(ModelSpec(predictor=tiny_predictor(channels=1, context=1), image_channels=1,
                                         context_slices=1))  # fmt: skip
    with pytest.raises(ValueError, match=r"functional.nii: 4D NIfTI .* \(inference: --volume_index N\)"):
        denoise_path(src, tmp_path / "out", router, description="t", progress=False)
    (written,) = denoise_path(src, tmp_path / "out", router, description="t", progress=False, volume_index=3)
    out = nib.load(written)
    assert out.shape == nib.load(src).shape[:3]


@pytest.mark.parametrize(
    "option, value, expected",
    [("tile_size", "abc", "an integer"), ("batch_size", 0, "an integer > 0"), ("volume_index", 1.5, "an integer"),
     ("max_memory_gb", "lots", "a number > 0"), ("max_pixels", -5, "an integer > 0")],
)  # fmt: skip
def test_bad_options_are_named_in_one_line_before_any_work(tmp_path, option, value, expected):
    src = Path(NIB_DATA) / "example4d.nii.gz"
    router = ModelRouter.fixed(ModelSpec(predictor=tiny_predictor(channels=1), image_channels=1))
    with pytest.raises(ValueError, match=f"^option {option} must be {expected}, got {value!r}.$"):
        denoise_path(src, tmp_path / "out", router, description="t", progress=False, **{option: value})
    assert not (tmp_path / "out").exists()

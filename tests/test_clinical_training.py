"""Training/evaluating the bundle on clinical files: listing, loading, slicing, and the bundle end to end."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from nibabel.testing import data_path as nibabel_data
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medical_denoise.data import CenterSliced, LoadClinicald, RandSliced, find_images, prepare_datalist
from medical_denoise.io import CT_WINDOW, IntensityMapping
from tests.utils import phantom_volume

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "gan_denoise"
CLINICAL = "['configs/train.yaml','configs/clinical.yaml']"


def write_series(folder: Path, positions: list[float], names: list[str]) -> list[np.ndarray]:
    """MR_small copies as one series: slice i at z = positions[i] holds MR_small + 100 * i, named names[i]."""
    folder.mkdir(parents=True)
    source = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    series_uid = generate_uid()
    slices = []
    for i, (z, name) in enumerate(zip(positions, names)):
        ds = copy.deepcopy(source)
        pixels = (source.pixel_array + 100 * i).astype(source.pixel_array.dtype)
        ds.PixelData = pixels.tobytes()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [-83.9063, -91.2, z]
        ds.InstanceNumber = i + 1
        ds.save_as(folder / name)
        slices.append(pixels)
    return slices


# ---------------------------------------------------------------------------------------------------- loader


def test_ct_dicom_is_mapped_through_the_hu_window_and_restored_by_the_inverse():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    d = LoadClinicald("image", clip=False)({"image": path})  # as clinical.yaml loads: not clipped
    img, info = d["image"], d["image_intensity"]
    low, high = CT_WINDOW
    assert isinstance(img, torch.Tensor) and img.dtype == torch.float32 and img.shape == (1, 128, 128)
    assert info["kind"] == "ct_window" and (info["low"], info["high"]) == (low, high)
    assert info["data_range"] == high - low and info["modality"] == "CT"
    np.testing.assert_allclose(img[0].numpy(), (hu - low) / (high - low), atol=1e-5)
    restored = IntensityMapping.from_dict(info).inverse(img.numpy())[0]
    np.testing.assert_allclose(restored, hu, atol=0.01)  # bone and air outside the window come back exactly
    assert info["outside_fraction"] > 0.0


def test_nifti_from_nibabel_uses_volume_percentiles_and_keeps_the_layout():
    path = Path(nibabel_data) / "anatomical.nii"
    data = np.asarray(nib.load(path).dataobj, dtype=np.float64)
    d = LoadClinicald("image")({"image": str(path)})
    img, info = d["image"].numpy(), d["image_intensity"]
    assert img.shape == (1, *data.shape) and img.ndim == 4
    low, high = np.percentile(data, (0.5, 99.5))
    assert info["kind"] == "percentile" and info["low"] == pytest.approx(low) and info["high"] == pytest.approx(high)
    np.testing.assert_allclose(img[0], np.clip((data - low) / (high - low), 0, 1), atol=1e-5)
    assert 0.0 <= img.min() and img.max() <= 1.0 and 0 < info["outside_fraction"] < 0.02
    # channels=3: grey replicated for an RGB network
    assert LoadClinicald("image", channels=3)({"image": str(path)})["image"].shape == (3, *data.shape)


def test_series_folder_is_one_volume_ordered_by_position_not_name(tmp_path):
    # file names run against the slice positions: a.dcm is the highest slice
    slices = write_series(tmp_path / "series", positions=[30.0, 10.0, 20.0], names=["a.dcm", "c.dcm", "b.dcm"])
    d = LoadClinicald("image", modality="CT", clip=False)({"image": str(tmp_path / "series")})
    img, info = d["image"].numpy(), d["image_intensity"]
    assert img.shape == (1, 64, 64, 3) and info["kind"] == "ct_window"
    raw = IntensityMapping.from_dict(info).inverse(img)[0]
    for k, i in enumerate([1, 2, 0]):  # z = 10, 20, 30
        np.testing.assert_allclose(raw[..., k], slices[i], atol=0.01)


# --------------------------------------------------------------------------------------------------- slicing


def test_rand_sliced_is_reproducible_and_cuts_every_key_alike():
    vol = torch.arange(10, dtype=torch.float32).view(1, 1, 1, 10).repeat(1, 4, 5, 1)
    sample = {"image": vol, "label": vol + 100}

    def draws(seed: int) -> list[int]:
        t = RandSliced(["image", "label"]).set_random_state(seed=seed)
        out = [t(sample) for _ in range(12)]
        for o in out:
            assert o["image"].shape == (1, 4, 5)
            assert torch.all(o["image"] == o["slice_index"]) and torch.all(o["label"] == o["slice_index"] + 100)
        return [o["slice_index"] for o in out]

    assert draws(7) == draws(7) and len(set(draws(7))) > 3
    assert draws(7) != draws(8)
    assert torch.equal(sample["image"], vol)  # the cached volume is left alone
    flat = {"image": torch.rand(1, 4, 5)}
    passed = RandSliced("image")(flat)
    assert passed["image"] is flat["image"] and passed["slice_index"] == -1
    # other axis: spatial axis 0 of (C, 4, 5, 10) -> (C, 5, 10)
    assert RandSliced("image", axis=0)(sample)["image"].shape == (1, 5, 10)


def test_center_sliced_is_deterministic_and_rejects_mismatched_keys():
    vol = torch.arange(7, dtype=torch.float32).view(1, 1, 1, 7).repeat(1, 3, 3, 1)
    out = CenterSliced("image")({"image": vol})
    assert out["slice_index"] == 3 and torch.all(out["image"] == 3)
    with pytest.raises(ValueError, match="same number of slices"):
        CenterSliced(["image", "label"])({"image": vol, "label": vol[..., :5]})
    with pytest.raises(ValueError, match="shape"):
        CenterSliced("image")({"image": torch.rand(1, 2, 2, 2, 2)})


# --------------------------------------------------------------------------------------------------- listing


def test_mixed_clinical_folder_lists_files_series_and_patients(tmp_path):
    from PIL import Image

    write_series(tmp_path / "mr_series", [0.0, 5.0, 10.0], ["1.dcm", "2.dcm", "3.dcm"])
    (tmp_path / "mr_series" / "LICENSE.txt").write_text("not a slice")
    (tmp_path / "single").mkdir()
    (tmp_path / "single" / "ct.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    (tmp_path / "mixed").mkdir()  # two series in one folder: each file its own record
    for name in ("CT_small", "MR_small"):
        (tmp_path / "mixed" / f"{name}.dcm").write_bytes(Path(get_testdata_file(f"{name}.dcm")).read_bytes())
    phantom_volume(tmp_path / "vol.nii.gz")
    nib.save(nib.Nifti1Image(np.arange(192, dtype=np.float32).reshape(8, 8, 3), np.eye(4)), tmp_path / "plain.nii")
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "photo.png")
    (tmp_path / "notes.txt").write_text("not an image")

    layout, records = find_images(tmp_path)
    by_id = {r.id: r for r in records}
    assert layout == "folder"
    assert set(by_id) == {"mixed/CT_small", "mixed/MR_small", "mr_series", "photo", "plain", "single/ct", "vol"}
    assert by_id["mr_series"].image == "mr_series" and by_id["vol"].image == "vol.nii.gz"
    # DICOM PatientID groups: the MR series and the MR file of the mixed folder are one patient
    assert by_id["mr_series"].group == by_id["mixed/MR_small"].group == "4MR1"
    assert by_id["single/ct"].group == by_id["mixed/CT_small"].group == "1CT1"
    assert by_id["vol"].group == "vol.nii.gz"

    out = tmp_path / "run" / "datalist.json"
    prepare_datalist(tmp_path, out, val_fraction=0.2, test_fraction=0.2)
    splits = json.loads(out.read_text())
    where: dict[str, set[str]] = {}
    for k in ("training", "validation", "test"):
        for r in splits[k]:
            where.setdefault(r["group"], set()).add(k)
    assert sum(len(splits[k]) for k in ("training", "validation", "test")) == 7
    assert len(where) == 5 and all(len(v) == 1 for v in where.values())  # no patient spans two splits


def test_truncated_dicom_is_reported_by_name(tmp_path):
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    for i in range(4):
        phantom_volume(tmp_path / f"vol{i}.nii.gz", slices=2)
    (tmp_path / "broken.dcm").write_bytes(ct[: len(ct) - 5000])  # pixel data cut short
    write_series(tmp_path / "series", [0.0, 1.0, 2.0], ["1.dcm", "2.dcm", "3.dcm"])
    slice2 = (tmp_path / "series" / "2.dcm").read_bytes()
    (tmp_path / "series" / "2.dcm").write_bytes(slice2[: len(slice2) - 3000])
    out = tmp_path / "run" / "datalist.json"
    with pytest.raises(ValueError) as err:
        prepare_datalist(tmp_path, out)
    message = str(err.value)
    assert "2 unreadable" in message and "broken.dcm" in message and "series/2.dcm" in message
    assert not out.exists()
    prepare_datalist(tmp_path, out, skip_bad=True)
    listed = {r["id"] for k in ("training", "validation", "test") for r in json.loads(out.read_text())[k]}
    assert listed == {"vol0", "vol1", "vol2", "vol3"}


def test_clean_targets_denoise_ct_volumes_at_their_own_level_pass_mr_and_cache(tmp_path, monkeypatch):
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    from medical_denoise.data import CleanTargetsd

    clean = np.stack([resize(shepp_logan_phantom(), (96, 96)) * (1 + 0.1 * k) for k in range(3)], -1)[None]
    noisy = (clean + np.random.default_rng(0).normal(0, 0.03, clean.shape)).astype(np.float32)
    data = {"image": torch.as_tensor(noisy), "image_intensity": {"modality": "CT"}, "id": "ct"}
    t = CleanTargetsd("image", cache_dir=tmp_path)
    out = t(data)["image"]
    assert isinstance(out, torch.Tensor) and out.shape == noisy.shape
    rmse = lambda x: float(np.sqrt(np.mean((np.asarray(x) - clean) ** 2)))  # noqa: E731
    assert rmse(out) < 0.6 * rmse(noisy)  # the scan's own noise mostly gone
    # cached: a second run reads the file instead of filtering again
    assert len(list(tmp_path.glob("clean_target_*.npy"))) == 1
    monkeypatch.setattr(CleanTargetsd, "_slice", lambda self, plane: pytest.fail("filtered again"))
    np.testing.assert_array_equal(np.asarray(t(data)["image"]), np.asarray(out))
    mr = {**data, "image_intensity": {"modality": "MR"}}
    assert t(mr)["image"] is mr["image"]  # other modalities pass untouched
    with pytest.raises(ValueError, match=r"ct: expected a \(1, H, W"):
        t({**data, "image": noisy[0]})
    with pytest.raises(ValueError, match="strength"):
        CleanTargetsd("image", strength=0)


# --------------------------------------------------------------------------------------------------- bundle


def _bundle(*args: str, env: dict) -> None:
    cmd = [sys.executable, "-m", "monai.bundle", *args, "--bundle_root", str(BUNDLE)]
    proc = subprocess.run(cmd, cwd=BUNDLE, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def clinical_dataset(tmp_path_factory) -> Path:
    """4 NIfTI phantom volumes + 1 DICOM series: 5 groups, so every split gets at least one."""
    root = tmp_path_factory.mktemp("clinical") / "data"
    root.mkdir()
    for i in range(4):
        phantom_volume(root / f"phantom{i}.nii.gz", slices=4, scale=500.0 * (i + 1))
    write_series(root / "mr", [0.0, 4.0, 8.0], ["1.dcm", "2.dcm", "3.dcm"])
    return root


@pytest.mark.slow
def test_bundle_trains_the_2_5d_clinical_generator_on_nifti_and_dicom(clinical_dataset, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    out = tmp_path / "train"
    tiny = [
        "--clinical_network_def#channels", "[8,16]", "--clinical_network_def#strides", "[2]",
        "--clinical_network_def#num_res_units", "0", "--discriminator_def#channels", "8",
        "--discriminator_def#num_layers_d", "2", "--samples_per_image", "2", "--num_workers", "0",
        "--patch_size", "[32,32]", "--draws_per_epoch", "4", "--noise_cache_dir", str(tmp_path / "bank"),
    ]  # fmt: skip
    _bundle("run", "training", "--config_file", CLINICAL, *tiny, "--dataset_dir", str(clinical_dataset),
            "--output_dir", str(out), "--num_epochs", "2", "--val_interval", "1", "--image_interval", "1", env=env)  # fmt: skip
    assert {"model.pt", "checkpoint_epoch=2.pt"} <= {p.name for p in (out / "checkpoints").iterdir()}
    datalist = json.loads((out / "datalist.json").read_text())
    assert {r["id"] for k in ("training", "validation", "test") for r in datalist[k]} == {
        "mr", "phantom0", "phantom1", "phantom2", "phantom3"
    }  # fmt: skip
    state = torch.load(out / "checkpoints" / "model.pt", weights_only=True)
    state = state.get("generator", state)
    first = next(v for k, v in state.items() if k.endswith("weight") and v.ndim == 4)
    assert first.shape[1] == 4  # the slice, its two neighbours and the noise-level map
    assert list((out / "images").glob("combined_epoch_*.png"))


def test_ct_overlay_trains_on_cleaned_ct_and_mr_anatomy_under_additive_noise(tmp_path):
    """configs/clinical_ct.yaml (the CT model's stage 2): cleaned CT targets, kept scan noise, MR drawn as often as CT
    with Gaussian noise (no Rician floor), as docs/clinical_results.md states."""
    from monai.bundle import ConfigParser

    from medical_denoise.data import CleanTargetsd
    from medical_denoise.noise import AddClinicalNoised, AddScanNoised, ModalityNoise

    parser = ConfigParser()
    parser.read_config([BUNDLE / "configs" / n for n in ("train.yaml", "clinical.yaml", "clinical_ct.yaml")])
    parser.update({"bundle_root": str(BUNDLE), "noise_cache_dir": str(tmp_path)})
    transforms = {type(t): t for t in parser.get_parsed_content("train#preprocessing").transforms}
    assert transforms[AddClinicalNoised].families == {"MR": ModalityNoise.ADDITIVE}
    assert transforms[CleanTargetsd].modalities == {"CT"} and transforms[AddScanNoised].prob == 0.5
    assert parser.get_parsed_content("modality_shares") == {"CT": 1, "MR": 1}

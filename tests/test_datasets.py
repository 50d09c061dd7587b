from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from medical_denoise.data import (
    CheckMinSized,
    EnsureChannelsd,
    find_images,
    prepare_datalist,
    prepare_embedded_dataset,
    resolve_dataset_dir,
    split_grouped,
)


def _jpg(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(path)


def _write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")


def _ham10000(root, n_lesions=12, per_lesion=2):
    rows = []
    for lesion in range(n_lesions):
        for k in range(per_lesion):
            image_id = f"ISIC_{lesion:03d}{k}"
            part = "HAM10000_images_part_1" if lesion % 2 else "HAM10000_images_part_2"
            _jpg(root / part / f"{image_id}.jpg", lesion)
            rows.append((f"HAM_{lesion:04d}", image_id, ["nv", "mel", "bkl"][lesion % 3]))
    _write_csv(root / "HAM10000_metadata.csv", ["lesion_id", "image_id", "dx"], rows)
    return rows


def test_ham10000_layout_across_part_folders(tmp_path):
    rows = _ham10000(tmp_path)
    layout, records = find_images(tmp_path)
    assert layout == "ham10000" and len(records) == len(rows)
    by_id = {r.id: r for r in records}
    assert by_id["ISIC_0010"].group == "HAM_0001" and by_id["ISIC_0010"].dx == "mel"
    assert by_id["ISIC_0010"].image == "HAM10000_images_part_1/ISIC_0010.jpg"


def test_isic_challenge_layout_with_lesion_metadata(tmp_path):
    for i in range(4):
        _jpg(tmp_path / "ISIC_2019_Training_Input" / f"ISIC_{i:07d}.jpg", i)
    _write_csv(
        tmp_path / "ISIC_2019_Training_GroundTruth.csv",
        ["image", "MEL", "NV"],
        [(f"ISIC_{i:07d}", 1.0 if i < 2 else 0.0, 0.0 if i < 2 else 1.0) for i in range(4)],
    )
    _write_csv(
        tmp_path / "ISIC_2019_Training_Metadata.csv",
        ["image", "age_approx", "lesion_id"],
        [(f"ISIC_{i:07d}", 50, f"L{i // 2}") for i in range(4)],
    )
    layout, records = find_images(tmp_path)
    assert layout == "isic_challenge"
    assert [(r.group, r.dx) for r in records] == [("L0", "MEL"), ("L0", "MEL"), ("L1", "NV"), ("L1", "NV")]


def test_isic_cli_layout_groups_by_lesion_then_patient(tmp_path):
    for i in range(3):
        _jpg(tmp_path / f"ISIC_{i:07d}.jpg", i)
    _write_csv(
        tmp_path / "metadata.csv",
        ["isic_id", "lesion_id", "patient_id", "diagnosis_3"],
        [
            ("ISIC_0000000", "IL_1", "IP_1", "Nevus"),
            ("ISIC_0000001", "", "IP_1", "Nevus"),
            ("ISIC_0000002", "", "", "Melanoma"),
        ],
    )
    layout, records = find_images(tmp_path)
    assert layout == "isic_cli"
    assert [r.group for r in records] == ["IL_1", "IP_1", "ISIC_0000002"]
    assert records[2].dx == "Melanoma"


def test_plain_folder_layout(tmp_path):
    _jpg(tmp_path / "a.jpg")
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "sub" / "b.png")
    (tmp_path / "notes.txt").write_text("not an image")
    layout, records = find_images(tmp_path)
    assert layout == "folder" and [r.image for r in records] == ["a.jpg", "sub/b.png"]


def test_csv_naming_missing_images_fails_with_names(tmp_path):
    _ham10000(tmp_path, n_lesions=3)
    with open(tmp_path / "HAM10000_metadata.csv", "a") as f:
        f.write("HAM_9999,ISIC_MISSING,nv\n")
    with pytest.raises(FileNotFoundError, match="ISIC_MISSING"):
        find_images(tmp_path)
    _, records = find_images(tmp_path, skip_missing=True)
    assert len(records) == 6


@pytest.mark.parametrize("make", ["missing", "file", "empty"])
def test_bad_dataset_dirs(tmp_path, make):
    target = tmp_path / "data"
    if make == "file":
        target.write_text("x")
    elif make == "empty":
        target.mkdir()
    with pytest.raises((FileNotFoundError, NotADirectoryError, ValueError), match="data"):
        find_images(target)


def test_split_is_grouped_stratified_and_deterministic(tmp_path):
    _ham10000(tmp_path, n_lesions=30, per_lesion=3)
    _, records = find_images(tmp_path)
    splits = split_grouped(records, 0.1, 0.2, seed=3)
    groups = {k: {r.group for r in v} for k, v in splits.items()}
    assert not (
        groups["training"] & groups["validation"]
        or groups["training"] & groups["test"]
        or groups["validation"] & groups["test"]
    )
    assert sum(len(v) for v in splits.values()) == len(records)
    for dx in ("nv", "mel", "bkl"):  # every diagnosis is held out
        assert any(r.dx == dx for r in splits["test"])
    assert split_grouped(list(reversed(records)), 0.1, 0.2, seed=3) == splits
    assert split_grouped(records, 0.1, 0.2, seed=4) != splits


def test_prepare_datalist_writes_and_reuses(tmp_path):
    data = tmp_path / "data"
    _ham10000(data)
    out = tmp_path / "run" / "datalist.json"
    path = prepare_datalist(data, out, seed=0)
    content = json.loads(out.read_text())
    assert path == str(out) and content["layout"] == "ham10000"
    assert {r["image"] for r in content["training"]}.isdisjoint(r["image"] for r in content["test"])
    mtime = out.stat().st_mtime_ns
    prepare_datalist(data, out, seed=0)
    assert out.stat().st_mtime_ns == mtime  # same settings: the saved split is kept
    # a datalist shipped elsewhere names its folder relative to itself: still reused, not rewritten
    shipped = tmp_path / "docs" / "datalist.json"
    shipped.parent.mkdir()
    shipped.write_text(json.dumps({**content, "dataset_dir": "../data"}))
    before = shipped.read_text()
    assert prepare_datalist(data, shipped, seed=0) == str(shipped) and shipped.read_text() == before
    prepare_datalist(data, out, seed=1)
    assert json.loads(out.read_text())["seed"] == 1

    from monai.data import load_decathlon_datalist

    items = load_decathlon_datalist(path, False, "training", str(data))
    assert all((data / r["image"]).exists() for r in content["training"]) and items[0]["image"].startswith(str(data))


def test_embedded_dataset_is_real_and_split(tmp_path):
    root = prepare_embedded_dataset(tmp_path)
    assert resolve_dataset_dir(None) != str(root)  # default cache differs from the explicit one
    pngs = sorted(p.name for p in root.glob("*.png"))
    assert len(pngs) == 6 and "ct_small.png" in pngs
    assert np.asarray(Image.open(root / "retina.png")).shape == (512, 512, 3)
    content = json.loads(open(prepare_datalist(root, tmp_path / "dl.json")).read())
    assert content["validation"] and content["test"] and len(content["training"]) >= 3
    assert prepare_embedded_dataset(tmp_path) == root  # second call reuses


def test_an_image_smaller_than_the_crop_is_refused_by_name():
    check = CheckMinSized("image", min_size=(64, 64))
    assert check({"image": torch.rand(3, 64, 80), "id": "ok"})["image"].shape == (3, 64, 80)
    with pytest.raises(ValueError, match=r"^mr_small: image of 64 x 40 pixels is smaller than patch_size \[64, 64\]"):
        check({"image": torch.rand(1, 64, 40), "id": "mr_small"})


def test_ensure_channels():
    t = EnsureChannelsd("image", channels=3)
    assert t({"image": torch.rand(1, 8, 8)})["image"].shape == (3, 8, 8)
    assert t({"image": np.random.default_rng(0).random((4, 8, 8))})["image"].shape == (3, 8, 8)
    grey = EnsureChannelsd("image", channels=1)({"image": torch.ones(3, 4, 4)})["image"]
    assert grey.shape == (1, 4, 4) and torch.allclose(grey, torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="2 channels"):
        t({"image": torch.rand(2, 8, 8)})


def test_unreadable_images_are_all_listed_before_training(tmp_path):
    data = tmp_path / "data"
    _ham10000(data, n_lesions=12)
    (data / "HAM10000_images_part_1" / "ISIC_0010.jpg").write_bytes(b"")  # zero bytes
    good = (data / "HAM10000_images_part_2" / "ISIC_0000.jpg").read_bytes()
    (data / "HAM10000_images_part_2" / "ISIC_0001.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (data / "HAM10000_images_part_2" / "ISIC_0020.jpg").write_text("not a jpeg")
    Image.fromarray(np.full((12, 16, 3), 128, np.uint8)).save(data / "HAM10000_images_part_1" / "ISIC_0030.jpg")
    out = tmp_path / "run" / "datalist.json"
    with pytest.raises(ValueError) as err:
        prepare_datalist(data, out)
    for name in ("ISIC_0010.jpg", "ISIC_0001.jpg", "ISIC_0020.jpg", "ISIC_0030.jpg"):
        assert name in str(err.value)
    assert "4 unreadable or blank" in str(err.value) and "constant image" in str(err.value) and not out.exists()
    prepare_datalist(data, out, skip_bad=True)
    listed = [r["id"] for k in ("training", "validation", "test") for r in json.loads(out.read_text())[k]]
    assert len(listed) == 24 - 4 and "ISIC_0001" not in listed


def test_collate_shared_keys_batches_entries_whose_optional_keys_differ():
    from medical_denoise.data import collate_shared_keys

    a = {"image": torch.zeros(1, 4, 4), "id": "a", "dx": "nv", "meta": {"range": 1.0, "spacing": 0.5}}
    b = {"image": torch.ones(1, 4, 4), "id": "b", "meta": {"range": 2.0}}
    batch = collate_shared_keys([[a, a], b])  # crop samples come as lists
    assert set(batch) == {"image", "id", "meta"} and set(batch["meta"]) == {"range"}
    assert batch["image"].shape == (3, 1, 4, 4) and batch["id"] == ["a", "a", "b"]
    assert torch.equal(batch["meta"]["range"], torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))


def test_clinical_training_loader_mixes_photo_and_volume_entries_with_different_keys(tmp_path):
    """A curated datalist mixing a dermoscopy photo (with its "dx") and a NIfTI volume batches in the bundle's own
    training loader (PyTorch's default collate failed on the first entry without "dx")."""
    import nibabel as nib
    from monai.bundle import ConfigParser

    from tests.utils import BUNDLE

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    nib.save(nib.Nifti1Image(np.random.default_rng(1).random((48, 48, 3)).astype(np.float32), np.eye(4)),
             tmp_path / "v.nii.gz")  # fmt: skip
    entries = [{"image": "p.png", "id": "p", "modality": "photo", "dx": "nv"}, {"image": "v.nii.gz", "id": "v"}]
    (tmp_path / "list.json").write_text(
        json.dumps({"dataset_dir": ".", "training": entries, "validation": entries[1:]})
    )
    parser = ConfigParser()
    parser.read_config([BUNDLE / "configs" / n for n in ("train.yaml", "clinical.yaml")])
    parser.update({"bundle_root": str(BUNDLE), "noise_cache_dir": str(tmp_path / "bank"), "num_workers": 0,
                   "datalist_file": str(tmp_path / "list.json"), "output_dir": str(tmp_path / "run"),
                   "patch_size": [32, 32], "samples_per_image": 2, "train#sampler": None})  # fmt: skip
    batch = next(iter(parser.get_parsed_content("train#dataloader")))  # both entries (no weighted draws)
    assert batch["image"].shape[0] == 4 and batch["label"].shape[2:] == (32, 32)
    assert "dx" not in batch

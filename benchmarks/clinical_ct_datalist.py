"""Write the CT model's training list with more anatomy under additive noise (tried, not shipped).

The CT model (``configs/clinical_ct.yaml``) serves every grayscale input without a Rician floor, and more kinds of
structure helped it (the MR series under additive noise, docs/clinical_results.md). This list is
``docs/clinical_datalist.json`` (same validation and test patients) with two more training sources:

* ``clinical_dev/nifti/CT_pitch.nii.gz``, a head CT stored as 0-255 (not HU), as modality "OT": a windowed grayscale
  volume that gets additive noise in % of its range, never the HU noise;
* the grayscale luminance of the dermoscopy training images of ``docs/isic_datalist.json`` (its ``training`` split
  only: neither dermoscopy test set), as modality "photo".

Neither source shares a patient with the clinical test split.

    python benchmarks/clinical_ct_datalist.py --out /tmp/clinical_ct_datalist.json

The list's ``dataset_dir`` is the absolute shared data folder, so it may be written anywhere.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medical_denoise.data.splits import write_json_atomic

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinical", default=str(DOCS / "clinical_datalist.json"))
    parser.add_argument("--isic", default=str(DOCS / "isic_datalist.json"))
    parser.add_argument("--out", required=True, help="the datalist to write")
    args = parser.parse_args()
    clinical = json.loads(Path(args.clinical).read_text())
    isic = json.loads(Path(args.isic).read_text())
    if clinical["dataset_dir"] != isic["dataset_dir"]:
        raise SystemExit(f"{args.clinical} and {args.isic} name different dataset_dir values")
    head_ct = {
        "image": "clinical_dev/nifti/CT_pitch.nii.gz",
        "id": "CT_pitch",
        "group": "nifti_ct_pitch",
        "modality": "OT",
    }
    # the same keys as the clinical entries: the loader collates dicts key by key (a "dx" only some have fails)
    photos = [{"image": i["image"], "id": i["id"], "group": i["group"], "modality": "photo"} for i in isic["training"]]
    out = {
        "description": (
            "The CT model's training list (benchmarks/clinical_ct_datalist.py): docs/clinical_datalist.json's split "
            "(same validation and test patients) plus, for training only, clinical_dev's 0-255 head CT as 'OT' and "
            f"the {len(photos)} dermoscopy training images of docs/isic_datalist.json as grayscale 'photo' "
            "(both get additive noise). Paths are relative to dataset_dir."
        ),
        "dataset_dir": str((Path(args.clinical).parent / clinical["dataset_dir"]).resolve()),
        "training": [*clinical["training"], head_ct, *photos],
        **{k: v for k, v in clinical.items() if k not in ("description", "dataset_dir", "training")},
    }
    write_json_atomic(out, args.out)
    print(f"{args.out}: {len(out['training'])} training items ({len(photos)} photos)")


if __name__ == "__main__":
    main()

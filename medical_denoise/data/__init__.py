from __future__ import annotations

from .clinical import (
    CenterSliced,
    ClinicalSlabd,
    LoadClinicald,
    RandSliced,
    check_clinical_overlay,
    clinical_format,
    find_clinical_images,
)
from .collate import collate_shared_keys
from .embedded import prepare_embedded_dataset, resolve_dataset_dir
from .layouts import find_images
from .records import ImageRecord
from .sampling import balanced_weights, training_sampler
from .splits import datalist_root, prepare_datalist, split_grouped
from .targets import CleanTargetsd
from .transforms import CheckMinSized, EnsureChannelsd

__all__ = [
    "CleanTargetsd",
    "CenterSliced",
    "CheckMinSized",
    "ClinicalSlabd",
    "EnsureChannelsd",
    "ImageRecord",
    "LoadClinicald",
    "RandSliced",
    "balanced_weights",
    "training_sampler",
    "check_clinical_overlay",
    "collate_shared_keys",
    "clinical_format",
    "find_clinical_images",
    "datalist_root",
    "find_images",
    "prepare_datalist",
    "prepare_embedded_dataset",
    "resolve_dataset_dir",
    "split_grouped",
]

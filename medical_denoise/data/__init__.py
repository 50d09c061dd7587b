from __future__ import annotations

from .clinical import CenterSliced, LoadClinicald, RandSliced, clinical_format, find_clinical_images
from .embedded import prepare_embedded_dataset, resolve_dataset_dir
from .layouts import ImageRecord, find_images
from .splits import prepare_datalist, split_grouped
from .transforms import EnsureChannelsd

__all__ = [
    "CenterSliced",
    "EnsureChannelsd",
    "ImageRecord",
    "LoadClinicald",
    "RandSliced",
    "clinical_format",
    "find_clinical_images",
    "find_images",
    "prepare_datalist",
    "prepare_embedded_dataset",
    "resolve_dataset_dir",
    "split_grouped",
]

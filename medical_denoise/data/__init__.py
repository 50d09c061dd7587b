from __future__ import annotations

from .embedded import prepare_embedded_dataset, resolve_dataset_dir
from .layouts import ImageRecord, find_images
from .splits import prepare_datalist, split_grouped
from .transforms import EnsureChannelsd

__all__ = [
    "EnsureChannelsd",
    "ImageRecord",
    "find_images",
    "prepare_datalist",
    "prepare_embedded_dataset",
    "resolve_dataset_dir",
    "split_grouped",
]

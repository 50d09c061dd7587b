"""Batching datalist entries whose optional keys differ (e.g. a ``dx`` only dermoscopy entries carry)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monai.data import list_data_collate

__all__ = ["collate_shared_keys"]


def collate_shared_keys(batch: Sequence[Any]) -> Any:
    """``monai.data.list_data_collate`` over the keys every sample of the batch has.

    A curated datalist may mix sources whose entries carry different extra keys (metadata columns, a modality on
    some entries only); PyTorch's collate fails on the first key a sample lacks, deep in a loader worker. The
    pipeline's own keys (image, label, their intensity records) are in every sample, so they are batched as before;
    keys only some samples have are left out of the batch, level by level in nested dicts.

    Args:
        batch: the loader's samples: dicts, or lists of dicts (``RandSpatialCropSamplesd``).
    """
    samples = [s for item in batch for s in (item if isinstance(item, list) else [item])]
    if samples and all(isinstance(s, Mapping) for s in samples):
        samples = _shared(samples)
    return list_data_collate(samples)


def _shared(samples: list[Mapping]) -> list[dict]:
    keys = set.intersection(*(set(s) for s in samples))
    out: list[dict] = [{} for _ in samples]
    for key in keys:
        values = [s[key] for s in samples]
        if all(isinstance(v, Mapping) for v in values):
            values = _shared(values)
        for d, v in zip(out, values):
            d[key] = v
    return out

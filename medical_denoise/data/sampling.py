"""Which training items an epoch draws: every item once (shuffled), or weighted draws, on one rank or many.

Overlays set independent keys of train.yaml (``train#draw_weights`` and ``draws_per_epoch`` in clinical.yaml,
``distributed`` in multi_gpu_train.yaml) and :func:`training_sampler` builds the one sampler from them, so the
overlays compose in either order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler, WeightedRandomSampler

__all__ = ["balanced_weights", "training_sampler"]


def balanced_weights(
    items: Sequence[Mapping[str, Any]], key: str = "modality", shares: Mapping[str, float] | None = None
) -> list[float]:
    """Sampling weights that give every value of ``items[i][key]`` a set share of draws (e.g. CT and MR).

    Args:
        items: datalist entries.
        key: the entry key to balance (entries without it form one group).
        shares: relative share of draws per value (case-insensitive, e.g. ``{"CT": 3, "MR": 1}``); values not
            named get 1. None: every value equally often.
    """
    groups = [str(item.get(key, "")).upper() for item in items]
    counts = {g: groups.count(g) for g in set(groups)}
    share = {str(k).upper(): float(v) for k, v in (shares or {}).items()}
    if any(v < 0 for v in share.values()) or not any(share.get(g, 1.0) > 0 for g in counts):
        raise ValueError(f"modality shares must be >= 0 and not all 0, got {dict(shares or {})}")
    return [share.get(g, 1.0) / counts[g] for g in groups]


def training_sampler(
    dataset: Dataset,
    weights: Sequence[float] | None = None,
    num_samples: int | None = None,
    distributed: bool = False,
    num_replicas: int | None = None,
    rank: int | None = None,
) -> Sampler | None:
    """The training loader's sampler.

    Args:
        dataset: the training dataset.
        weights: per-item draw weights (e.g. :func:`balanced_weights`); None: uniform.
        num_samples: draws per epoch over all ranks (with replacement); None: every item once per epoch.
        distributed: one process per device (torch.distributed initialised): each rank gets its share of the
            epoch, the same number of batches on every rank. Weighted draws come from each rank's own random
            state (seeded per rank and epoch by ``EpochSeeder``); uniform epochs are sharded by MONAI's
            ``DistributedSampler``.
        num_replicas: number of ranks (default: the process group's world size).
        rank: this process's rank for uniform sharding (default: the process group's).

    Returns:
        None for a plain shuffled epoch on one process (the loader then shuffles), else the sampler.
    """
    if weights is None and num_samples is None:
        if not distributed:
            return None
        from monai.data import DistributedSampler

        return DistributedSampler(dataset, even_divisible=True, shuffle=True, num_replicas=num_replicas, rank=rank)
    weights = [1.0] * len(dataset) if weights is None else list(weights)
    if len(weights) != len(dataset):
        raise ValueError(f"{len(weights)} draw weights for {len(dataset)} training items")
    draws = len(dataset) if num_samples is None else int(num_samples)
    if distributed:
        replicas = num_replicas if num_replicas is not None else torch.distributed.get_world_size()
        draws = math.ceil(draws / replicas)
    return WeightedRandomSampler(weights, num_samples=draws, replacement=True)

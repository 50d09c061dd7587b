"""Deterministic, lesion-grouped train/validation/test splits written as a MONAI datalist."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from medical_denoise.atomic import atomic_write
from medical_denoise.data.layouts import ImageRecord, check_readable, find_images

logger = logging.getLogger(__name__)
SPLITS = ("training", "validation", "test")


def _n_held_out(n_groups: int, fraction: float) -> int:
    # small strata still give every held-out split one group, as long as training keeps the majority
    if fraction <= 0:
        return 0
    return max(1, round(n_groups * fraction)) if n_groups >= 3 else round(n_groups * fraction)


def split_grouped(
    records: list[ImageRecord], val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> dict[str, list[ImageRecord]]:
    """Split records so that no group (lesion / patient) appears in two splits.

    Groups are stratified by diagnosis (the ``dx`` of their first image), shuffled with ``seed`` and assigned
    test first, then validation; the rest trains. The result depends only on the records and arguments.

    Args:
        records: images with their group.
        val_fraction: fraction of groups per stratum for validation.
        test_fraction: fraction of groups per stratum for testing.
        seed: shuffling seed.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"need 0 <= val_fraction, test_fraction and a sum < 1, got {val_fraction}, {test_fraction}")
    groups: dict[str, list[ImageRecord]] = defaultdict(list)
    for r in records:
        groups[r.group].append(r)
    strata: dict[str, list[str]] = defaultdict(list)
    for g in sorted(groups):
        strata[groups[g][0].dx].append(g)

    rng = np.random.default_rng(seed)
    out: dict[str, list[ImageRecord]] = {k: [] for k in SPLITS}
    for dx in sorted(strata):
        names = list(strata[dx])
        rng.shuffle(names)
        n_test = _n_held_out(len(names), test_fraction)
        n_val = _n_held_out(len(names) - n_test, val_fraction) if len(names) - n_test >= 2 else 0
        for i, g in enumerate(names):
            split = "test" if i < n_test else "validation" if i < n_test + n_val else "training"
            out[split].extend(groups[g])
    for k in SPLITS:
        out[k].sort(key=lambda r: r.id)
    return out


def write_json_atomic(data: dict, path: str | Path) -> None:
    """Write JSON through a temporary file + rename, so an interrupted write leaves no broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: json.dump(data, f, indent=2))


def prepare_datalist(
    dataset_dir: str | Path,
    datalist_path: str | Path,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
) -> str:
    """Create (or reuse) the datalist JSON for ``dataset_dir`` and return its path.

    An existing datalist made from the same folder with the same fractions and seed is reused, so evaluation
    and resumed runs see exactly the split training saw; its ``dataset_dir`` may be relative to the current
    folder or to the datalist's own folder (so a datalist shipped with a repository stays valid). Paths inside
    are relative to ``dataset_dir``; load a split with ``monai.data.load_decathlon_datalist(path, data_list_key=..., base_dir=dataset_dir)``.

    Args:
        dataset_dir: dataset folder (any layout of :func:`find_images`).
        datalist_path: where the JSON goes.
        val_fraction: fraction of groups held out for validation.
        test_fraction: fraction of groups held out for testing.
        seed: split seed.
        skip_bad: skip (and report) images a CSV names but the folder lacks, and images that don't decode;
            by default every such image is listed in one error before training starts.
    """
    dataset_dir = Path(dataset_dir).resolve()
    datalist_path = Path(datalist_path)
    settings = {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed}
    if datalist_path.is_file():
        existing = json.loads(datalist_path.read_text())
        stored = Path(str(existing.get("dataset_dir", "")))
        same_dir = dataset_dir in (stored.resolve(), (datalist_path.parent / stored).resolve())
        if same_dir and all(existing.get(k) == v for k, v in settings.items()):
            logger.info("reusing datalist %s", datalist_path)
            return str(datalist_path)
        logger.warning("datalist %s was made for other data or settings; rebuilding it", datalist_path)
    layout, records = find_images(dataset_dir, skip_missing=skip_bad)
    records = check_readable(dataset_dir, records, skip_bad=skip_bad)
    splits = split_grouped(records, val_fraction, test_fraction, seed)
    for name in ("training", "validation"):
        if not splits[name]:
            raise ValueError(f"{dataset_dir}: {len(records)} image(s) leave the {name} split empty; add images")
    data = {
        "layout": layout,
        "dataset_dir": str(dataset_dir),
        **settings,
        **{k: [r.to_dict() for r in v] for k, v in splits.items()},
    }
    write_json_atomic(data, datalist_path)
    counts = ", ".join(f"{k}={len(v)}" for k, v in splits.items())
    logger.info("%s layout '%s': %s -> %s", dataset_dir, layout, counts, datalist_path)
    return str(datalist_path)


def datalist_root(datalist_path: str | Path, dataset_dir: str | Path | None = None) -> str:
    """The folder a curated datalist's paths are relative to.

    ``dataset_dir`` when given; otherwise the datalist's own ``dataset_dir`` entry, read relative to the datalist's
    folder (so a datalist shipped in a repository stays valid wherever the repository is cloned).

    Args:
        datalist_path: the datalist JSON.
        dataset_dir: overrides the stored folder.
    """
    path = Path(datalist_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: datalist not found.")
    if dataset_dir not in (None, "", "None", "null"):
        return str(Path(str(dataset_dir)).expanduser().resolve())
    stored = json.loads(path.read_text()).get("dataset_dir")
    if not stored:
        raise ValueError(f"{path}: no 'dataset_dir' entry; pass --dataset_dir.")
    root = (path.parent / stored).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{path}: its dataset_dir {root} does not exist; pass --dataset_dir.")
    return str(root)

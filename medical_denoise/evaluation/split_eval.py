"""Evaluate a trained generator on a held-out split of a bundle's datalist."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from monai.data import load_decathlon_datalist

from medical_denoise.evaluation.baselines import available_baselines
from medical_denoise.evaluation.report import ComparisonResult, run_comparison
from medical_denoise.evaluation.seeded_noise import SeededNoise

logger = logging.getLogger(__name__)


def load_split_images(
    datalist: str | Path, split: str, data_root: str | Path, load_transform: Callable, max_images: int | None = None
) -> list[tuple[str, np.ndarray]]:
    """``(id, clean)`` pairs of one datalist split, loaded by the bundle's own loading transforms."""
    items = load_decathlon_datalist(str(datalist), False, split, str(data_root))
    if not items:
        raise ValueError(f"{datalist}: the '{split}' split is empty")
    items = items[:max_images] if max_images else items
    return [(item["id"], np.asarray(load_transform(item)["image"], dtype=np.float32)) for item in items]


def evaluate_split(
    datalist: str | Path,
    data_root: str | Path,
    load_transform: Callable,
    gan: Callable[[np.ndarray], np.ndarray],
    out_dir: str | Path,
    split: str = "test",
    sigmas: Sequence[float] = (15, 25, 50),
    baselines: Sequence[str] = (),
    noise_kind: str = "gaussian",
    seed: int = 0,
    max_images: int | None = None,
) -> ComparisonResult:
    """Score the GAN (and optional classical baselines) on a held-out split; write the report to ``out_dir``.

    Args:
        datalist: the bundle's datalist JSON (the split training saw, so test images never trained).
        data_root: dataset folder the datalist paths are relative to.
        load_transform: the bundle's loading transforms (dict in, dict with a channel-first ``image`` out).
        gan: ``(C, H, W)`` numpy in [0, 1] -> denoised, e.g. ``GeneratorPredictor(...).numpy``.
        out_dir: report folder (CSV, markdown, plots, triplets).
        split: datalist key to evaluate, normally ``test``.
        sigmas: noise levels on the 0-255 scale.
        baselines: names from ``available_baselines()`` (``nlm``, ``tv``, ``wavelet``, ``bm3d``).
        noise_kind: noise model.
        seed: noise seed (with the image id and sigma it fixes every noisy image).
        max_images: evaluate only the first N images of the split.
    """
    known = available_baselines()
    unknown = [b for b in baselines if b not in known]
    if unknown:
        raise ValueError(f"unknown or unavailable baselines {unknown}; available: {sorted(known)}")
    images = load_split_images(datalist, split, data_root, load_transform, max_images)
    methods = {"gan": gan, **{b: known[b] for b in baselines}}
    logger.info("evaluating %d '%s' image(s) at sigma %s: %s", len(images), split, list(sigmas), list(methods))
    result = run_comparison(images, sigmas, methods, add_noise=SeededNoise(noise_kind, seed), out_dir=out_dir)
    logger.info("\n%s", result.to_markdown())
    return result

"""The clinical evaluation of a bundle's held-out split: the entry point of ``evaluate.yaml``'s clinical task."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from medical_denoise.evaluation.clinical.report import ClinicalReport, paired_differences, summarize, write_report
from medical_denoise.evaluation.clinical.runner import (
    MODEL,
    MODEL_TOLD,
    SliceMethod,
    baseline_methods,
    evaluate_items,
    model_method,
    split_items,
)

__all__ = ["evaluate_clinical_split"]

logger = logging.getLogger(__name__)


def evaluate_clinical_split(
    datalist: str | Path,
    data_root: str | Path,
    load_transform: Callable,
    predictor: Callable[[np.ndarray], np.ndarray],
    out_dir: str | Path,
    split: str = "test",
    context: int = 1,
    ct_sigma_hu: Sequence[float] = (10.0, 25.0, 50.0),
    ct_lowdose_i0: Sequence[float] = (1e6, 3e5),
    mr_sigma: Sequence[float] = (0.02, 0.05, 0.10),
    baselines: Sequence[str] = (),
    seed: int = 0,
    max_slices: int | None = 20,
    max_images: int | None = None,
    checkpoint: str | Path | None = None,
    confidence: float = 0.95,
    resamples: int = 2000,
    progress: bool = True,
    level_input: bool = False,
    ct_predictor: Callable[[np.ndarray], np.ndarray] | None = None,
    ct_checkpoint: str | Path | None = None,
    gaussian_sigma: Sequence[float] = (0.02, 0.05, 0.10),
) -> ClinicalReport:
    """Score a 2.5D predictor (and sigma-aware baselines) on the held-out volumes of a datalist; write the report.

    Args:
        datalist: datalist JSON (e.g. ``docs/clinical_datalist.json``: its ``test`` patients never trained).
        data_root: folder its paths are relative to.
        load_transform: the bundle's loading (``LoadClinicald(clip=False)``; dict in, ``image`` + ``image_intensity``
            out).
        predictor: ``(2k + 1, H, W) -> (1, H, W)`` in the network range, e.g. ``GeneratorPredictor.numpy``.
        out_dir: report folder.
        split: datalist key to evaluate.
        context: ``k`` neighbour slices on each side (the bundle's ``context_slices``).
        ct_sigma_hu: CT Gaussian noise stds in HU.
        ct_lowdose_i0: CT low-dose simulations, photons per ray.
        mr_sigma: Rician per-channel stds as fractions of the robust range (MR, and NIfTI of undetected modality).
        baselines: names among ``bm3d``, ``nlm``, ``tv``, ``wavelet``.
        seed: seed of the slice sample, the noise and the bootstrap.
        max_slices: a seeded random sample of this many slices per series; None: every slice.
        max_images: evaluate only the first N entries of the split.
        checkpoint: the weights the predictor holds (named in the report only).
        confidence: interval level.
        resamples: bootstrap replicates.
        progress: tqdm bars.
        level_input: the network takes a noise-level map (``DenoiseUNet(noise_level_input=True)``): it is also scored
            as ``model_sigma``, told the std the baselines get, next to the blind ``model``.
        ct_predictor: scores the volumes without a Rician floor (CT and every non-MR grayscale modality, as
            inference routes them) in place of ``predictor`` (the bundle's CT model); None: ``predictor`` scores
            every volume.
        ct_checkpoint: the weights ``ct_predictor`` holds (named in the report only).
        gaussian_sigma: Gaussian stds as fractions of the robust range for the other grayscale modalities (CR/DX,
            NM, ultrasound, ...).
    """
    if context < 0:
        raise ValueError(f"context must be >= 0 slices, got {context}.")
    max_slices = None if max_slices in (None, "None", "null") else int(max_slices)
    baseline = baseline_methods(list(baselines))

    def methods_of(model: Callable[[np.ndarray], np.ndarray]) -> dict[str, SliceMethod]:
        told = {MODEL_TOLD: model_method(model, told_level=True)} if level_input else {}
        return {MODEL: model_method(model), **told, **baseline}

    methods = methods_of(predictor)
    ct_methods = None if ct_predictor is None else methods_of(ct_predictor)
    items = split_items(datalist, split, data_root, max_images)
    logger.info("clinical evaluation of %d '%s' series, methods %s, %s slices per series", len(items), split,
                ["noisy", *methods], max_slices or "all")  # fmt: skip
    start = time.perf_counter()
    rows, samplings, examples = evaluate_items(
        items,
        load_transform,
        methods,
        context,
        ct_sigma_hu,
        ct_lowdose_i0,
        mr_sigma,
        seed,
        max_slices,
        progress,
        ct_methods,
        gaussian_sigma,
    )
    report = ClinicalReport(
        rows=rows,
        samplings=samplings,
        summary=summarize(rows, confidence, resamples, seed),
        paired=[p for m in methods if m not in baseline
                for p in paired_differences(rows, m, None, confidence, resamples, seed)],
        settings={
            "checkpoint": _named(checkpoint),
            "ct_checkpoint": _named(ct_checkpoint) if ct_predictor is not None else _named(checkpoint),
            "datalist": str(datalist),
            "split": split, "context": context, "seed": seed, "confidence": confidence, "resamples": resamples,
        },
    )  # fmt: skip
    write_report(report, examples, out_dir)
    logger.info("clinical evaluation done in %.0f s; report in %s\n%s", time.perf_counter() - start, out_dir,
                report.to_markdown())  # fmt: skip
    return report


def _named(checkpoint: str | Path | None) -> str:
    """How the report names a weights file."""
    return "n/a" if checkpoint is None else str(checkpoint)

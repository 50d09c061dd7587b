"""Clinical evaluation: a 2.5D denoiser against classical baselines on held-out CT/MR volumes, noise in physical units.

See docs/evaluation.md ("Clinical evaluation").
"""

from __future__ import annotations

from medical_denoise.evaluation.clinical.conditions import (
    BODY_MIN_HU,
    FOV_MIN_HU,
    NoiseCondition,
    NoiseKind,
    NoisyVolume,
    clinical_conditions,
)
from medical_denoise.evaluation.clinical.evaluate import evaluate_clinical_split
from medical_denoise.evaluation.clinical.report import (
    ClinicalReport,
    PairedRow,
    SummaryRow,
    display_window,
    paired_differences,
    summarize,
    write_report,
)
from medical_denoise.evaluation.clinical.runner import (
    BASELINES,
    ClinicalVolume,
    SeriesSampling,
    SliceResult,
    baseline_methods,
    choose_slices,
    evaluate_items,
    evaluate_volume,
    load_volume,
    model_method,
)

__all__ = [
    "BASELINES",
    "BODY_MIN_HU",
    "FOV_MIN_HU",
    "ClinicalReport",
    "ClinicalVolume",
    "NoiseCondition",
    "NoiseKind",
    "NoisyVolume",
    "PairedRow",
    "SeriesSampling",
    "SliceResult",
    "SummaryRow",
    "baseline_methods",
    "choose_slices",
    "clinical_conditions",
    "display_window",
    "evaluate_clinical_split",
    "evaluate_items",
    "evaluate_volume",
    "load_volume",
    "model_method",
    "paired_differences",
    "summarize",
    "write_report",
]

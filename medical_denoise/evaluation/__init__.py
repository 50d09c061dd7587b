"""Compare denoisers (the GAN and classical baselines) on identical seeded noisy images.

Photographs: :func:`run_comparison` / ``split_eval``; CT/MR volumes in physical units: :mod:`.clinical`.
"""

from __future__ import annotations

from medical_denoise.evaluation.baselines import (
    BM3DDenoiser,
    NLMeansDenoiser,
    TVDenoiser,
    WaveletDenoiser,
    available_baselines,
    bm3d_available,
    estimate_noise_sigma,
)
from medical_denoise.evaluation.metrics import (
    DATA_RANGE,
    ImageScores,
    bootstrap_ci,
    masked_psnr,
    masked_ssim,
    mean_ci,
    ms_ssim,
    psnr,
    score_image,
    ssim,
)
from medical_denoise.evaluation.report import (
    NOISY,
    ComparisonResult,
    ImageResult,
    SummaryRow,
    accepts_sigma,
    format_markdown,
    run_comparison,
    summarize,
)
from medical_denoise.evaluation.seeded_noise import SeededNoise

__all__ = [
    "DATA_RANGE",
    "NOISY",
    "BM3DDenoiser",
    "ComparisonResult",
    "ImageResult",
    "ImageScores",
    "NLMeansDenoiser",
    "SeededNoise",
    "SummaryRow",
    "TVDenoiser",
    "WaveletDenoiser",
    "accepts_sigma",
    "available_baselines",
    "bm3d_available",
    "bootstrap_ci",
    "estimate_noise_sigma",
    "format_markdown",
    "masked_psnr",
    "masked_ssim",
    "mean_ci",
    "ms_ssim",
    "psnr",
    "run_comparison",
    "score_image",
    "ssim",
    "summarize",
]

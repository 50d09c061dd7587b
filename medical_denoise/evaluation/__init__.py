"""Compare denoisers (the GAN and classical baselines) on identical seeded noisy images."""

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
from medical_denoise.evaluation.metrics import DATA_RANGE, ImageScores, mean_ci, ms_ssim, psnr, score_image, ssim
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

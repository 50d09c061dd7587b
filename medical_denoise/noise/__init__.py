"""Noise physics and image degradations as seeded MONAI dictionary transforms (see docs/noise_models.md)."""

from __future__ import annotations

from .clinical import AddClinicalNoised, AddScanNoised, CTNoiseBankd
from .ct_lowdose import LowDoseCTNoise
from .degradations import downsample, gaussian_blur, jpeg_compress
from .estimate import estimate_noise_level, wavelet_noise_std
from .modality import RICIAN_MODALITIES, ModalityNoise, is_ct, modality_noise
from .models import (
    NOISE_MODELS,
    GaussianNoise,
    NoiseModel,
    PoissonGaussianNoise,
    RicianNoise,
    SpeckleNoise,
    make_noise_model,
    rician_mean,
)
from .transforms import (
    AddNoised,
    AppendNoiseLevelMapd,
    Downsampled,
    GaussianBlurd,
    JpegCompressd,
    SeededDegradationd,
    stable_seed,
)

__all__ = [
    "NoiseModel",
    "GaussianNoise",
    "PoissonGaussianNoise",
    "RicianNoise",
    "SpeckleNoise",
    "NOISE_MODELS",
    "make_noise_model",
    "rician_mean",
    "estimate_noise_level",
    "wavelet_noise_std",
    "gaussian_blur",
    "downsample",
    "jpeg_compress",
    "SeededDegradationd",
    "AddNoised",
    "GaussianBlurd",
    "Downsampled",
    "JpegCompressd",
    "stable_seed",
    "LowDoseCTNoise",
    "CTNoiseBankd",
    "AddClinicalNoised",
    "AddScanNoised",
    "AppendNoiseLevelMapd",
    "RICIAN_MODALITIES",
    "ModalityNoise",
    "is_ct",
    "modality_noise",
]

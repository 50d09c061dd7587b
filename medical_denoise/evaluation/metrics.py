"""Per-image quality metrics and a t-distribution confidence interval.

All metrics compare a denoised image against the clean reference, both channel-first ``(C, H, W)`` with
values on a ``[0, 1]`` scale (``DATA_RANGE = 1.0``). Denoiser outputs are clipped to ``[0, 1]`` first
because that is the displayable range: a value outside it is shown as 0 or 1 anyway, so scoring the
clipped image measures what a reader sees (and does not reward or punish invisible overshoot).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import compute_ms_ssim
from scipy import stats
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = [
    "DATA_RANGE",
    "MS_SSIM_KERNEL_SIZE",
    "MS_SSIM_SCALES",
    "ImageScores",
    "check_image",
    "ms_ssim",
    "ms_ssim_min_size",
    "mean_ci",
    "psnr",
    "score_image",
    "ssim",
]

DATA_RANGE = 1.0
MS_SSIM_KERNEL_SIZE = 11
MS_SSIM_SCALES = 5
# skimage's default SSIM window; images smaller than this cannot be scored
SSIM_WIN_SIZE = 7


def check_image(image: np.ndarray, name: str = "image") -> None:
    """Raise ``ValueError`` unless ``image`` is a finite ``(C, H, W)`` array with C in {1, 3}.

    Args:
        image: the array to check.
        name: how the array is named in the error message.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(image).__name__}.")
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"{name}: expected shape (C, H, W) with C in (1, 3), got {image.shape}.")
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{name}: expected a float array, got dtype {image.dtype}.")
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{name}: contains NaN or infinite values.")


def _prepare(clean: np.ndarray, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    check_image(clean, "clean")
    check_image(output, "output")
    if clean.shape != output.shape:
        raise ValueError(f"shape mismatch: clean {clean.shape} vs output {output.shape}.")
    if min(clean.shape[1:]) < SSIM_WIN_SIZE:
        raise ValueError(f"image {clean.shape} is smaller than the SSIM window ({SSIM_WIN_SIZE} px).")
    return clean.astype(np.float64), np.clip(output, 0.0, DATA_RANGE).astype(np.float64)


def psnr(clean: np.ndarray, output: np.ndarray) -> float:
    """PSNR in dB of ``output`` (clipped to [0, 1]) against ``clean``, ``data_range=1.0``.

    Args:
        clean: reference image ``(C, H, W)`` in [0, 1].
        output: denoised image, same shape.
    """
    ref, out = _prepare(clean, output)
    return float(peak_signal_noise_ratio(ref, out, data_range=DATA_RANGE))


def ssim(clean: np.ndarray, output: np.ndarray) -> float:
    """SSIM (skimage defaults: 7x7 uniform window) of clipped ``output`` against ``clean``, mean over channels.

    Args:
        clean: reference image ``(C, H, W)`` in [0, 1].
        output: denoised image, same shape.
    """
    ref, out = _prepare(clean, output)
    if ref.shape[0] == 1:
        return float(structural_similarity(ref[0], out[0], data_range=DATA_RANGE))
    return float(structural_similarity(ref, out, data_range=DATA_RANGE, channel_axis=0))


def ms_ssim_min_size(kernel_size: int = MS_SSIM_KERNEL_SIZE, scales: int = MS_SSIM_SCALES) -> int:
    """Smallest side (pixels) for which MONAI's ``compute_ms_ssim`` accepts an image.

    Mirrors MONAI's own check ``side // (scales - 1) ** 2 > kernel_size - 1`` (176 px for the defaults).

    Args:
        kernel_size: Gaussian kernel size used at every scale.
        scales: number of scales (length of the weight vector).
    """
    div = max(1, scales - 1) ** 2
    return kernel_size * div


def ms_ssim(clean: np.ndarray, output: np.ndarray) -> float:
    """MS-SSIM (MONAI, 5 scales, 11x11 Gaussian, sigma 1.5), or NaN if the image is too small for 5 scales.

    Args:
        clean: reference image ``(C, H, W)`` in [0, 1].
        output: denoised image, same shape.
    """
    ref, out = _prepare(clean, output)
    if min(ref.shape[1:]) < ms_ssim_min_size():
        return math.nan
    with torch.no_grad():
        value = compute_ms_ssim(
            torch.from_numpy(out)[None],
            torch.from_numpy(ref)[None],
            spatial_dims=2,
            data_range=DATA_RANGE,
            kernel_size=MS_SSIM_KERNEL_SIZE,
        )
    return float(value.reshape(-1)[0])


@dataclass(frozen=True)
class ImageScores:
    """PSNR (dB), SSIM and MS-SSIM (NaN when not computable) of one image."""

    psnr: float
    ssim: float
    ms_ssim: float


def score_image(clean: np.ndarray, output: np.ndarray) -> ImageScores:
    """All three metrics of ``output`` against ``clean``.

    Args:
        clean: reference image ``(C, H, W)`` in [0, 1].
        output: denoised image, same shape (clipped to [0, 1] before scoring).
    """
    return ImageScores(psnr=psnr(clean, output), ssim=ssim(clean, output), ms_ssim=ms_ssim(clean, output))


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-distribution confidence interval of the mean.

    NaN values (e.g. MS-SSIM of small images) are dropped first. With fewer than two values the
    interval is undefined and returned as NaN.

    Args:
        values: per-image values.
        confidence: confidence level of the interval, in (0, 1).

    Returns:
        ``(mean, low, high)``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2.0, df=arr.size - 1) * stats.sem(arr))
    return mean, mean - half, mean + half

"""Per-image quality metrics and confidence intervals.

The photograph metrics (:func:`psnr`, :func:`ssim`, :func:`ms_ssim`) compare a denoised image against the clean
reference, both channel-first ``(C, H, W)`` with values on a ``[0, 1]`` scale (``DATA_RANGE = 1.0``). Denoiser
outputs are clipped to ``[0, 1]`` first because that is the displayable range: a value outside it is shown as 0 or 1
anyway, so scoring the clipped image measures what a reader sees (and does not reward or punish invisible overshoot).

The clinical metrics (:func:`masked_psnr`, :func:`masked_ssim`) never clip: a CT in the network range of its HU map
has real values outside ``[0, 1]`` (the -3024 HU padding, metal), and they take an explicit ``data_range`` and an
optional mask of the pixels to score. :func:`bootstrap_ci` gives percentile intervals that stay inside the range of
the observed values (unlike a t-interval from two values).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import SSIMMetric, compute_ms_ssim
from scipy import stats
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = [
    "DATA_RANGE",
    "MS_SSIM_KERNEL_SIZE",
    "MS_SSIM_SCALES",
    "ImageScores",
    "bootstrap_ci",
    "check_image",
    "masked_psnr",
    "masked_ssim",
    "mean_ci",
    "ms_ssim",
    "ms_ssim_min_size",
    "psnr",
    "score_image",
    "ssim",
    "ssim_metric",
]

DATA_RANGE = 1.0
MS_SSIM_KERNEL_SIZE = 11
MS_SSIM_SCALES = 5
# skimage's default SSIM window; images smaller than this cannot be scored
SSIM_WIN_SIZE = 7


def ssim_metric(spatial_dims: int = 2, data_range: float = DATA_RANGE) -> SSIMMetric:
    """MONAI's ``SSIMMetric`` set to the evaluation's SSIM (skimage's 7x7 uniform window, sample covariance).

    Validation (``train.yaml``'s ``val_ssim``) uses it, so the SSIM logged during training and the SSIM of the
    evaluation reports are one definition: on the same pair it equals :func:`ssim` / unmasked :func:`masked_ssim`.

    Args:
        spatial_dims: 2 or 3.
        data_range: the dynamic range of the images.
    """
    return SSIMMetric(spatial_dims=spatial_dims, data_range=data_range, kernel_type="uniform", win_size=SSIM_WIN_SIZE)


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


def _check_pair(
    clean: np.ndarray, output: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ref = np.asarray(clean, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if ref.ndim != 2 or ref.shape != out.shape:
        raise ValueError(f"expected two 2D images of one shape, got {ref.shape} and {out.shape}.")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(out))):
        raise ValueError("images contain NaN or infinite values.")
    keep = np.ones(ref.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if keep.shape != ref.shape:
        raise ValueError(f"mask shape {keep.shape} differs from the image shape {ref.shape}.")
    if not keep.any():
        raise ValueError("the mask selects no pixels.")
    return ref, out, keep


def masked_psnr(
    clean: np.ndarray, output: np.ndarray, data_range: float = DATA_RANGE, mask: np.ndarray | None = None
) -> float:
    """PSNR in dB, ``10 log10(data_range^2 / MSE)`` over the masked pixels, without clipping (inf when exact).

    Args:
        clean: reference 2D image.
        output: image to score, same shape.
        data_range: the peak (1.0 for an image in the network range of its intensity mapping).
        mask: pixels to score (default: all).
    """
    ref, out, keep = _check_pair(clean, output, mask)
    mse = float(np.mean((ref[keep] - out[keep]) ** 2))
    return math.inf if mse == 0.0 else float(10.0 * np.log10(data_range**2 / mse))


def masked_ssim(
    clean: np.ndarray, output: np.ndarray, data_range: float = DATA_RANGE, mask: np.ndarray | None = None
) -> float:
    """SSIM with skimage's defaults (7x7 uniform window), without clipping, averaged over the masked pixels.

    skimage's SSIM map is averaged over the pixels a full window fits around (a 3-pixel border is left out, as in
    ``structural_similarity`` itself) that are also in ``mask``; without a mask this equals skimage's value.

    Args:
        clean: reference 2D image.
        output: image to score, same shape.
        data_range: the dynamic range of the images (its constants are ``(0.01 data_range)^2``, ``(0.03 data_range)^2``).
        mask: pixels to average the SSIM map over (default: all).
    """
    ref, out, keep = _check_pair(clean, output, mask)
    if min(ref.shape) < SSIM_WIN_SIZE:
        raise ValueError(f"image {ref.shape} is smaller than the SSIM window ({SSIM_WIN_SIZE} px).")
    _, ssim_map = structural_similarity(ref, out, data_range=data_range, win_size=SSIM_WIN_SIZE, full=True)
    pad = (SSIM_WIN_SIZE - 1) // 2
    inner = np.zeros_like(keep)
    inner[pad : ref.shape[0] - pad, pad : ref.shape[1] - pad] = True
    keep = keep & inner
    if not keep.any():
        raise ValueError("the mask selects no pixel at least 3 pixels from the border.")
    return float(ssim_map[keep].mean())


def bootstrap_ci(
    groups: Sequence[Sequence[float]], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of all values and a percentile bootstrap interval, resampling values within each group.

    The statistic is the mean over all values pooled; each bootstrap replicate draws, for every group, as many
    values as it has, with replacement, from that group only (a stratified bootstrap: e.g. slices within each series,
    so every series keeps its weight). The interval lies inside the range of the observed values. It describes the
    spread of the values given (e.g. slice to slice), not of the groups themselves: with slices of one patient it says
    nothing about other patients. Fewer than 2 values, or a non-finite mean: no interval (NaN).

    Args:
        groups: values per group (e.g. per-slice PSNR of each series); one group for a plain bootstrap.
        confidence: level of the two-sided interval, in (0, 1).
        resamples: bootstrap replicates.
        seed: seed of the resampling (same seed and group sizes: the same draws, so methods scored on the same
            slices are resampled alike).

    Returns:
        ``(mean, low, high)``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}.")
    arrays = [np.asarray(g, dtype=np.float64).reshape(-1) for g in groups]
    arrays = [a for a in arrays if a.size]
    total = sum(a.size for a in arrays)
    if total == 0:
        return math.nan, math.nan, math.nan
    mean = float(np.concatenate(arrays).mean())
    if total < 2 or not math.isfinite(mean):  # e.g. an infinite PSNR (exact output): no meaningful interval
        return mean, math.nan, math.nan
    rng = np.random.default_rng(seed)
    sums = np.zeros(resamples)
    for a in arrays:
        sums += a[rng.integers(0, a.size, size=(resamples, a.size))].sum(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(sums / total, [alpha, 1.0 - alpha])
    return mean, float(low), float(high)

"""Noise level estimation on real (not synthetic) noisy images, for blind models."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from skimage.restoration import estimate_sigma

__all__ = ["estimate_noise_level", "wavelet_noise_std"]


def estimate_noise_level(image: np.ndarray) -> float:
    """Gaussian noise sigma of a channel-first image in [0, 1], on the 0-255 scale (wavelet MAD estimator).

    Volumes ``(C, H, W, D)`` are estimated on their middle slice; channels are averaged. An image with no fine
    detail at all (constant, e.g. a blank frame) has no noise to measure and gets 0, as in :func:`wavelet_noise_std`.

    Args:
        image: ``(C, H, W)`` or ``(C, H, W, D)`` float array.
    """
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 4:
        arr = arr[..., arr.shape[-1] // 2]
    if arr.ndim != 3:
        raise ValueError(f"expected a channel-first 2D image or volume, got shape {arr.shape}")
    # skimage's estimator wants channel-last colour or a plain 2D grey image; it leaves out zero coefficients, so a
    # constant image is the median of nothing (NaN and a numpy warning)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sigma = (
            estimate_sigma(arr[0], channel_axis=None)
            if arr.shape[0] == 1
            else estimate_sigma(np.moveaxis(arr, 0, -1), channel_axis=-1, average_sigmas=True)
        )
    return 0.0 if np.isnan(sigma) else float(sigma) * 255.0


def wavelet_noise_std(x: torch.Tensor) -> torch.Tensor:
    """Per-sample white-noise std of ``(N, C, ..., H, W)``, in the units of ``x`` (TorchScript-compatible).

    Donoho's estimator, as skimage's ``estimate_sigma``: the median absolute finest-scale diagonal Haar coefficient
    over 0.6745. Blocks of 2x2 equal pixels at the lowest or the highest level any such block has are left out: a
    scanner's padding outside the field of view, a zero-filled background, clipped air or saturation, which hold no
    noise to measure. Flat blocks at the levels between are counted (their 0 is a measurement): leaving every 0 out
    made a noise-free image with flat areas at many levels, such as a test pattern, look as noisy as its edges. A
    sample with no other block gets 0.

    Args:
        x: a batch; the last two dimensions are the image plane, all others are pooled per sample.
    """
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w].float()
    a, b, c, d = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    n = x.shape[0]
    coefficients = ((a - b - c + d) / 2.0).abs().reshape(n, -1)
    flat = ((a == b) & (a == c) & (a == d)).reshape(n, -1)
    corner = a.reshape(n, -1)
    inf = torch.full_like(corner, float("inf"))
    lowest = torch.where(flat, corner, inf).amin(dim=1, keepdim=True)
    highest = torch.where(flat, corner, -inf).amax(dim=1, keepdim=True)
    keep = ~flat | ((corner > lowest) & (corner < highest))
    # the lower median of the kept values, without a data-dependent shape (so torch.export / ONNX can trace it)
    ordered = torch.where(keep, coefficients, inf).sort(dim=1).values
    count = keep.sum(dim=1, keepdim=True)
    median = ordered.gather(1, ((count - 1).clamp(min=0) // 2)).squeeze(1)
    return torch.where(count.squeeze(1) > 0, median / 0.6745, torch.zeros_like(median)).to(x.dtype)

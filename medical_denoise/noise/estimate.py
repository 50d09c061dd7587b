"""Noise level estimation on real (not synthetic) noisy images, for blind models."""

from __future__ import annotations

import numpy as np
from skimage.restoration import estimate_sigma


def estimate_noise_level(image: np.ndarray) -> float:
    """Gaussian noise sigma of a channel-first image in [0, 1], on the 0-255 scale (wavelet MAD estimator).

    Volumes ``(C, H, W, D)`` are estimated on their middle slice; channels are averaged.

    Args:
        image: ``(C, H, W)`` or ``(C, H, W, D)`` float array.
    """
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 4:
        arr = arr[..., arr.shape[-1] // 2]
    if arr.ndim != 3:
        raise ValueError(f"expected a channel-first 2D image or volume, got shape {arr.shape}")
    # skimage's estimator wants channel-last colour or a plain 2D grey image
    sigma = (
        estimate_sigma(arr[0], channel_axis=None)
        if arr.shape[0] == 1
        else estimate_sigma(np.moveaxis(arr, 0, -1), channel_axis=-1, average_sigmas=True)
    )
    return float(sigma) * 255.0

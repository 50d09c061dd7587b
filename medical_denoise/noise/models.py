"""Noise physics for synthetic degradation of clean images scaled to [0, 1].

Every level is on the 0-255 scale (1.0 in the image ≙ 255), so ``level=25`` means a comparable amount of noise
for every model; see ``docs/noise_models.md`` for formulas and the modality each model fits.
Random numbers always come from a ``numpy.random.Generator`` (also for torch/CUDA inputs, the noise is drawn on the
host and moved), so a given seed gives bit-identical noise whatever the array type or device.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.utils import convert_data_type, convert_to_dst_type

__all__ = [
    "NoiseModel",
    "GaussianNoise",
    "PoissonGaussianNoise",
    "RicianNoise",
    "SpeckleNoise",
    "NOISE_MODELS",
    "make_noise_model",
    "rician_mean",
]

SCALE = 255.0  # intensity 1.0 of the [0, 1] images corresponds to 255 on the level scale


def _check_float(img: NdarrayOrTensor) -> None:
    is_float = img.is_floating_point() if isinstance(img, torch.Tensor) else np.issubdtype(img.dtype, np.floating)
    if not is_float:
        raise TypeError(
            f"noise models expect a floating-point image scaled to [0, 1], got dtype {img.dtype}; "
            "scale it first (e.g. monai.transforms.ScaleIntensityd)."
        )


def _like(noise: np.ndarray, img: NdarrayOrTensor) -> NdarrayOrTensor:
    """Noise drawn on the host, converted to the type/device/dtype of ``img`` (plain tensor, no metadata)."""
    if isinstance(img, torch.Tensor):
        return torch.as_tensor(noise, device=img.device).to(img.dtype)
    return noise.astype(img.dtype, copy=False)


class NoiseModel(ABC):
    """A noise physics: draws a level and corrupts a clean image in [0, 1].

    Args:
        level: noise level on the 0-255 scale, either fixed or a ``(low, high)`` range drawn uniformly per sample.
    """

    name: str = "noise"

    def __init__(self, level: float | Sequence[float]) -> None:
        if isinstance(level, (int, float, np.integer, np.floating)):
            low = high = float(level)
        elif isinstance(level, Sequence) and len(level) == 2:
            low, high = float(level[0]), float(level[1])
        else:
            raise ValueError(f"level must be a number or a (low, high) pair, got {level!r}.")
        if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low:
            raise ValueError(f"level must be finite with 0 <= low <= high, got {level!r}.")
        self.low, self.high = low, high

    @property
    def level_spec(self) -> str:
        """A stable text form of the configured level (used to derive per-image seeds)."""
        return f"{self.low!r}" if self.low == self.high else f"({self.low!r}, {self.high!r})"

    def sample_level(self, rng: np.random.Generator) -> float:
        """Return the fixed level, or draw one uniformly from the configured range."""
        if self.low == self.high:
            return self.low
        return float(rng.uniform(self.low, self.high))

    def __call__(self, clean: NdarrayOrTensor, rng: np.random.Generator) -> NdarrayOrTensor:
        """Draw a level and apply it (convenience for array-level use)."""
        return self.apply(clean, self.sample_level(rng), rng)

    @abstractmethod
    def apply(self, clean: NdarrayOrTensor, level: float, rng: np.random.Generator) -> NdarrayOrTensor:
        """Return a noisy copy of ``clean`` with the same type, dtype and device; ``clean`` is not modified.

        Args:
            clean: floating-point image in [0, 1] (any shape).
            level: noise level on the 0-255 scale.
            rng: source of randomness.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(level={self.level_spec})"


class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise: ``noisy = clean + N(0, (level/255)^2)``.

    Args:
        level: standard deviation on the 0-255 scale (fixed or ``(low, high)``).
    """

    name = "gaussian"

    def apply(self, clean: NdarrayOrTensor, level: float, rng: np.random.Generator) -> NdarrayOrTensor:
        _check_float(clean)
        noise = rng.standard_normal(tuple(clean.shape), dtype=np.float32)
        return clean + _like(noise, clean) * (level / SCALE)


class PoissonGaussianNoise(NoiseModel):
    """Signal-dependent photon (Poisson) noise plus Gaussian read noise, ``Var[noisy | x] = a * x + b``.

    ``noisy = a * Poisson(x / a) + N(0, b)`` with ``b = (read_sigma/255)^2`` and ``a`` chosen so that the total
    standard deviation at mid-grey (x = 0.5) equals ``level/255``: ``a = 2 * ((level/255)^2 - b)``.
    ``1/a`` is the photon count at x = 1. Negative intensities are treated as zero photons.
    Suited to low-dose CT / X-ray / fluorescence in the image domain.

    Args:
        level: Gaussian-equivalent total std at mid-grey on the 0-255 scale (fixed or ``(low, high)``).
        read_sigma: signal-independent read-noise std on the 0-255 scale; each drawn level must be >= it.
    """

    name = "poisson_gaussian"

    def __init__(self, level: float | Sequence[float], read_sigma: float = 0.0) -> None:
        super().__init__(level)
        if not math.isfinite(read_sigma) or read_sigma < 0 or read_sigma > self.low:
            raise ValueError(f"read_sigma must be in [0, lowest level={self.low}], got {read_sigma!r}.")
        self.read_sigma = float(read_sigma)

    @property
    def level_spec(self) -> str:
        return f"{super().level_spec};read={self.read_sigma!r}"

    def gain(self, level: float) -> tuple[float, float]:
        """Return ``(a, b)`` of ``Var = a * x + b`` in [0, 1] units for a level on the 0-255 scale."""
        b = (self.read_sigma / SCALE) ** 2
        return max(2.0 * ((level / SCALE) ** 2 - b), 0.0), b

    def apply(self, clean: NdarrayOrTensor, level: float, rng: np.random.Generator) -> NdarrayOrTensor:
        _check_float(clean)
        a, b = self.gain(level)
        x = convert_data_type(clean, np.ndarray, dtype=np.float64)[0]  # Poisson sampling needs host float64
        if a > 0:
            noisy = rng.poisson(np.maximum(x, 0.0) / a) * a
        else:
            noisy = x.copy()
        if b > 0:
            noisy += rng.standard_normal(x.shape, dtype=np.float32) * math.sqrt(b)
        return convert_to_dst_type(noisy, clean)[0]


class RicianNoise(NoiseModel):
    """Rician noise of MRI magnitude images: ``noisy = sqrt((x + s n1)^2 + (s n2)^2)``, n1, n2 ~ N(0, 1).

    ``s = level/255`` is the std of each complex channel as a fraction of the nominal maximum 1.0 (BrainWeb's
    "p% of the brightest tissue" is ``level = 2.55 * p``). The result is always >= 0 and biased upwards at low SNR,
    see :func:`rician_mean`.

    Args:
        level: per-channel std on the 0-255 scale (fixed or ``(low, high)``).
    """

    name = "rician"

    def apply(self, clean: NdarrayOrTensor, level: float, rng: np.random.Generator) -> NdarrayOrTensor:
        _check_float(clean)
        s = level / SCALE
        n1 = _like(rng.standard_normal(tuple(clean.shape), dtype=np.float32), clean)
        n2 = _like(rng.standard_normal(tuple(clean.shape), dtype=np.float32), clean)
        return ((clean + n1 * s) ** 2 + (n2 * s) ** 2) ** 0.5


class SpeckleNoise(NoiseModel):
    """Multiplicative speckle (ultrasound, OCT, SAR): ``noisy = x * (1 + n)`` with ``E[n] = 0``, ``Var[n] = s^2``.

    ``s = level/255``, i.e. the std at full intensity x = 1 on the 0-255 scale, so ``Var[noisy | x] = s^2 x^2``.
    ``distribution="gaussian"`` draws n ~ N(0, s^2); ``"gamma"`` draws ``1 + n ~ Gamma(L, 1/L)`` with
    ``L = 1/s^2`` looks (fully developed speckle of an L-look intensity image, always >= 0 for x >= 0).

    Args:
        level: relative std on the 0-255 scale (fixed or ``(low, high)``).
        distribution: ``"gaussian"`` or ``"gamma"``.
    """

    name = "speckle"

    def __init__(self, level: float | Sequence[float], distribution: str = "gaussian") -> None:
        super().__init__(level)
        if distribution not in ("gaussian", "gamma"):
            raise ValueError(f"distribution must be 'gaussian' or 'gamma', got {distribution!r}.")
        self.distribution = distribution

    @property
    def level_spec(self) -> str:
        return f"{super().level_spec};{self.distribution}"

    def apply(self, clean: NdarrayOrTensor, level: float, rng: np.random.Generator) -> NdarrayOrTensor:
        _check_float(clean)
        s = level / SCALE
        shape = tuple(clean.shape)
        if s == 0:
            mult = np.ones(shape, dtype=np.float32)
        elif self.distribution == "gamma":
            looks = 1.0 / s**2
            mult = rng.standard_gamma(looks, shape, dtype=np.float32) / np.float32(looks)
        else:
            mult = 1.0 + rng.standard_normal(shape, dtype=np.float32) * np.float32(s)
        return clean * _like(mult, clean)


NOISE_MODELS: dict[str, type[NoiseModel]] = {
    m.name: m for m in (GaussianNoise, PoissonGaussianNoise, RicianNoise, SpeckleNoise)
}


def make_noise_model(kind: str, level: float | Sequence[float], **kwargs) -> NoiseModel:
    """Build a noise model by name.

    Args:
        kind: one of ``"gaussian"``, ``"poisson_gaussian"``, ``"rician"``, ``"speckle"``.
        level: level on the 0-255 scale, fixed or ``(low, high)``.
        kwargs: extra model arguments (``read_sigma`` for poisson_gaussian, ``distribution`` for speckle).
    """
    try:
        cls = NOISE_MODELS[kind.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown noise kind {kind!r}; choose from {sorted(NOISE_MODELS)}.") from None
    return cls(level, **kwargs)


def rician_mean(nu: np.ndarray | float, sigma: float) -> np.ndarray:
    """Mean of a Rician variable with signal ``nu`` and per-channel std ``sigma`` (same units).

    ``E = sigma * sqrt(pi/2) * L_{1/2}(-nu^2 / (2 sigma^2))``, written with exponentially scaled Bessel functions
    so that it stays finite at high SNR.
    """
    from scipy.special import i0e, i1e

    nu = np.asarray(nu, dtype=np.float64)
    if sigma <= 0:
        return np.abs(nu)
    t = nu**2 / (4.0 * sigma**2)  # L_{1/2}(-2t) = e^{-t}[(1 + 2t) I0(t) + 2t I1(t)]
    return sigma * math.sqrt(math.pi / 2) * ((1 + 2 * t) * i0e(t) + 2 * t * i1e(t))

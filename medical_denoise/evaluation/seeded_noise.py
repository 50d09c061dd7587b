"""Default, reproducible additive Gaussian noise for standalone comparisons."""

from __future__ import annotations

import hashlib

import numpy as np

from medical_denoise.evaluation.metrics import check_image

__all__ = ["SeededGaussianNoise", "stable_seed"]


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from a SHA-256 of ``parts`` (stable across runs and processes, unlike ``hash``).

    Args:
        parts: values joined by their ``repr`` (floats are normalised so 25 and 25.0 agree).
    """
    normalised = (float(p) if isinstance(p, (int, float)) and not isinstance(p, bool) else p for p in parts)
    text = "|".join(repr(p) for p in normalised)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


class SeededGaussianNoise:
    """Add white Gaussian noise of std ``sigma / 255`` seeded by ``(seed, image_id, sigma)``.

    The same ``(seed, image_id, sigma)`` always yields the same noisy array, so every method is
    scored on identical inputs and a rerun reproduces them. No clipping by default: clipping changes
    the noise distribution (biased, no longer Gaussian near 0 and 1).

    Args:
        seed: global seed of the experiment.
        clip: clip the noisy image to [0, 1] (off by default).
    """

    def __init__(self, seed: int = 0, clip: bool = False) -> None:
        self.seed = int(seed)
        self.clip = clip

    def __call__(self, clean: np.ndarray, sigma: float, image_id: str) -> np.ndarray:
        """Return ``clean`` plus noise, float32, same shape.

        Args:
            clean: clean image ``(C, H, W)`` in [0, 1].
            sigma: noise standard deviation on the 0-255 scale.
            image_id: identifier of the image, part of the seed.
        """
        check_image(clean, f"clean image {image_id!r}")
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}.")
        rng = np.random.default_rng(stable_seed(self.seed, str(image_id), float(sigma)))
        noisy = clean.astype(np.float64) + rng.normal(0.0, sigma / 255.0, size=clean.shape)
        if self.clip:
            noisy = np.clip(noisy, 0.0, 1.0)
        return noisy.astype(np.float32)

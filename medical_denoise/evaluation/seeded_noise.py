"""Reproducible noise for comparisons: the noise transforms of ``medical_denoise.noise``, seeded per image."""

from __future__ import annotations

import numpy as np

from medical_denoise.evaluation.metrics import check_image
from medical_denoise.noise import AddNoised

__all__ = ["SeededNoise"]


class SeededNoise:
    """``(clean, sigma, image_id) -> noisy``: the same noisy array for an image in every run and for every method.

    It is the bundle's own ``AddNoised`` in ``seed_key`` mode, so an image evaluated here gets exactly the noise
    the bundle's validation gives it. No clipping by default: clipping biases the noise near 0 and 1.

    Args:
        noise_kind: noise model (``gaussian``, ``poisson_gaussian``, ``rician``, ``speckle``).
        seed: experiment seed; with the image id and the level it fixes the noise.
        clip: clip the noisy image to [0, 1].
    """

    def __init__(self, noise_kind: str = "gaussian", seed: int = 0, clip: bool = False) -> None:
        self.noise_kind = noise_kind
        self.seed = int(seed)
        self.clip = clip

    def __call__(self, clean: np.ndarray, sigma: float, image_id: str) -> np.ndarray:
        """Return ``clean`` plus noise of level ``sigma`` (0-255 scale), float32, same shape."""
        check_image(clean, f"clean image {image_id!r}")
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}.")
        add = AddNoised("image", noise=self.noise_kind, level=float(sigma), target_key=None, clip=self.clip,
                        seed_key="id", seed=self.seed)  # fmt: skip
        return np.asarray(add({"image": clean, "id": str(image_id)})["image"], dtype=np.float32)

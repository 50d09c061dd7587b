"""Low-dose CT simulation in the projection domain (scikit-image's parallel-beam ``radon``/``iradon``).

A slice in HU is turned into linear attenuation, forward-projected, and the line integrals ``p`` are turned into
detected photon counts ``I0 exp(-p)``. Poisson noise on the counts plus electronic Gaussian noise gives noisy line
integrals ``p'``, and the noise image is the filtered back-projection of ``p' - p``. FBP is linear, so this is the
difference between the low-dose and the full-dose reconstruction: streaky, spatially correlated noise whose strength
follows the attenuation along each ray (strong behind bone and across wide bodies), as on a real low-dose scan. The
clean slice itself is not re-reconstructed, so the simulation adds noise and no FBP blur.

Halving ``I0`` multiplies the noise std by about sqrt(2). Typical values: ``I0 = 1e5`` photons per ray is a
routine dose for this geometry, ``1e4`` a strongly reduced one (see docs/noise_models.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MU_WATER_PER_MM", "LowDoseCTNoise"]

#: linear attenuation of water at about 70 keV (effective energy of a 120 kVp beam), per mm.
MU_WATER_PER_MM = 0.0192


@dataclass(frozen=True)
class LowDoseCTNoise:
    """Projection-domain low-dose noise for one CT slice in HU.

    Args:
        i0: incident photons per detector ray (the dose).
        electronic_sigma: std of the electronic (read-out) noise in photon counts.
        n_angles: projection angles over 180 degrees.
        filter_name: FBP filter (``iradon``'s ``filter_name``); ``shepp-logan`` is close to a standard soft-tissue
            kernel, ``ramp`` gives sharper, noisier texture.
    """

    i0: float = 1e5
    electronic_sigma: float = 5.0
    n_angles: int = 360
    filter_name: str = "shepp-logan"

    def __post_init__(self) -> None:
        if not self.i0 > 0 or self.electronic_sigma < 0 or self.n_angles < 8:
            raise ValueError(f"LowDoseCTNoise needs i0 > 0, electronic_sigma >= 0, n_angles >= 8, got {self}.")

    def noise(self, hu: np.ndarray, pixel_spacing_mm: float, rng: np.random.Generator) -> np.ndarray:
        """The noise image in HU for one ``(H, W)`` slice (add it to ``hu``).

        Args:
            hu: the slice in Hounsfield units (values below -1000, such as the -3024 padding outside the
                reconstruction circle, count as air).
            pixel_spacing_mm: in-plane pixel size, which sets the path length of each ray.
            rng: source of the Poisson and electronic noise.
        """
        from skimage.transform import iradon, radon

        hu = np.asarray(hu, dtype=np.float64)
        if hu.ndim != 2:
            raise ValueError(f"LowDoseCTNoise works on one 2D slice, got shape {hu.shape}.")
        if not pixel_spacing_mm > 0:
            raise ValueError(f"pixel spacing must be > 0 mm, got {pixel_spacing_mm}.")
        size = max(hu.shape)
        square = np.full((size, size), -1000.0)  # radon wants a square image
        square[: hu.shape[0], : hu.shape[1]] = hu
        mu = np.clip(MU_WATER_PER_MM * (1.0 + square / 1000.0), 0.0, None) * pixel_spacing_mm  # per pixel
        yy, xx = np.ogrid[:size, :size]
        mu[(yy - size // 2) ** 2 + (xx - size // 2) ** 2 > (size // 2) ** 2] = 0.0  # the scan sees this circle only
        theta = np.linspace(0.0, 180.0, self.n_angles, endpoint=False)
        line_integrals = radon(mu, theta=theta, circle=True)
        expected = self.i0 * np.exp(-line_integrals)
        counts = rng.poisson(expected) + rng.normal(0.0, self.electronic_sigma, expected.shape)
        noisy_integrals = -np.log(np.clip(counts, 1.0, None) / self.i0)  # photon starvation: at least one count
        delta_mu = iradon(noisy_integrals - line_integrals, theta=theta, circle=True, filter_name=self.filter_name)
        delta_hu = delta_mu / (pixel_spacing_mm * MU_WATER_PER_MM) * 1000.0
        return delta_hu[: hu.shape[0], : hu.shape[1]].astype(np.float32)

    def __call__(self, hu: np.ndarray, pixel_spacing_mm: float, rng: np.random.Generator) -> np.ndarray:
        """The noisy slice in HU."""
        return (np.asarray(hu, dtype=np.float32) + self.noise(hu, pixel_spacing_mm, rng)).astype(np.float32)

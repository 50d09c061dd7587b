"""Seeded noise conditions of the clinical evaluation, with levels in the image's physical units.

* CT, Gaussian: white noise with a std in HU, added inside the scanner's field of view (pixels of the clean slice
  above :data:`FOV_MIN_HU`); the padding outside the reconstruction circle (-3024 HU on many scanners) stays exact,
  as on a real scan.
* CT, low dose: :class:`~medical_denoise.noise.LowDoseCTNoise` at a dose ``I0`` (photons per ray): projection-domain
  Poisson + electronic noise, reconstructed by FBP (streaky, correlated, strongest behind bone). Its std is measured
  in the body (clean HU above :data:`BODY_MIN_HU`) on every slice.
* MR (:data:`~medical_denoise.noise.RICIAN_MODALITIES`): Rician noise, the magnitude of the image plus complex
  Gaussian noise whose per-channel std is a fraction of the volume's robust range (the span of its percentile
  mapping): the convention of :class:`~medical_denoise.noise.AddClinicalNoised`.
* Every other grayscale modality (CR/DX, NM/PET, ultrasound, ...): Gaussian noise with a std that is such a
  fraction, no Rician floor. The family follows :func:`~medical_denoise.noise.modality_noise`, the rule inference
  routes by, so a series is scored under the noise of the model that would denoise it.

Images are in the network range of their :class:`~medical_denoise.io.IntensityMapping` (``(x - low) / (high - low)``,
not clipped), so ``s`` original units are ``s / (high - low)`` there. The noise of slice ``z`` depends only on
``(seed, image id, z, condition)``: every method, every run and every slab that holds slice ``z`` (as its centre or as
a neighbour) sees the same noisy slice, and neighbouring slices get independent noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from monai.utils import StrEnum

from medical_denoise.noise import LowDoseCTNoise, ModalityNoise, modality_noise, stable_seed

__all__ = [
    "BODY_MIN_HU",
    "FOV_MIN_HU",
    "NoiseCondition",
    "NoiseKind",
    "NoisyVolume",
    "clinical_conditions",
]

#: CT pixels below this are the scanner's padding outside the reconstruction circle (-3024, -2048 or -2000 HU), not
#: anatomy (air is -1000 HU): no noise is added there and they are not scored.
FOV_MIN_HU = -1500.0
#: CT body for measuring low-dose noise: soft tissue, fat and bone; air and lung (below -500 HU) left out.
BODY_MIN_HU = -500.0


class NoiseKind(StrEnum):
    """Noise models of the clinical evaluation."""

    GAUSSIAN_HU = "gaussian_hu"
    LOWDOSE = "ct_lowdose"
    RICIAN = "rician"
    GAUSSIAN_RANGE = "gaussian_range"

    @property
    def of_range(self) -> bool:
        """Whether the level is a fraction of the robust range (else HU or a dose)."""
        return self in (NoiseKind.RICIAN, NoiseKind.GAUSSIAN_RANGE)


@dataclass(frozen=True)
class NoiseCondition:
    """One noise condition: a model and its level.

    Args:
        kind: the noise model.
        level: ``GAUSSIAN_HU``: std in HU; ``LOWDOSE``: ``I0`` in photons per ray; ``RICIAN``: per-channel std as a
            fraction of the robust range; ``GAUSSIAN_RANGE``: std as a fraction of the robust range.
    """

    kind: NoiseKind
    level: float
    _lowdose: LowDoseCTNoise | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", NoiseKind(self.kind))
        if not (math.isfinite(self.level) and self.level > 0):
            raise ValueError(f"noise level must be finite and > 0, got {self.level} for {self.kind}.")
        if self.kind == NoiseKind.LOWDOSE:
            object.__setattr__(self, "_lowdose", LowDoseCTNoise(i0=float(self.level)))

    @property
    def name(self) -> str:
        """Short id used in files and seeds, e.g. ``ct_gaussian_25hu``, ``ct_lowdose_i0_3e+05``, ``mr_rician_5pct``,
        ``gaussian_5pct``."""
        if self.kind == NoiseKind.GAUSSIAN_HU:
            return f"ct_gaussian_{self.level:g}hu"
        if self.kind == NoiseKind.LOWDOSE:
            return f"ct_lowdose_i0_{self.level:.0e}"
        if self.kind == NoiseKind.GAUSSIAN_RANGE:
            return f"gaussian_{self.level * 100:g}pct"
        return f"mr_rician_{self.level * 100:g}pct"

    @property
    def label(self) -> str:
        """Human-readable level, e.g. ``Gaussian 25 HU``, ``low dose I0=3e+05``, ``Rician 5% of range``."""
        if self.kind == NoiseKind.GAUSSIAN_HU:
            return f"Gaussian {self.level:g} HU"
        if self.kind == NoiseKind.LOWDOSE:
            return f"low dose I0={self.level:.0e}"
        if self.kind == NoiseKind.GAUSSIAN_RANGE:
            return f"Gaussian {self.level * 100:g}% of range"
        return f"Rician {self.level * 100:g}% of range"

    def degrade(self, clean: np.ndarray, info: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        """The noisy version of one clean 2D slice in the network range.

        Args:
            clean: ``(H, W)`` slice in the network range of ``info``'s mapping.
            info: the intensity mapping of the volume (``low``, ``high``; ``pixel_spacing`` in mm for low dose).
            rng: source of the noise.
        """
        clean = np.asarray(clean, dtype=np.float32)
        low, span = float(info["low"]), float(info["high"]) - float(info["low"])
        if self.kind == NoiseKind.RICIAN:
            offset = low / span  # Rician acts on the magnitude in original units (here rescaled by the span)
            n1, n2 = (rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(self.level) for _ in range(2))
            return (np.sqrt((clean + offset + n1) ** 2 + n2**2) - offset).astype(np.float32)
        if self.kind == NoiseKind.GAUSSIAN_RANGE:
            return clean + rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(self.level)
        hu = clean * span + low
        fov = hu > FOV_MIN_HU
        if self.kind == NoiseKind.GAUSSIAN_HU:
            noise = rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(self.level / span)
        else:
            noise = self._lowdose.noise(hu, float(info.get("pixel_spacing", 1.0)), rng) / np.float32(span)
        return (clean + np.where(fov, noise, 0.0)).astype(np.float32)

    def score_mask(self, clean: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        """Pixels that are scored: the field of view of a CT slice, every pixel otherwise."""
        if self.kind.of_range:
            return np.ones(np.shape(clean), dtype=bool)
        return np.asarray(clean) * (float(info["high"]) - float(info["low"])) + float(info["low"]) > FOV_MIN_HU

    def std_mask(self, clean: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        """Pixels the noise std is measured on.

        Gaussian: the scored pixels (CT: the field of view; in % of the range: every pixel). Low dose: the body (the
        noise varies across the slice; this is where it matters), or the field of view when a slice holds no body.
        Rician: pixels whose clean value is at least 3 sigma, where the Rician distribution is close to Gaussian (the
        dark background is biased, not zero-mean).
        """
        clean = np.asarray(clean)
        if self.kind == NoiseKind.RICIAN:
            magnitude = clean + float(info["low"]) / (float(info["high"]) - float(info["low"]))
            return magnitude >= 3.0 * self.level
        fov = self.score_mask(clean, info)
        if self.kind == NoiseKind.LOWDOSE:
            body = clean * (float(info["high"]) - float(info["low"])) + float(info["low"]) > BODY_MIN_HU
            return body if body.any() else fov
        return fov


def clinical_conditions(
    modality: str,
    ct_sigma_hu: Sequence[float] = (10.0, 25.0, 50.0),
    ct_lowdose_i0: Sequence[float] = (1e6, 3e5),
    mr_sigma: Sequence[float] = (0.02, 0.05, 0.10),
    gaussian_sigma: Sequence[float] = (0.02, 0.05, 0.10),
) -> list[NoiseCondition]:
    """The conditions for one modality, by its noise family (:func:`~medical_denoise.noise.modality_noise`): Gaussian
    HU + low dose for CT, Rician for MR, Gaussian in % of the range for every other grayscale modality.

    Args:
        modality: the image's modality (``"CT"``, ``"MR"``, ``"DX"``, ...).
        ct_sigma_hu: CT Gaussian stds in HU.
        ct_lowdose_i0: CT low-dose simulations, photons per ray (noise std grows as ``1/sqrt(I0)``).
        mr_sigma: Rician per-channel stds, fractions of the robust range.
        gaussian_sigma: stds for the other modalities, fractions of the robust range.
    """
    family = modality_noise(modality)
    if family is ModalityNoise.CT:
        return [NoiseCondition(NoiseKind.GAUSSIAN_HU, float(s)) for s in ct_sigma_hu] + [
            NoiseCondition(NoiseKind.LOWDOSE, float(i)) for i in ct_lowdose_i0
        ]
    if family is ModalityNoise.RICIAN:
        return [NoiseCondition(NoiseKind.RICIAN, float(s)) for s in mr_sigma]
    return [NoiseCondition(NoiseKind.GAUSSIAN_RANGE, float(s)) for s in gaussian_sigma]


class NoisyVolume:
    """One volume under one condition, made noisy slice by slice on demand (each slice computed once).

    Args:
        clean: ``(H, W, D)`` volume in the network range (slices last).
        info: its intensity mapping (``low``, ``high``, optionally ``pixel_spacing``).
        condition: the noise condition.
        seed: evaluation seed.
        image_id: the volume's id (part of every slice's seed).
    """

    def __init__(
        self, clean: np.ndarray, info: Mapping[str, Any], condition: NoiseCondition, seed: int, image_id: str
    ) -> None:
        if clean.ndim != 3:
            raise ValueError(f"{image_id}: expected a (H, W, D) volume, got shape {clean.shape}.")
        self.clean = clean
        self.info = info
        self.condition = condition
        self.seed = int(seed)
        self.image_id = str(image_id)
        self.span = float(info["high"]) - float(info["low"])
        self._slices: dict[int, np.ndarray] = {}

    @property
    def depth(self) -> int:
        return int(self.clean.shape[-1])

    def slice(self, z: int) -> np.ndarray:
        """The noisy slice ``z`` ``(H, W)`` float32: a function of (seed, image id, z, condition) only."""
        if not 0 <= z < self.depth:
            raise IndexError(f"{self.image_id}: slice {z} outside [0, {self.depth - 1}].")
        if z not in self._slices:
            rng = np.random.default_rng(stable_seed("clinical_eval", self.seed, self.image_id, z, self.condition.name))
            self._slices[z] = self.condition.degrade(self.clean[..., z], self.info, rng)
        return self._slices[z]

    def slab(self, z: int, context: int) -> np.ndarray:
        """Noisy slices ``z - k .. z + k`` clamped to the volume (edge slices repeat), ``(2k + 1, H, W)``."""
        indices = [min(max(z + o, 0), self.depth - 1) for o in range(-context, context + 1)]
        return np.stack([self.slice(i) for i in indices])

    def noise_std(self, z: int) -> float:
        """Measured std of (noisy - clean) on slice ``z`` in network units (see ``std_mask``), NaN on an empty mask."""
        clean = self.clean[..., z]
        mask = self.condition.std_mask(clean, self.info)
        if not mask.any():
            return math.nan
        return float(np.std((self.slice(z) - clean)[mask], dtype=np.float64))

"""Which noise a grayscale modality carries: the one rule training noise, evaluation conditions and inference routing
share, so a series is trained, scored and denoised under the same physics.

* CT: noise in HU (Gaussian, or the projection-domain low-dose simulation).
* Rician (:data:`RICIAN_MODALITIES`): magnitude MR, whose dark background carries a positive noise floor.
* Additive: every other grayscale modality (CR/DX, NM/PET, ultrasound, grayscale photos): zero-mean noise with no
  floor, at a fraction of the image's robust range.
"""

from __future__ import annotations

from monai.utils import StrEnum

__all__ = ["RICIAN_MODALITIES", "ModalityNoise", "is_ct", "modality_noise"]

#: grayscale modalities whose noise has a Rician floor (magnitude MR). "UNKNOWN" is a NIfTI whose modality was not
#: detected: in practice MR, and percentile-mapped like it.
RICIAN_MODALITIES = frozenset({"MR", "UNKNOWN"})


class ModalityNoise(StrEnum):
    """The noise family of a grayscale modality."""

    CT = "ct"
    RICIAN = "rician"
    ADDITIVE = "additive"


def modality_noise(modality: str) -> ModalityNoise:
    """The noise family of a DICOM-style modality (``"CT"``, ``"MR"``, ``"DX"``, ``"UNKNOWN"``, ...)."""
    name = str(modality).upper()
    if name == "CT":
        return ModalityNoise.CT
    return ModalityNoise.RICIAN if name in RICIAN_MODALITIES else ModalityNoise.ADDITIVE


def is_ct(modality: str) -> bool:
    """Whether a modality is CT (its images are in HU)."""
    return modality_noise(modality) == ModalityNoise.CT

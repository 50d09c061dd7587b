"""Invertible intensity mappings between original units and the network's [0, 1] range.

Every mapping is a linear map ``y = (x - low) / (high - low)``. ``forward`` does NOT clip: values outside
``[low, high]`` map outside ``[0, 1]`` and ``inverse`` restores them exactly (up to float rounding), so a
CT voxel at 3500 HU survives a round trip through the default map of :data:`CT_WINDOW`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "CT_WINDOW",
    "MR_PERCENTILES",
    "IntensityMapping",
    "default_intensity_mapping",
    "looks_like_hu",
]

#: fixed CT map in Hounsfield units, the same for every scanner: the soft-tissue window (width 400, level 40 HU),
#: -160 HU -> 0 and +240 HU -> 1. Never clipped: lung (about -2), bone and metal (> 1) and the -3024 HU padding
#: outside the reconstruction circle map outside [0, 1] and come back exactly. At this scale CT noise of 10-50 HU
#: is 0.025-0.125, as large relative to the tissue contrast the network sees as MR noise is; with the whole 12-bit
#: range in [0, 1] it was 4-10 times smaller, and a 2.5D U-Net trained on both failed to learn it within a CPU budget.
CT_WINDOW: tuple[float, float] = (-160.0, 240.0)
#: robust percentiles used for MR and any modality without a fixed physical scale.
MR_PERCENTILES: tuple[float, float] = (0.5, 99.5)

_KINDS = ("ct_window", "percentile", "bit_depth", "fixed")
# value-range rule for CT in HU without a modality tag (NIfTI): air is about -1000 HU; scanners store it at
# -1024 or clamp it at -1000, and pad outside the reconstruction circle with -2048, -3024 or -32768
_AIR_HU = (-1100.0, -900.0)
_MIN_AIR_SHARE = 0.05  # share of air voxels needed when the minimum is padding, not air


@dataclass(frozen=True)
class IntensityMapping:
    """A linear, invertible map from original units (HU, raw MR, 0..255) to [0, 1].

    Args:
        low: value mapped to 0.
        high: value mapped to 1; must be greater than ``low``.
        kind: how ``low``/``high`` were chosen, one of ``ct_window``, ``percentile``, ``bit_depth``,
            ``fixed`` (informative only; the map itself is always linear).
    """

    low: float
    high: float
    kind: str = "fixed"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high)) or self.high <= self.low:
            raise ValueError(f"IntensityMapping needs finite low < high, got low={self.low}, high={self.high}.")
        if self.kind not in _KINDS:
            raise ValueError(f"IntensityMapping kind must be one of {_KINDS}, got {self.kind!r}.")

    @classmethod
    def ct_window(cls, window: tuple[float, float] = CT_WINDOW) -> IntensityMapping:
        """HU window: ``window[0]`` maps to 0 and ``window[1]`` to 1."""
        return cls(float(window[0]), float(window[1]), "ct_window")

    @classmethod
    def percentile(cls, array: np.ndarray, percentiles: tuple[float, float] = MR_PERCENTILES) -> IntensityMapping:
        """Robust range of ``array`` (the whole volume, all channels).

        A constant image gets ``high = low + 1`` so the map stays invertible.
        """
        low, high = (float(v) for v in np.percentile(np.asarray(array, dtype=np.float64), percentiles))
        if high <= low:
            high = low + 1.0
        return cls(low, high, "percentile")

    @classmethod
    def bit_depth(cls, bits: int) -> IntensityMapping:
        """Unsigned integer images: 0 maps to 0 and ``2**bits - 1`` to 1 (e.g. /255, /65535)."""
        return cls(0.0, float(2**bits - 1), "bit_depth")

    def forward(self, array: np.ndarray) -> np.ndarray:
        """Original units to the network range, float32, not clipped."""
        out = (np.asarray(array, dtype=np.float64) - self.low) / (self.high - self.low)
        return out.astype(np.float32)

    def inverse(self, array: np.ndarray) -> np.ndarray:
        """Network range back to original units, float64 (callers round/cast as their format needs)."""
        return np.asarray(array, dtype=np.float64) * (self.high - self.low) + self.low

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, e.g. to store in a sample's meta dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntensityMapping:
        """Inverse of :meth:`to_dict`."""
        return cls(float(data["low"]), float(data["high"]), str(data.get("kind", "fixed")))


def default_intensity_mapping(
    array: np.ndarray, modality: str, *, bit_depth: int | None = None, photo: bool = False
) -> IntensityMapping:
    """The project's default mapping for one image or volume.

    Rules, in order: CT -> :data:`CT_WINDOW`; photographs (PNG/JPEG/TIFF, colour DICOM) with a known
    bit depth -> ``/(2**bit_depth - 1)``; anything else (MR, PET, NIfTI of unknown modality) ->
    percentiles :data:`MR_PERCENTILES` of the whole volume.

    Args:
        array: the image in original units.
        modality: DICOM-style modality ("CT", "MR", "photo", ...).
        bit_depth: bits per sample of the stored image, used for photographs.
        photo: whether the image is a photograph-like integer image (8/16-bit).
    """
    if modality.upper() == "CT":
        return IntensityMapping.ct_window()
    if photo and bit_depth:
        return IntensityMapping.bit_depth(bit_depth)
    return IntensityMapping.percentile(array)


def looks_like_hu(array: np.ndarray, sample: int = 1_000_000) -> bool:
    """Whether an image without a modality tag holds CT values in Hounsfield units.

    Rule: integer-valued data (a CT's stored integers times an integer slope) whose minimum is air,
    -1100 <= min <= -1000 HU; or, when the minimum is lower (padding outside the reconstruction circle:
    -2048, -3024, -32768), at least 5 % of the voxels are air ([-1100, -900] HU). MR, PET and ultrasound are
    not negative; MR phase maps (integers in [-4096, 4095]) are spread evenly and hold far less than 5 % air.

    Args:
        array: the image in original units.
        sample: at most this many evenly strided values are tested (a 512x512x300 CT has 79 M).
    """
    flat = np.asarray(array).reshape(-1)
    if flat.size == 0:
        return False
    values = flat[:: max(1, flat.size // sample)].astype(np.float64)
    low = float(flat.min())
    if low > -1000.0 or not np.array_equal(values, np.rint(values)):
        return False
    if low >= _AIR_HU[0]:
        return True
    air = np.count_nonzero((values >= _AIR_HU[0]) & (values <= _AIR_HU[1]))
    return air >= _MIN_AIR_SHARE * values.size

"""Training and evaluation noise for CT and MR in physical units, on 2.5D slabs (see docs/noise_models.md).

* CT: Gaussian noise with a std in HU, or projection-domain low-dose noise (:class:`LowDoseCTNoise`). The low-dose
  simulation costs about 2 s per 512x512 slice, too slow for the training loop, so :class:`CTNoiseBankd`
  precomputes a few realisations per slice once (cached on disk) and :class:`AddClinicalNoised` scales a drawn one:
  the noise std goes as ``1/sqrt(I0)``, so a factor ``f`` stands for the dose ``I0 / f**2``.
* MR: Rician noise whose per-channel std is a fraction of the volume's robust range (the span of its percentile
  intensity mapping), applied to the magnitude in original units.
* Any other grayscale modality (CR/DX, NM, ultrasound, ...): Gaussian noise of a std that is such a fraction (no
  Rician floor; :func:`~medical_denoise.noise.modality_noise`).

Images are in the network range of their :class:`~medical_denoise.io.IntensityMapping` (``d[f"{key}_intensity"]``
from :class:`~medical_denoise.data.LoadClinicald`); a std of ``s`` original units is ``s / (high - low)`` there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from medical_denoise.atomic import atomic_write
from medical_denoise.noise.ct_lowdose import LowDoseCTNoise
from medical_denoise.noise.modality import ModalityNoise, is_ct, modality_noise
from medical_denoise.noise.transforms import stable_seed

__all__ = ["AddClinicalNoised", "AddScanNoised", "CTNoiseBankd"]


def _pair(value: float | Sequence[float], name: str) -> tuple[float, float]:
    low, high = (float(value), float(value)) if np.isscalar(value) else (float(value[0]), float(value[1]))
    if not 0 <= low <= high:
        raise ValueError(f"{name} must be a value or a (low, high) range with 0 <= low <= high, got {value!r}.")
    return low, high


class CTNoiseBankd(MapTransform):
    """Precompute low-dose noise realisations for every slice of a CT volume (deterministic, cacheable).

    For a CT image ``(1, H, W, D)`` in the network range, ``d[f"{key}_{bank_postfix}"]`` becomes a float16 array
    ``(realizations, H, W, D)`` of noise in HU (independent of the intensity mapping, so a changed mapping reuses
    the cache); other modalities get None. The realisations are seeded by ``seed`` and the image id, so a run (and a
    resumed run) sees the same bank, and with ``cache_dir`` each bank is computed once and reloaded from a ``.npy``
    file named by a hash of the volume in HU, the settings and the seed.

    Args:
        keys: image keys (volumes from :class:`~medical_denoise.data.LoadClinicald`).
        noise: the low-dose model (its ``i0`` is the reference dose of the bank).
        realizations: independent noise images per slice.
        seed: base seed.
        seed_key: datalist key naming the image (its id).
        cache_dir: folder for the ``.npy`` banks; None keeps them in memory only.
        intensity_postfix: where :class:`LoadClinicald` put the intensity mapping.
        bank_postfix: where the bank goes.
        allow_missing_keys: don't fail on missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        noise: LowDoseCTNoise | None = None,
        realizations: int = 2,
        seed: int = 0,
        seed_key: str = "id",
        cache_dir: str | Path | None = None,
        intensity_postfix: str = "intensity",
        bank_postfix: str = "lowdose",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if realizations < 1:
            raise ValueError(f"realizations must be >= 1, got {realizations}.")
        self.noise = noise or LowDoseCTNoise()
        self.realizations = realizations
        self.seed = seed
        self.seed_key = seed_key
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.intensity_postfix = intensity_postfix
        self.bank_postfix = bank_postfix

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            info = d[f"{key}_{self.intensity_postfix}"]
            bank_key = f"{key}_{self.bank_postfix}"
            if not is_ct(info["modality"]):
                d[bank_key] = None
                continue
            d[bank_key] = self._bank(np.asarray(d[key], dtype=np.float32), info, str(d.get(self.seed_key, key)))
        return d

    def _bank(self, image: np.ndarray, info: Mapping[str, Any], image_id: str) -> np.ndarray:
        volume = image[0] if image.ndim == 4 else image[0][..., None]  # (H, W, D)
        hu = volume * (info["high"] - info["low"]) + info["low"]
        spacing = float(info.get("pixel_spacing", 1.0))
        settings = {"noise": repr(self.noise), "n": self.realizations, "seed": self.seed, "id": image_id, "mm": spacing}
        fingerprint = np.round(hu).astype(np.int32).tobytes()  # whole HU: the same volume under any mapping
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode() + fingerprint).hexdigest()[:20]
        path = None if self.cache_dir is None else self.cache_dir / f"ct_lowdose_hu_{digest}.npy"
        if path is not None and path.is_file():
            return np.load(path)
        rng = np.random.default_rng(stable_seed("ct_lowdose", self.seed, image_id))
        bank = np.empty((self.realizations, *volume.shape), dtype=np.float16)
        for r in range(self.realizations):
            for z in range(volume.shape[-1]):
                bank[r, ..., z] = self.noise.noise(hu[..., z], spacing, rng)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: np.save(f, bank), binary=True)
        return bank


def _per_slice_normal(rng: np.random.Generator, shape: Sequence[int], indices: Sequence[int] | None) -> np.ndarray:
    """Standard normal noise of ``shape`` ``(C, H, W)``: one draw per distinct slice index, repeated where it repeats."""
    if indices is None or len(indices) != shape[0]:
        return rng.standard_normal(shape, dtype=np.float32)
    distinct, where = np.unique(np.asarray(indices), return_inverse=True)
    return rng.standard_normal((len(distinct), *shape[1:]), dtype=np.float32)[where.reshape(-1)]


class AddClinicalNoised(Randomizable, MapTransform):
    """Noise for a 2.5D slab in the image's physical units, chosen by modality, at a random level per sample.

    The slab ``(2k + 1, H, W)`` (from :class:`~medical_denoise.data.ClinicalSlabd`) gets independent noise on each
    slice; a slice that appears twice (the clamped edge of a volume, every channel of a 2D image) carries the same
    noise each time, as at inference, where the one noisy slice is repeated. The clean target (another key) is left
    alone. Per sample, with probability ``clean_prob`` nothing is added
    (so a blind model learns to leave clean images alone). Otherwise:

    * CT: with probability ``lowdose_prob`` (when a bank is present) the bank's noise of each slice times a factor
      drawn from ``lowdose_scale``; else Gaussian noise with a std drawn from ``ct_sigma_hu`` (HU). Pixels outside
      the field of view (below ``fov_hu``, the scanner's padding) get none, as on a scanner;
    * MR (:data:`~medical_denoise.noise.RICIAN_MODALITIES`): Rician noise with a per-channel std drawn from
      ``mr_sigma`` (fraction of the robust range);
    * other grayscale modalities: Gaussian noise with a std drawn from ``mr_sigma``, no floor.

    The drawn parameters go to ``d["noise_params"]`` and the std of the added noise, in the network range, to
    ``d[level_key]`` (Gaussian: the drawn std; Rician: the drawn per-channel std; low dose: the std of the added noise
    over the field of view of the centre slice; clean: 0), for :class:`AppendNoiseLevelMapd`. The bank is removed
    from the output (it is big).

    Args:
        keys: slab keys.
        clean_prob: share of samples left noise-free.
        ct_sigma_hu: Gaussian std in HU, a value or a ``(low, high)`` range drawn uniformly.
        lowdose_prob: share of noisy CT samples that take low-dose noise from the bank.
        lowdose_scale: factor on the bank's noise (``f`` is a dose ``I0 / f**2``).
        mr_sigma: non-CT noise std (Rician: per channel) as a fraction of the robust range.
        seed: base seed when ``seed_key`` is set.
        seed_key: if set, the noise depends only on ``(seed, d[seed_key])``: the same noisy image in every run
            (validation); otherwise it comes from the transform's random state (training).
        intensity_postfix: where :class:`~medical_denoise.data.LoadClinicald` put the intensity mapping.
        bank_postfix: where :class:`CTNoiseBankd` put the bank.
        index_key: where :class:`~medical_denoise.data.ClinicalSlabd` put the slab's slice indices.
        fov_hu: CT values below this are padding outside the reconstruction circle (-3024 HU, -2048 HU, ...).
        level_key: where the std of the added noise goes.
        families: noise family per non-CT modality in place of :func:`~medical_denoise.noise.modality_noise`'s,
            e.g. ``{"MR": "additive"}`` to teach an additive-noise model on MR anatomy.
        allow_missing_keys: don't fail on missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        clean_prob: float = 0.1,
        ct_sigma_hu: float | Sequence[float] = (0.0, 60.0),
        lowdose_prob: float = 0.5,
        lowdose_scale: float | Sequence[float] = (0.3, 1.8),
        mr_sigma: float | Sequence[float] = (0.0, 0.12),
        seed: int = 0,
        seed_key: str | None = None,
        intensity_postfix: str = "intensity",
        bank_postfix: str = "lowdose",
        index_key: str = "slab_indices",
        fov_hu: float = -2000.0,
        level_key: str = "noise_std",
        families: Mapping[str, str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.families = {str(m).upper(): ModalityNoise(f) for m, f in (families or {}).items()}
        if any(m == "CT" or f is ModalityNoise.CT for m, f in self.families.items()):
            raise ValueError(f"families: CT's noise (HU, low dose) is fixed; got {dict(families)}.")
        for name, p in (("clean_prob", clean_prob), ("lowdose_prob", lowdose_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}.")
        self.clean_prob = clean_prob
        self.ct_sigma_hu = _pair(ct_sigma_hu, "ct_sigma_hu")
        self.lowdose_prob = lowdose_prob
        self.lowdose_scale = _pair(lowdose_scale, "lowdose_scale")
        self.mr_sigma = _pair(mr_sigma, "mr_sigma")
        self.seed = seed
        self.seed_key = seed_key
        self.intensity_postfix = intensity_postfix
        self.bank_postfix = bank_postfix
        self.index_key = index_key
        self.fov_hu = fov_hu
        self.level_key = level_key

    def _generator(self, d: Mapping) -> np.random.Generator:
        if self.seed_key is None:
            return np.random.default_rng(self.R.randint(np.iinfo(np.int32).max))
        return np.random.default_rng(stable_seed("clinical_noise", self.seed, d[self.seed_key]))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        rng = self._generator(d)
        for key in self.key_iterator(d):
            info = d[f"{key}_{self.intensity_postfix}"]
            bank = d.pop(f"{key}_{self.bank_postfix}", None)
            slab = torch.as_tensor(d[key], dtype=torch.float32)
            noisy, params = self._degrade(slab.numpy(), info, bank, d.get(self.index_key), rng)
            d[key] = torch.from_numpy(noisy)
            d["noise_params"] = params
            d[self.level_key] = params["std"]
        return d

    def _degrade(
        self, slab: np.ndarray, info: Mapping, bank: np.ndarray | None, indices: Sequence[int] | None, rng
    ) -> tuple[np.ndarray, dict[str, Any]]:
        span = float(info["high"]) - float(info["low"])
        if rng.random() < self.clean_prob:
            return slab.copy(), {"kind": "none", "level": 0.0, "std": 0.0}
        if is_ct(info["modality"]):
            inside = slab * span + float(info["low"]) >= self.fov_hu
            if bank is not None and indices is not None and rng.random() < self.lowdose_prob:
                factor = float(rng.uniform(*self.lowdose_scale))
                realization = int(rng.integers(bank.shape[0]))
                noise = (
                    inside * (factor / span) * np.stack([bank[realization, ..., z] for z in indices]).astype(np.float32)
                )
                centre = len(indices) // 2
                std = float(noise[centre][inside[centre]].std()) if inside[centre].any() else 0.0
                return slab + noise, {"kind": "ct_lowdose", "level": factor, "std": std}
            sigma_hu = float(rng.uniform(*self.ct_sigma_hu))
            noise = _per_slice_normal(rng, slab.shape, indices) * (sigma_hu / span)
            return slab + inside * noise, {"kind": "gaussian_hu", "level": sigma_hu, "std": sigma_hu / span}
        fraction = float(rng.uniform(*self.mr_sigma))
        family = self.families.get(str(info["modality"]).upper()) or modality_noise(info["modality"])
        if family is ModalityNoise.ADDITIVE:
            noise = _per_slice_normal(rng, slab.shape, indices) * fraction
            return slab + noise, {"kind": "gaussian", "level": fraction, "std": fraction}
        low = float(info["low"]) / span  # Rician acts on the magnitude in original units, here rescaled by span
        n1, n2 = (_per_slice_normal(rng, slab.shape, indices) * fraction for _ in range(2))
        magnitude = np.sqrt((slab + low + n1) ** 2 + n2**2)
        return (magnitude - low).astype(np.float32), {"kind": "rician", "level": fraction, "std": fraction}


class AddScanNoised(Randomizable, MapTransform):
    """White noise added to a CT training slab *and* its target: noise the scan carries and the output keeps.

    The generator is told the std of the noise :class:`AddClinicalNoised` adds next (``noise_std``), not of this.
    Trained with it, a told level means "remove this much noise and keep the rest": the semantics of BM3D given a
    std, and of a user who wants a scan denoised by a set amount rather than made as smooth as possible. Blind, the
    network estimates the level from its input, which holds both, so it still removes all it sees. Per sample, with
    probability ``prob``, a std drawn from ``sigma_hu`` (HU); a slice that appears twice in the slab gets the same
    noise each time, and the target (the centre slice) gets the centre slice's noise.

    Args:
        keys: the slab key (from :class:`~medical_denoise.data.ClinicalSlabd`).
        label_key: the clean centre slice (the target).
        sigma_hu: range of the std in HU.
        prob: share of CT samples that get it; other modalities never do.
        intensity_postfix: where :class:`~medical_denoise.data.LoadClinicald` put the intensity mapping.
        index_key: where :class:`~medical_denoise.data.ClinicalSlabd` put the slab's slice indices.
        fov_hu: CT values below this are padding outside the reconstruction circle; they stay exact.
        allow_missing_keys: don't fail on missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str = "label",
        sigma_hu: float | Sequence[float] = (0.0, 20.0),
        prob: float = 0.5,
        intensity_postfix: str = "intensity",
        index_key: str = "slab_indices",
        fov_hu: float = -2000.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}.")
        self.label_key = label_key
        self.sigma_hu = _pair(sigma_hu, "sigma_hu")
        self.prob = prob
        self.intensity_postfix = intensity_postfix
        self.index_key = index_key
        self.fov_hu = fov_hu

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        rng = np.random.default_rng(self.R.randint(np.iinfo(np.int32).max))
        for key in self.key_iterator(d):
            info = d[f"{key}_{self.intensity_postfix}"]
            if not is_ct(info["modality"]) or rng.random() >= self.prob:
                continue
            span = float(info["high"]) - float(info["low"])
            slab = np.asarray(d[key], dtype=np.float32)
            indices = d.get(self.index_key)
            inside = slab * span + float(info["low"]) >= self.fov_hu
            noise = (
                inside * _per_slice_normal(rng, slab.shape, indices) * np.float32(rng.uniform(*self.sigma_hu) / span)
            )
            centre = slab.shape[0] // 2
            d[key] = torch.from_numpy(slab + noise)
            label = np.asarray(d[self.label_key], dtype=np.float32)
            d[self.label_key] = torch.from_numpy(label + noise[centre : centre + 1].reshape(label.shape))
        return d

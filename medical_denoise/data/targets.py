"""Cleaner training targets: real scans carry their own noise, and a network trained to reproduce it keeps it.

Every training CT and MR here is itself noisy (a 1.25 mm chest CT with about 8 HU of its own noise, 3D MR with
Rician noise). Noise is added on top of that image and the image is the target, so the network learns to return the
scan's own noise as if it were anatomy: on a clean slice it then removes too little. :class:`CleanTargetsd` replaces
each slice of a training volume by a non-local-means estimate at the slice's own noise level (scikit-image), before
slabs are cut and noise is added, so input and target share the cleaner image.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type
from skimage.restoration import denoise_nl_means, estimate_sigma

from medical_denoise.atomic import atomic_write

__all__ = ["CleanTargetsd"]


class CleanTargetsd(MapTransform):
    """Denoise every slice of a volume ``(1, H, W, D)`` (or image ``(1, H, W)``) at its own noise level (deterministic,
    cacheable).

    The level is the wavelet MAD estimate of each slice (``skimage.restoration.estimate_sigma``), times
    ``strength``; slices measuring no noise are left as they are. CT noise is spatially correlated, so the estimate
    (finest wavelet band) reads below its full std: on the 1.25 mm training chest CT, ``strength`` 2 removes about
    6 HU of std from the soft tissue and keeps edges (1 removes about 1 HU).

    Args:
        keys: image keys, in the network range (:class:`~medical_denoise.data.LoadClinicald`).
        modalities: the modalities (``d[f"{key}_intensity"]["modality"]``) whose images are denoised; others pass.
        strength: factor on the estimated level given to non-local means (its ``h`` is ``0.8`` times that level).
        cache_dir: folder for ``.npy`` results named by a hash of the volume and the settings; None: memory only.
        intensity_postfix: where :class:`~medical_denoise.data.LoadClinicald` put the intensity mapping.
        allow_missing_keys: don't fail on missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        modalities: Sequence[str] = ("CT",),
        strength: float = 2.0,
        cache_dir: str | Path | None = None,
        intensity_postfix: str = "intensity",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not strength > 0:
            raise ValueError(f"strength must be > 0, got {strength}.")
        self.modalities = {str(m).upper() for m in modalities}
        self.strength = float(strength)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.intensity_postfix = intensity_postfix

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if str(d[f"{key}_{self.intensity_postfix}"]["modality"]).upper() not in self.modalities:
                continue
            image = np.asarray(d[key], dtype=np.float32)
            if image.ndim not in (3, 4) or image.shape[0] != 1:
                raise ValueError(f"{d.get('id', key)}: expected a (1, H, W[, D]) image, got shape {image.shape}.")
            d[key] = convert_to_dst_type(self._cached(image), d[key])[0]  # same container (MetaTensor: same meta)
        return d

    def _cached(self, image: np.ndarray) -> np.ndarray:
        path = None
        if self.cache_dir is not None:  # the volume is hashed only to name its cache file
            settings = json.dumps({"method": "nl_means", "strength": self.strength, "shape": image.shape})
            digest = hashlib.sha256(settings.encode() + image.tobytes()).hexdigest()[:20]
            path = self.cache_dir / f"clean_target_{digest}.npy"
            if path.is_file():
                return np.load(path)
        volume = image[0] if image.ndim == 4 else image[0][..., None]
        out = np.stack([self._slice(volume[..., z]) for z in range(volume.shape[-1])], axis=-1)[None]
        out = out if image.ndim == 4 else out[..., 0]
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: np.save(f, out), binary=True)
        return out

    def _slice(self, plane: np.ndarray) -> np.ndarray:
        sigma = float(estimate_sigma(plane)) * self.strength
        if not np.isfinite(sigma) or sigma <= 0:
            return plane.astype(np.float32)
        out = denoise_nl_means(plane, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)
        return out.astype(np.float32)

"""Seeded MONAI dictionary transforms that degrade a clean image and keep it as the training target.

Every transform here:

* keeps the clean input in ``target_key`` if that key is given and not yet in the sample, so in a chain
  (blur -> downsample -> noise) only the first transform stores the target; with several ``keys`` the target is the
  clean copy of the first key present;
* draws its randomness either from MONAI's ``self.R`` (``Compose.set_random_state`` / ``set_determinism`` apply), or,
  when ``seed_key`` is given, from ``seed`` and a SHA-256 hash of ``str(d[seed_key])`` and the transform's settings,
  so one image gets the same degradation in every run, process and call order (what evaluation uses);
* records what it did: a dict appended to ``d["degradations"]`` plus flat keys (e.g. ``d["noise_level"]``), and the
  same flat keys in ``.meta`` of MetaTensor outputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable
from monai.transforms.utils_pytorch_numpy_unification import clip as clip_fn
from monai.utils import TransformBackends

from .degradations import downsample, gaussian_blur, jpeg_compress
from .models import NoiseModel, make_noise_model

__all__ = [
    "SeededDegradationd",
    "AddNoised",
    "GaussianBlurd",
    "Downsampled",
    "JpegCompressd",
    "AppendNoiseLevelMapd",
    "stable_seed",
]

_MAX_ENTROPY = np.iinfo(np.int64).max


def stable_seed(*parts: Any) -> int:
    """A 128-bit integer from the text of ``parts`` that is identical in every process (unlike ``hash()``)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:16], "little")


def _seed_text(value: Any, seed_key: str) -> str:
    """The text identifying a sample: a filename for MetaTensors/meta dicts, ``str(value)`` otherwise."""
    if isinstance(value, MetaTensor):
        value = value.meta
    if isinstance(value, Mapping):
        if "filename_or_obj" not in value:
            raise ValueError(f"seed_key {seed_key!r} points to metadata without 'filename_or_obj'.")
        value = value["filename_or_obj"]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        if value.size == 1 if isinstance(value, np.ndarray) else value.numel() == 1:
            return str(value.item())
        raise ValueError(f"seed_key {seed_key!r} must identify the sample (e.g. a filename), got an array.")
    return str(value)


class SeededDegradationd(Randomizable, MapTransform):
    """Base of the degradation transforms: seeding, target copy, input checks and bookkeeping.

    Args:
        keys: keys of the images to degrade.
        target_key: where to keep the clean image (only if absent); ``None`` keeps none.
        seed_key: key whose value identifies the sample; if given the randomness derives from it and ``seed``.
        seed: base seed of the ``seed_key`` mode.
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]
    spatial_ndims: tuple[int, ...] = (2, 3)

    def __init__(
        self,
        keys: KeysCollection,
        target_key: str | None = "label",
        seed_key: str | None = None,
        seed: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.target_key = target_key
        self.seed_key = seed_key
        self.seed = int(seed) % 2**64
        self._entropy = 0

    def settings(self) -> str:
        """Text of the settings that change the random stream (part of the ``seed_key`` hash)."""
        return type(self).__name__

    def randomize(self, data: Any = None) -> None:
        self._entropy = int(self.R.randint(_MAX_ENTROPY, dtype=np.int64))

    def generators(self, d: Mapping) -> tuple[np.random.Generator, list[np.random.Generator]]:
        """One generator for the sample's parameters and one per entry of ``self.keys`` (by position)."""
        if self.seed_key is None:
            self.randomize()
            entropy: list[int] = [self._entropy]
        else:
            if self.seed_key not in d:
                raise KeyError(f"seed_key {self.seed_key!r} of {type(self).__name__} is missing from the sample.")
            entropy = [self.seed, stable_seed(self.settings(), _seed_text(d[self.seed_key], self.seed_key))]
        children = np.random.SeedSequence(entropy).spawn(1 + len(self.keys))
        return np.random.default_rng(children[0]), [np.random.default_rng(c) for c in children[1:]]

    def describe(self, d: Mapping, key: Hashable) -> str:
        """Name the image in error messages: the key and, when known, its file."""
        img, src = d.get(key), None
        if isinstance(img, MetaTensor):
            src = img.meta.get("filename_or_obj")
        if src is None and self.seed_key is not None and self.seed_key in d:
            src = d[self.seed_key]
        return f"key {key!r}" + (f" (file {src})" if src not in (None, "") else "")

    def check_image(self, d: Mapping, key: Hashable) -> NdarrayOrTensor:
        """Return ``d[key]`` after checking it is a finite float (C, *spatial) array with allowed spatial dims."""
        img = d[key]
        if not isinstance(img, (np.ndarray, torch.Tensor)):
            raise TypeError(f"{type(self).__name__}: {self.describe(d, key)} is {type(img).__name__}, not an array.")
        if img.ndim - 1 not in self.spatial_ndims:
            raise ValueError(
                f"{type(self).__name__}: {self.describe(d, key)} has shape {tuple(img.shape)}; expected channel-first "
                f"(C, *spatial) with {' or '.join(map(str, self.spatial_ndims))} spatial dims."
            )
        is_float = img.is_floating_point() if isinstance(img, torch.Tensor) else np.issubdtype(img.dtype, np.floating)
        if not is_float:
            name = type(self).__name__
            raise TypeError(f"{name}: {self.describe(d, key)} has dtype {img.dtype}; expected float in [0, 1].")
        finite = torch.isfinite(img).all().item() if isinstance(img, torch.Tensor) else np.isfinite(img).all()
        if not finite:
            raise ValueError(f"{type(self).__name__}: {self.describe(d, key)} contains NaN or Inf.")
        return img

    def keep_target(self, d: dict, img: NdarrayOrTensor) -> None:
        """Store a copy of the clean image in ``target_key`` unless absent/already there."""
        if self.target_key is not None and self.target_key not in d:
            d[self.target_key] = img.clone() if isinstance(img, torch.Tensor) else img.copy()

    @staticmethod
    def record(d: dict, outputs: Sequence[NdarrayOrTensor], name: str, params: dict[str, Any]) -> None:
        """Append ``{"name": name, **params}`` to ``d["degradations"]``; set ``params`` as flat keys and meta."""
        d["degradations"] = [*d.get("degradations", []), {"name": name, **params}]
        d.update(params)
        for out in outputs:
            if isinstance(out, MetaTensor):
                out.meta = {**out.meta, **params}  # fresh dict: never share meta with the clean target

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        param_rng, key_rngs = self.generators(d)
        params = self.sample_params(param_rng)
        outputs = []
        for key in self.key_iterator(d):
            img = self.check_image(d, key)
            self.keep_target(d, img)
            out = self.degrade(img, params, key_rngs[self.keys.index(key)])
            d[key] = out
            outputs.append(out)
        if outputs:  # nothing to record when every key was missing
            self.record(d, outputs, self.record_name, self.record_params(params))
        return d

    # subclasses implement the three below
    record_name = "degradation"

    def sample_params(self, rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError

    def record_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def degrade(self, img: NdarrayOrTensor, params: dict[str, Any], rng: np.random.Generator) -> NdarrayOrTensor:
        raise NotImplementedError


def _uniform(spec: tuple[float, float], rng: np.random.Generator) -> float:
    return spec[0] if spec[0] == spec[1] else float(rng.uniform(*spec))


def _range(value: float | Sequence[float], name: str, low: float, high: float = float("inf")) -> tuple[float, float]:
    pair = (value, value) if isinstance(value, (int, float, np.number)) else tuple(value)
    if len(pair) != 2 or not (low <= float(pair[0]) <= float(pair[1]) <= high):
        raise ValueError(f"{name} must be a number or a (low, high) pair within [{low}, {high}], got {value!r}.")
    return float(pair[0]), float(pair[1])


class AddNoised(SeededDegradationd):
    """Add noise of a :class:`NoiseModel` to clean images in [0, 1], keeping the clean image as the target.

    Records ``d["noise_kind"]`` (str) and ``d["noise_level"]`` (float; one level per sample, shared by all keys),
    the same two keys in ``.meta`` of MetaTensor outputs, and ``{"name": "noise", ...}`` in ``d["degradations"]``.
    Float math only: values may leave [0, 1] unless ``clip=True``.

    Args:
        keys: keys of the images to corrupt.
        noise: a :class:`NoiseModel` or a kind for :func:`make_noise_model`.
        level: level on the 0-255 scale, fixed or ``(low, high)``; ignored when ``noise`` is a NoiseModel.
        target_key: where to keep the clean image (only if not already present); ``None`` keeps none.
        clip: clip the noisy image to [0, 1].
        seed_key: key identifying the sample (e.g. ``"filename"``, or a meta dict / MetaTensor whose
            ``filename_or_obj`` is used): noise then derives from ``seed`` + a stable hash of it, noise kind and level.
        seed: base seed of the ``seed_key`` mode.
        allow_missing_keys: don't raise if a key is missing.
    """

    record_name = "noise"

    def __init__(
        self,
        keys: KeysCollection = "image",
        noise: NoiseModel | str = "gaussian",
        level: float | Sequence[float] = 25.0,
        target_key: str | None = "label",
        clip: bool = False,
        seed_key: str | None = None,
        seed: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, target_key, seed_key, seed, allow_missing_keys)
        self.noise = noise if isinstance(noise, NoiseModel) else make_noise_model(noise, level)
        self.clip = clip

    def settings(self) -> str:
        return f"noise|{self.noise.name}|{self.noise.level_spec}"

    def sample_params(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"noise_kind": self.noise.name, "noise_level": float(self.noise.sample_level(rng))}

    def degrade(self, img: NdarrayOrTensor, params: dict[str, Any], rng: np.random.Generator) -> NdarrayOrTensor:
        out = self.noise.apply(img, params["noise_level"], rng)
        return clip_fn(out, 0.0, 1.0) if self.clip else out


class GaussianBlurd(SeededDegradationd):
    """Blur with an isotropic Gaussian PSF (see :func:`~medical_denoise.noise.degradations.gaussian_blur`).

    Records ``blur_sigma`` (pixels) as a flat key, in meta and in ``d["degradations"]`` as ``{"name": "blur", ...}``.

    Args:
        keys: keys of the images to blur.
        sigma: PSF std in pixels, fixed or ``(low, high)`` drawn uniformly per sample.
        target_key, seed_key, seed, allow_missing_keys: as in :class:`AddNoised`.
    """

    record_name = "blur"

    def __init__(
        self,
        keys: KeysCollection = "image",
        sigma: float | Sequence[float] = 1.0,
        target_key: str | None = "label",
        seed_key: str | None = None,
        seed: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, target_key, seed_key, seed, allow_missing_keys)
        self.sigma = _range(sigma, "sigma", 0.0)

    def settings(self) -> str:
        return f"blur|{self.sigma!r}"

    def sample_params(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"blur_sigma": _uniform(self.sigma, rng)}

    def degrade(self, img: NdarrayOrTensor, params: dict[str, Any], rng: np.random.Generator) -> NdarrayOrTensor:
        return gaussian_blur(img, params["blur_sigma"])


class Downsampled(SeededDegradationd):
    """Reduce resolution by an integer factor (see :func:`~medical_denoise.noise.degradations.downsample`).

    The image shrinks to ``size // factor`` per spatial dim (or, with ``restore_size=True``, is interpolated back to
    its size so image and target keep the same shape, as a U-Net generator needs); the target keeps full size.
    Records ``downsample_factor`` (int) and ``downsample_mode`` (str).

    Args:
        keys: keys of the images to downsample.
        factor: an integer >= 2, or a sequence of such integers to choose from uniformly per sample.
        mode: ``"area"`` (box average, 2D/3D) or ``"bicubic"`` (anti-aliased, 2D only).
        restore_size: interpolate back to the input size (bicubic in 2D, trilinear in 3D).
        target_key, seed_key, seed, allow_missing_keys: as in :class:`AddNoised`.
    """

    record_name = "downsample"

    def __init__(
        self,
        keys: KeysCollection = "image",
        factor: int | Sequence[int] = 2,
        mode: str = "area",
        restore_size: bool = False,
        target_key: str | None = "label",
        seed_key: str | None = None,
        seed: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, target_key, seed_key, seed, allow_missing_keys)
        factors = (factor,) if isinstance(factor, (int, np.integer)) else tuple(factor)
        if not factors or any(not isinstance(f, (int, np.integer)) or f < 2 for f in factors):
            raise ValueError(f"factor must be an integer >= 2 or a sequence of them, got {factor!r}.")
        if mode not in ("area", "bicubic"):
            raise ValueError(f"mode must be 'area' or 'bicubic', got {mode!r}.")
        self.factors = tuple(int(f) for f in factors)
        self.mode = mode
        self.restore_size = restore_size
        if mode == "bicubic":
            self.spatial_ndims = (2,)

    def settings(self) -> str:
        return f"downsample|{self.factors}|{self.mode}|{self.restore_size}"

    def sample_params(self, rng: np.random.Generator) -> dict[str, Any]:
        f = self.factors[0] if len(self.factors) == 1 else int(rng.choice(self.factors))
        return {"downsample_factor": f, "downsample_mode": self.mode}

    def degrade(self, img: NdarrayOrTensor, params: dict[str, Any], rng: np.random.Generator) -> NdarrayOrTensor:
        return downsample(img, params["downsample_factor"], self.mode, self.restore_size)


class JpegCompressd(SeededDegradationd):
    """JPEG round trip through Pillow (see :func:`~medical_denoise.noise.degradations.jpeg_compress`), 2D only.

    The output is quantised to 8 bits and so lies in [0, 1]. Records ``jpeg_quality`` (int).

    Args:
        keys: keys of the images to compress; 1 (gray) or 3 (RGB) channels.
        quality: JPEG quality 1-95, fixed or ``(low, high)`` drawn as an integer uniformly in ``[low, high]``.
        target_key, seed_key, seed, allow_missing_keys: as in :class:`AddNoised`.
    """

    record_name = "jpeg"
    spatial_ndims = (2,)

    def __init__(
        self,
        keys: KeysCollection = "image",
        quality: int | Sequence[int] = 50,
        target_key: str | None = "label",
        seed_key: str | None = None,
        seed: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, target_key, seed_key, seed, allow_missing_keys)
        low, high = _range(quality, "quality", 1, 95)
        if low != int(low) or high != int(high):
            raise ValueError(f"quality must be integers, got {quality!r}.")
        self.quality = (int(low), int(high))

    def settings(self) -> str:
        return f"jpeg|{self.quality}"

    def sample_params(self, rng: np.random.Generator) -> dict[str, Any]:
        low, high = self.quality
        return {"jpeg_quality": low if low == high else int(rng.integers(low, high + 1))}

    def degrade(self, img: NdarrayOrTensor, params: dict[str, Any], rng: np.random.Generator) -> NdarrayOrTensor:
        return jpeg_compress(img, params["jpeg_quality"])


class AppendNoiseLevelMapd(MapTransform):
    """Appends a constant channel holding the noise std ``scale * d[level_key]`` to a degraded image.

    The input of a generator built with ``noise_level_input=True`` (:class:`~medical_denoise.networks.DenoiseUNet`):
    trained with the true level, it removes as much noise as it is told; at inference the network estimates the level
    itself when the channel is missing.

    Args:
        keys: image keys (channel first).
        level_key: where the degradation recorded its level: ``noise_std`` for
            :class:`~medical_denoise.noise.AddClinicalNoised` (already a std in the network range), ``noise_level``
            for :class:`AddNoised` (0-255 scale).
        scale: turns the recorded level into a std in the network range: ``1 / 255`` for :class:`AddNoised`'s
            Gaussian levels.
        allow_missing_keys: don't fail on missing keys.
    """

    def __init__(
        self, keys: KeysCollection, level_key: str = "noise_std", scale: float = 1.0, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.level_key = level_key
        self.scale = float(scale)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.level_key not in d:
            raise KeyError(f"AppendNoiseLevelMapd: no {self.level_key!r} in the data (the noise transform sets it).")
        level = float(d[self.level_key]) * self.scale
        for key in self.key_iterator(d):
            image = torch.as_tensor(d[key])
            d[key] = torch.cat([image, torch.full_like(image[:1], level)], dim=0)
        return d

"""Deblurring and super-resolution evaluation: seeded degradation chains, classical baselines (bicubic,
Richardson-Lucy, Wiener with the known PSF) and a held-out split report through :func:`run_comparison`.

``run_comparison`` scores methods on a degraded image shaped like the clean one. For deblurring that holds as is; for
SR the chain hands it the low-resolution image *bicubic-up-sampled* (so its ``noisy`` row is the bicubic baseline)
and keeps the real low-resolution array, which the GAN receives instead (:class:`LowResolutionInput`).
See docs/enhancement.md.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from medical_denoise.evaluation.report import ComparisonResult, run_comparison
from medical_denoise.evaluation.split_eval import load_split_images
from medical_denoise.networks.sr import ModCropd, upsample
from medical_denoise.noise import AddNoised, Downsampled, GaussianBlurd

__all__ = [
    "TASKS",
    "gaussian_psf",
    "BicubicUpsampler",
    "RichardsonLucyDeconvolver",
    "WienerDeconvolver",
    "DegradationChain",
    "LowResolutionInput",
    "evaluate_restoration_split",
]

logger = logging.getLogger(__name__)

TASKS = ("deblur", "sr")


def gaussian_psf(sigma: float, truncated: float = 4.0) -> np.ndarray:
    """The 2D PSF that :func:`medical_denoise.noise.gaussian_blur` applies (erf-integrated, normalised).

    Args:
        sigma: PSF standard deviation in pixels (> 0).
        truncated: kernel half-width in units of sigma.
    """
    from monai.networks.layers.convutils import gaussian_1d

    if not sigma > 0:
        raise ValueError(f"PSF sigma must be > 0, got {sigma}")
    k = gaussian_1d(torch.tensor(float(sigma)), truncated=truncated, approx="erf", normalize=True).double().numpy()
    return np.outer(k, k)


def bicubic_upsample(image: np.ndarray, scale: int) -> np.ndarray:
    """``(C, H, W)`` -> ``(C, scale*H, scale*W)`` float32, the interpolation the SR generator starts from."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    return upsample(x, [s * int(scale) for s in image.shape[1:]])[0].numpy()


class BicubicUpsampler:
    """Bicubic up-sampling of a low-resolution ``(C, h, w)`` image by ``scale``.

    Args:
        scale: integer factor.
    """

    def __init__(self, scale: int) -> None:
        self.scale = int(scale)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return bicubic_upsample(image, self.scale)


class _Deconvolver:
    """Per-channel deconvolution with the known Gaussian PSF; edges padded first (the blur replicated them)."""

    def __init__(self, truncated: float = 4.0) -> None:
        self.truncated = truncated

    def __call__(self, image: np.ndarray, sigma: float) -> np.ndarray:
        if sigma <= 0:
            return np.clip(image, 0.0, 1.0).astype(np.float32)
        psf = gaussian_psf(sigma, self.truncated)
        pad = psf.shape[0] // 2
        out = np.empty_like(image, dtype=np.float32)
        for c in range(image.shape[0]):
            padded = np.pad(np.asarray(image[c], dtype=np.float64), pad, mode="edge")
            out[c] = self.deconvolve(padded, psf)[pad:-pad, pad:-pad]
        return out

    def deconvolve(self, image: np.ndarray, psf: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RichardsonLucyDeconvolver(_Deconvolver):
    """``skimage.restoration.richardson_lucy`` with the true PSF (its ``sigma`` argument is the PSF sigma).

    Args:
        num_iter: iterations; more sharpen more and amplify noise more.
        truncated: PSF half-width in sigmas.
    """

    def __init__(self, num_iter: int = 20, truncated: float = 4.0) -> None:
        super().__init__(truncated)
        self.num_iter = num_iter

    def deconvolve(self, image: np.ndarray, psf: np.ndarray) -> np.ndarray:
        from skimage.restoration import richardson_lucy

        # RL assumes non-negative data: noise can dip below 0
        return richardson_lucy(np.clip(image, 0.0, 1.0), psf, num_iter=self.num_iter, clip=True)


class WienerDeconvolver(_Deconvolver):
    """``skimage.restoration.wiener`` with the true PSF (its ``sigma`` argument is the PSF sigma).

    Args:
        balance: regularisation (noise-to-signal power); larger is smoother.
        truncated: PSF half-width in sigmas.
    """

    def __init__(self, balance: float = 0.01, truncated: float = 4.0) -> None:
        super().__init__(truncated)
        self.balance = balance

    def deconvolve(self, image: np.ndarray, psf: np.ndarray) -> np.ndarray:
        from skimage.restoration import wiener

        return wiener(image, psf, self.balance, clip=True)


class DegradationChain:
    """Seeded ``blur -> (downsample) -> noise``, identical to the bundle's validation degradations for an image id.

    Called as ``chain(clean, sigma, image_id)`` (``run_comparison``'s ``add_noise``); the swept ``sigma`` is the PSF
    sigma for ``task="deblur"`` and the noise level (0-255 scale) for ``task="sr"``. For SR it returns the
    low-resolution image bicubic-up-sampled to the clean size and remembers the low-resolution array for
    :class:`LowResolutionInput`.

    Args:
        task: ``"deblur"`` or ``"sr"``.
        blur_sigma: PSF sigma in HR pixels (SR; ignored for deblur where it is swept).
        noise_level: noise level on the 0-255 scale (deblur; ignored for SR where it is swept).
        scale: SR factor.
        noise_kind: noise model name.
        downsample_mode: ``"area"`` or ``"bicubic"``.
        seed: experiment seed (with the image id it fixes every degraded image).
    """

    def __init__(
        self,
        task: str,
        blur_sigma: float = 0.0,
        noise_level: float = 0.0,
        scale: int = 2,
        noise_kind: str = "gaussian",
        downsample_mode: str = "area",
        seed: int = 0,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.task = task
        self.blur_sigma = float(blur_sigma)
        self.noise_level = float(noise_level)
        self.scale = int(scale)
        self.noise_kind = noise_kind
        self.downsample_mode = downsample_mode
        self.seed = seed
        self._low_res: dict[str, np.ndarray] = {}

    def transforms(self, sigma: float) -> list:
        """The seeded dictionary transforms for one swept value (``seed_key="id"``, clean image kept in ``label``)."""
        blur = sigma if self.task == "deblur" else self.blur_sigma
        level = self.noise_level if self.task == "deblur" else sigma
        common = {"keys": "image", "target_key": "label", "seed_key": "id", "seed": self.seed}
        chain = [GaussianBlurd(sigma=float(blur), **common)]
        if self.task == "sr":
            chain.append(Downsampled(factor=self.scale, mode=self.downsample_mode, **common))
        chain.append(AddNoised(noise=self.noise_kind, level=float(level), **common))
        return chain

    def degrade(self, clean: np.ndarray, sigma: float, image_id: str) -> np.ndarray:
        """The degraded image as the network sees it (low resolution for SR), float32."""
        d = {"image": clean, "id": image_id}
        for t in self.transforms(sigma):
            d = t(d)
        return np.asarray(d["image"], dtype=np.float32)

    def __call__(self, clean: np.ndarray, sigma: float, image_id: str) -> np.ndarray:
        degraded = self.degrade(clean, sigma, image_id)
        if self.task == "deblur":
            return degraded
        up = bicubic_upsample(degraded, self.scale)
        self._low_res[_digest(up)] = degraded
        return up

    def low_resolution(self, upsampled: np.ndarray) -> np.ndarray:
        """The low-resolution array whose bicubic up-sampling is ``upsampled`` (made by this chain)."""
        try:
            return self._low_res[_digest(upsampled)]
        except KeyError:
            raise KeyError("this up-sampled image was not produced by the DegradationChain") from None


def _digest(array: np.ndarray) -> str:
    a = np.ascontiguousarray(array, dtype=np.float32)
    return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()


class LowResolutionInput:
    """Give an SR model the true low-resolution input in ``run_comparison``, which hands methods the up-sampled one.

    Args:
        model: ``(C, h, w)`` low-resolution -> ``(C, scale*h, scale*w)``, e.g. ``GeneratorPredictor(...).numpy``.
        chain: the :class:`DegradationChain` used as ``add_noise``.
    """

    def __init__(self, model: Callable[[np.ndarray], np.ndarray], chain: DegradationChain) -> None:
        self.model = model
        self.chain = chain

    def __call__(self, upsampled: np.ndarray) -> np.ndarray:
        return self.model(self.chain.low_resolution(upsampled))


def restoration_baselines(task: str, scale: int = 2, rl_iterations: int = 20, wiener_balance: float = 0.01) -> dict:
    """The classical methods of a task by name: ``bicubic`` (SR); ``richardson_lucy`` and ``wiener`` (deblur)."""
    if task == "sr":
        # the chain already hands methods the bicubic image: scoring it as a method names the row
        return {"bicubic": lambda upsampled: upsampled}
    return {"richardson_lucy": RichardsonLucyDeconvolver(rl_iterations), "wiener": WienerDeconvolver(wiener_balance)}


def evaluate_restoration_split(
    task: str,
    datalist: str | Path,
    data_root: str | Path,
    load_transform: Callable,
    gan: Callable[[np.ndarray], np.ndarray],
    out_dir: str | Path,
    split: str = "test",
    sigmas: Sequence[float] = (2.0,),
    blur_sigma: float = 0.0,
    noise_level: float = 0.0,
    scale: int = 2,
    noise_kind: str = "gaussian",
    downsample_mode: str = "area",
    baselines: bool = True,
    seed: int = 0,
    max_images: int | None = None,
) -> ComparisonResult:
    """Score the GAN against the task's classical baselines on a held-out split; write the report to ``out_dir``.

    Args:
        task: ``"deblur"`` or ``"sr"``.
        datalist: the bundle's datalist JSON (test images never trained).
        data_root: dataset folder the datalist paths are relative to.
        load_transform: the bundle's loading transforms.
        gan: the generator as a ``(C, H, W)`` numpy callable (low-resolution input for SR).
        out_dir: report folder.
        split: datalist key to evaluate.
        sigmas: swept values: PSF sigmas (deblur) or noise levels on the 0-255 scale (SR).
        blur_sigma, noise_level, scale, noise_kind, downsample_mode, seed: see :class:`DegradationChain`.
        baselines: also score the classical baselines.
        max_images: evaluate only the first N images of the split.
    """
    chain = DegradationChain(task, blur_sigma, noise_level, scale, noise_kind, downsample_mode, seed)
    images = load_split_images(datalist, split, data_root, load_transform, max_images)
    if task == "sr":  # the HR target must be a multiple of the scale, as in validation
        crop = ModCropd("image", scale)
        images = [(i, np.asarray(crop({"image": img})["image"], dtype=np.float32)) for i, img in images]
        methods = {"gan": LowResolutionInput(gan, chain)}
    else:
        methods = {"gan": gan}
    if baselines:
        methods.update(restoration_baselines(task, scale))
    logger.info(
        "%s evaluation of %d '%s' images, sweep %s, methods %s", task, len(images), split, list(sigmas), list(methods)
    )
    result = run_comparison(images, sigmas, methods, add_noise=chain, out_dir=out_dir)
    logger.info("%s report:\n%s", task, result.to_markdown())
    return result

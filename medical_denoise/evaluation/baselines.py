"""Classical denoisers with the evaluation call signature ``(noisy (C, H, W)) -> (C, H, W)``.

Non-local means, total variation and wavelet shrinkage are *blind*: they estimate the noise level
from the noisy image itself (``skimage.restoration.estimate_sigma``) and never see the true sigma.
BM3D is given the true sigma (``sigma=`` keyword, 0-255 scale) because its published reference
results assume a known noise level; the comparison table states this. ``NLMeansDenoiser.denoise`` and
``TVDenoiser.denoise`` take a known sigma instead (the clinical evaluation gives every method the true level).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from monai.utils import OptionalImportError, optional_import
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, denoise_wavelet

from medical_denoise.evaluation.metrics import check_image
from medical_denoise.noise.estimate import estimate_noise_level

__all__ = [
    "BM3DDenoiser",
    "NLMeansDenoiser",
    "TVDenoiser",
    "WaveletDenoiser",
    "available_baselines",
    "bm3d_available",
    "estimate_noise_sigma",
]

BM3D_LICENCE_NOTE = (
    "BM3D needs the 'bm3d' extra (pip install 'medical-denoise[bm3d]'); its licence allows non-commercial use only."
)


def estimate_noise_sigma(noisy: np.ndarray) -> float:
    """Noise std (on the image's own [0, 1] scale) estimated from ``noisy``, averaged over channels.

    Args:
        noisy: noisy image ``(C, H, W)``.
    """
    check_image(noisy, "noisy")
    return estimate_noise_level(noisy) / 255.0


def _to_skimage(image: np.ndarray) -> tuple[np.ndarray, int | None]:
    """``(C, H, W)`` to skimage's layout: 2D for one channel, channel-last for RGB.

    Passing ``channel_axis=0`` with a single channel is not handled consistently by every skimage
    function (``denoise_nl_means`` drops the axis), so grayscale is given as a plain 2D array.
    """
    image = image.astype(np.float64)
    if image.shape[0] == 1:
        return image[0], None
    return np.moveaxis(image, 0, -1), -1


def _from_skimage(out: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.asarray(out, dtype=np.float32)
    out = out[None] if out.ndim == 2 else np.moveaxis(out, -1, 0)
    if out.shape != shape:
        raise RuntimeError(f"denoiser returned shape {out.shape}, expected {shape}.")
    return out


class NLMeansDenoiser:
    """Non-local means, fast mode, settings from the scikit-image gallery example.

    ``patch_size=5``, ``patch_distance=6``, ``sigma=σ̂`` and ``h = 0.8 σ̂`` (the docstring's starting point
    for fast mode with sigma given), where σ̂ is estimated on the noisy image.

    Args:
        patch_size: side of the compared patches.
        patch_distance: search radius in pixels.
        h_factor: ``h = h_factor * σ̂``.
    """

    def __init__(self, patch_size: int = 5, patch_distance: int = 6, h_factor: float = 0.8) -> None:
        self.patch_size = patch_size
        self.patch_distance = patch_distance
        self.h_factor = h_factor

    def __call__(self, noisy: np.ndarray) -> np.ndarray:
        """Denoise ``noisy`` ``(C, H, W)`` with the noise std estimated on it (blind)."""
        return self.denoise(noisy, estimate_noise_sigma(noisy))

    def denoise(self, noisy: np.ndarray, sigma: float) -> np.ndarray:
        """Denoise ``noisy`` ``(C, H, W)`` given its noise std ``sigma`` on the image's own scale.

        A separate method rather than a ``sigma`` keyword of ``__call__``: ``run_comparison`` hands the true sigma
        to every callable with that keyword, and the photograph comparison keeps NLM blind.
        """
        check_image(noisy, "noisy")
        image, channel_axis = _to_skimage(noisy)
        out = denoise_nl_means(
            image,
            patch_size=self.patch_size,
            patch_distance=self.patch_distance,
            h=self.h_factor * sigma,
            sigma=sigma,
            fast_mode=True,
            preserve_range=True,
            channel_axis=channel_axis,
        )
        return _from_skimage(out, noisy.shape)


class TVDenoiser:
    """Total-variation denoising (Chambolle) with ``weight = weight_factor * σ̂``.

    The rule ``weight = 1.0 σ̂`` (σ̂ on the [0, 1] scale) was chosen once on scikit-image sample images
    (astronaut, coffee, camera crops at sigma 15/25/50), never on an evaluation data set: factors
    0.5-3 were tried and 1.0 was best or within 0.15 dB of best at every sigma.

    Args:
        weight_factor: multiplier of the estimated sigma.
        max_num_iter: Chambolle iterations.
    """

    def __init__(self, weight_factor: float = 1.0, max_num_iter: int = 200) -> None:
        self.weight_factor = weight_factor
        self.max_num_iter = max_num_iter

    def __call__(self, noisy: np.ndarray) -> np.ndarray:
        """Denoise ``noisy`` ``(C, H, W)`` with the noise std estimated on it (blind)."""
        return self.denoise(noisy, estimate_noise_sigma(noisy))

    def denoise(self, noisy: np.ndarray, sigma: float) -> np.ndarray:
        """Denoise ``noisy`` ``(C, H, W)`` given its noise std ``sigma`` on the image's own scale (see NLM)."""
        check_image(noisy, "noisy")
        weight = self.weight_factor * sigma
        image, channel_axis = _to_skimage(noisy)
        out = denoise_tv_chambolle(image, weight=weight, max_num_iter=self.max_num_iter, channel_axis=channel_axis)
        return _from_skimage(out, noisy.shape)


class WaveletDenoiser:
    """Wavelet shrinkage: BayesShrink, soft thresholds, ``rescale_sigma=True``, YCbCr for RGB.

    The noise level is estimated per channel inside ``denoise_wavelet`` (``sigma=None``).

    Args:
        wavelet: PyWavelets wavelet name (scikit-image default ``db1``).
    """

    def __init__(self, wavelet: str = "db1") -> None:
        self.wavelet = wavelet

    def __call__(self, noisy: np.ndarray) -> np.ndarray:
        """Denoise ``noisy`` ``(C, H, W)``."""
        check_image(noisy, "noisy")
        image, channel_axis = _to_skimage(noisy)
        out = denoise_wavelet(
            image,
            wavelet=self.wavelet,
            method="BayesShrink",
            mode="soft",
            rescale_sigma=True,
            convert2ycbcr=channel_axis is not None,
            channel_axis=channel_axis,
        )
        return _from_skimage(out, noisy.shape)


def bm3d_available() -> bool:
    """Whether the optional ``bm3d`` package can be imported."""
    return bool(optional_import("bm3d")[1])


class BM3DDenoiser:
    """BM3D (optional ``bm3d`` package, non-commercial licence), given the true noise sigma.

    Grayscale images use ``bm3d.bm3d``; RGB images use ``bm3d.bm3d_rgb`` (opponent colour space, block
    matching on luminance). If ``sigma`` is not given it is estimated from the noisy image.

    Args:
        profile: BM3D profile name (``"np"`` is the package default).

    Raises:
        OptionalImportError: if ``bm3d`` is not installed.
    """

    def __init__(self, profile: str = "np") -> None:
        module, ok = optional_import("bm3d")
        if not ok:
            raise OptionalImportError(BM3D_LICENCE_NOTE)
        self._bm3d = module
        self.profile = profile

    def __call__(self, noisy: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """Denoise ``noisy`` ``(C, H, W)``.

        Args:
            noisy: noisy image.
            sigma: true noise std on the 0-255 scale; estimated when ``None``.
        """
        check_image(noisy, "noisy")
        sigma_01 = estimate_noise_sigma(noisy) if sigma is None else float(sigma) / 255.0
        image, channel_axis = _to_skimage(noisy)
        if channel_axis is None:
            out = self._bm3d.bm3d(image, sigma_psd=sigma_01, profile=self.profile)
        else:
            out = self._bm3d.bm3d_rgb(image, sigma_psd=sigma_01, profile=self.profile)
        return _from_skimage(out, noisy.shape)


def available_baselines() -> dict[str, Callable[..., np.ndarray]]:
    """Baselines by name: ``nlm``, ``tv``, ``wavelet`` and, when the package is installed, ``bm3d``."""
    methods: dict[str, Callable[..., np.ndarray]] = {
        "nlm": NLMeansDenoiser(),
        "tv": TVDenoiser(),
        "wavelet": WaveletDenoiser(),
    }
    if bm3d_available():
        methods["bm3d"] = BM3DDenoiser()
    return methods

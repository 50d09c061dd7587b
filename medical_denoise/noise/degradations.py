"""Deterministic array-level degradations (blur, downsampling, JPEG) for channel-first images in [0, 1].

Each function takes a numpy array, torch tensor or MetaTensor of shape (C, *spatial) and returns the same type on
the same device with the same dtype; the input is not modified. The seeded dictionary versions live in
:mod:`medical_denoise.noise.transforms`.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.utils import to_affine_nd
from monai.networks.layers.convutils import gaussian_1d
from monai.networks.layers.simplelayers import separable_filtering
from monai.transforms.utils import scale_affine
from monai.utils import convert_data_type, convert_to_dst_type

__all__ = ["gaussian_blur", "downsample", "jpeg_compress"]


def _as_batch(img: NdarrayOrTensor) -> torch.Tensor:
    """(C, *spatial) -> float (1, C, *spatial) plain tensor on the image's device."""
    t = convert_data_type(img, torch.Tensor, dtype=torch.float32 if not torch.is_tensor(img) else None)[0]
    t = t.as_tensor() if isinstance(t, MetaTensor) else t
    return t.unsqueeze(0)


def gaussian_blur(img: NdarrayOrTensor, sigma: float, truncated: float = 4.0) -> NdarrayOrTensor:
    """Convolve every channel with an isotropic Gaussian PSF of std ``sigma`` pixels (replicate borders).

    Args:
        img: (C, *spatial) float image, 1-3 spatial dims.
        sigma: PSF standard deviation in pixels; 0 returns a copy.
        truncated: kernel half-width in units of sigma.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}.")
    if sigma == 0:
        return img.clone() if isinstance(img, torch.Tensor) else img.copy()
    x = _as_batch(img)
    # erf-integrated kernel stays normalised for small sigma, unlike a sampled one
    kernel = gaussian_1d(torch.tensor(float(sigma), device=x.device), truncated=truncated, approx="erf", normalize=True)
    out = separable_filtering(x, [kernel.to(x.dtype)] * (x.ndim - 2), mode="replicate")[0]
    return convert_to_dst_type(out, img)[0]


def downsample(img: NdarrayOrTensor, factor: int, mode: str = "area", restore_size: bool = False) -> NdarrayOrTensor:
    """Shrink each spatial dim to ``size // factor`` with anti-aliasing.

    ``"area"`` averages boxes (2D/3D); ``"bicubic"`` uses ``torch.nn.functional.interpolate(antialias=True)``
    (2D only). The affine of a MetaTensor is rescaled so that world coordinates stay valid.

    Args:
        img: (C, *spatial) float image.
        factor: integer >= 1.
        mode: ``"area"`` or ``"bicubic"``.
        restore_size: interpolate the result back to the input size (bicubic in 2D, trilinear in 3D, no
            anti-aliasing needed when enlarging), giving a blurry image of the original shape.
    """
    x = _as_batch(img)
    spatial = list(x.shape[2:])
    if mode not in ("area", "bicubic"):
        raise ValueError(f"mode must be 'area' or 'bicubic', got {mode!r}.")
    if mode == "bicubic" and len(spatial) != 2:
        raise ValueError(f"bicubic downsampling supports 2 spatial dims only, got shape {tuple(img.shape)}.")
    if int(factor) != factor or factor < 1 or any(s < factor for s in spatial):
        raise ValueError(f"factor must be an integer in [1, min spatial size], got {factor} for {tuple(img.shape)}.")
    small = [s // int(factor) for s in spatial]
    if mode == "area":
        y = F.interpolate(x, size=small, mode="area")
    else:
        y = F.interpolate(x, size=small, mode="bicubic", align_corners=False, antialias=True)
    new_size = small
    if restore_size:
        up_mode = "bicubic" if len(spatial) == 2 else "trilinear"
        y = F.interpolate(y, size=spatial, mode=up_mode, align_corners=False)
        new_size = spatial
    out = convert_to_dst_type(y[0], img)[0]
    if isinstance(out, MetaTensor) and new_size != spatial:
        scale = to_affine_nd(out.affine.shape[0] - 1, scale_affine(spatial, new_size))  # 2D images carry 4x4
        affine = out.affine.to(torch.float64) @ torch.as_tensor(scale, dtype=torch.float64)
        out.meta = {**out.meta, "affine": affine.to(out.affine.dtype)}
    return out


def jpeg_compress(img: NdarrayOrTensor, quality: int) -> NdarrayOrTensor:
    """Round-trip a 2D gray (C=1) or RGB (C=3) image through 8-bit JPEG at ``quality`` with Pillow.

    Values are clipped to [0, 1] and quantised to 1/255 first, as a real 8-bit JPEG would be.

    Args:
        img: (1 or 3, H, W) float image in [0, 1].
        quality: Pillow JPEG quality, 1-95.
    """
    from PIL import Image

    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"JPEG needs a (1 or 3, H, W) image, got shape {tuple(img.shape)}.")
    if not 1 <= int(quality) <= 95:
        raise ValueError(f"quality must be in [1, 95], got {quality}.")
    x = convert_data_type(img, np.ndarray, dtype=np.float32)[0]
    u8 = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    pil = Image.fromarray(u8[0]) if u8.shape[0] == 1 else Image.fromarray(np.moveaxis(u8, 0, -1), mode="RGB")
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as dec:
        y = np.asarray(dec.convert("L" if u8.shape[0] == 1 else "RGB"), dtype=np.float32) / 255.0
    y = y[None] if y.ndim == 2 else np.moveaxis(y, -1, 0)
    return convert_to_dst_type(np.ascontiguousarray(y), img)[0]

"""Super-resolution pieces for the conditional GAN: an up-sampling generator, an up-sampling discriminator condition
and the two dictionary transforms the SR bundle config needs (see docs/enhancement.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import List  # noqa: F401  (TorchScript resolves annotations)

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, SpatialCrop
from torch import nn

from medical_denoise.networks.discriminator import ConditionalPatchDiscriminator
from medical_denoise.networks.generator import DenoiseUNet

__all__ = [
    "upsample",
    "SuperResolutionUNet",
    "UpsampledConditionDiscriminator",
    "ModCropd",
    "UpsampleToReferenced",
]


def upsample(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Interpolate a batch ``(N, C, *spatial)`` to ``size``: bicubic in 2D, trilinear in 3D (pixel-centre aligned).

    Args:
        x: the batch.
        size: the new spatial size.
    """
    if x.dim() == 4:
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


class SuperResolutionUNet(nn.Module):
    """Up-sample by an integer ``scale`` (bicubic/trilinear), then refine with a :class:`DenoiseUNet` at full size.

    ``(N, C, *lr)`` -> ``(N, C, *[scale * s for s in lr])`` for any input size, odd sizes included. With
    ``residual=True`` (recommended, as in VDSR) the output is ``bicubic - unet(bicubic)``: the U-Net only learns the
    high-frequency correction to the bicubic image. The convolutions of the U-Net's output block start at zero, so
    the untrained generator is exactly the bicubic baseline (the block's identity skip still passes gradients to
    its first convolution, unlike a zero scalar gain).

    Args:
        scale: integer up-sampling factor (2 or 4 are typical).
        spatial_dims, in_channels, out_channels, channels, strides, num_res_units, norm, act, dropout, residual:
            as in :class:`DenoiseUNet`.
    """

    def __init__(
        self,
        scale: int = 2,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int | None = None,
        channels: Sequence[int] = (32, 64, 128, 256),
        strides: Sequence[int] = (2, 2, 2),
        num_res_units: int = 2,
        norm: str | tuple | None = None,
        act: str | tuple = "PRELU",
        dropout: float = 0.0,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        self.scale = int(scale)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.refine = DenoiseUNet(
            spatial_dims, in_channels, out_channels, channels, strides, num_res_units, norm, act, dropout, residual
        )
        if residual:
            for m in self.refine.unet.model[-1].modules():  # MONAI UNet: the top up-sampling block is last
                if isinstance(m, nn.modules.conv._ConvNd):
                    nn.init.zeros_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected (N, {self.in_channels}, {self.spatial_dims} spatial dims), got input of shape {x.shape}"
            )
        size: list[int] = [int(s) * self.scale for s in x.shape[2:]]
        return self.refine(upsample(x, size))


class UpsampledConditionDiscriminator(ConditionalPatchDiscriminator):
    """:class:`ConditionalPatchDiscriminator` whose low-resolution condition is up-sampled to the candidate's size.

    The pair (bicubic-up-sampled input, candidate) is judged at high resolution, so the discriminator can tell
    whether a candidate is consistent with its low-resolution input. Same-size conditions pass through unchanged.

    Args:
        spatial_dims, image_channels, channels, num_layers_d, norm, kwargs: as in
            :class:`ConditionalPatchDiscriminator`.
    """

    def forward(self, condition: torch.Tensor, candidate: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        if condition.shape[:2] != candidate.shape[:2] or condition.dim() != candidate.dim():
            raise ValueError(f"condition {tuple(condition.shape)} and candidate {tuple(candidate.shape)} differ")
        if condition.shape[2:] != candidate.shape[2:]:
            if any(c > s for c, s in zip(condition.shape[2:], candidate.shape[2:])):
                raise ValueError(
                    f"condition {tuple(condition.shape)} is larger than candidate {tuple(candidate.shape)}"
                )
            condition = upsample(condition, list(candidate.shape[2:]))
        return super().forward(condition, candidate)


class ModCropd(MapTransform):
    """Crop every spatial size down to a multiple of ``multiple`` (keeping the first voxels), as SR needs.

    A high-resolution image of size ``scale * k`` then degrades to exactly ``k`` pixels and the generator's output
    matches it again. MetaTensor affines stay valid (the crop starts at voxel 0).

    Args:
        keys: keys of the images to crop, channel-first.
        multiple: the SR scale.
        allow_missing_keys: don't raise if a key is missing.
    """

    def __init__(self, keys: KeysCollection, multiple: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if int(multiple) != multiple or multiple < 1:
            raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
        self.multiple = int(multiple)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            spatial = list(d[key].shape[1:])
            end = [s // self.multiple * self.multiple for s in spatial]
            if min(end) == 0:
                raise ValueError(f"ModCropd: {key!r} of shape {tuple(d[key].shape)} is smaller than {self.multiple}")
            d[key] = SpatialCrop(roi_start=[0] * len(end), roi_end=end)(d[key])
        return d


class UpsampleToReferenced(MapTransform):
    """Interpolate channel-first images to the spatial size of ``ref_key`` (bicubic in 2D, trilinear in 3D).

    Used after validation to show the low-resolution input beside prediction and label in the triplet pictures.

    Args:
        keys: keys of the images to resize.
        ref_key: key of the image whose size to match.
        allow_missing_keys: don't raise if a key is missing.
    """

    def __init__(self, keys: KeysCollection, ref_key: str = "label", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key

    def __call__(self, data):
        d = dict(data)
        size = list(d[self.ref_key].shape[1:])
        for key in self.key_iterator(d):
            img = d[key]
            if list(img.shape[1:]) != size:
                x = torch.as_tensor(img, dtype=torch.float32)
                x = x.as_tensor() if hasattr(x, "as_tensor") else x
                d[key] = upsample(x[None], size)[0]
        return d

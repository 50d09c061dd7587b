"""Conditional PatchGAN discriminator."""

from __future__ import annotations

import torch
from monai.networks.nets import PatchDiscriminator


class ConditionalPatchDiscriminator(PatchDiscriminator):
    """MONAI ``PatchDiscriminator`` that judges a candidate image *given* its degraded input.

    The condition and candidate are concatenated on channels, so the discriminator learns whether the pair is
    consistent (pix2pix-style), not only whether the candidate looks clean.

    Args:
        spatial_dims: 2 or 3.
        image_channels: channels of the candidate (clean or generated) image.
        condition_channels: channels of the degraded input it is judged against (default ``image_channels``;
            ``3 * image_channels`` for a 2.5D stack of neighbouring slices).
        channels: feature channels of the first layer (doubled at each further layer).
        num_layers_d: number of strided layers; sets the receptive field of one output patch.
        norm: MONAI norm name.
        kwargs: further ``PatchDiscriminator`` arguments.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        image_channels: int = 3,
        condition_channels: int | None = None,
        channels: int = 64,
        num_layers_d: int = 3,
        norm: str | tuple = "BATCH",
        **kwargs,
    ) -> None:
        super().__init__(
            spatial_dims=spatial_dims,
            num_layers_d=num_layers_d,
            channels=channels,
            in_channels=image_channels + (image_channels if condition_channels is None else condition_channels),
            out_channels=1,
            norm=norm,
            **kwargs,
        )

    def forward(self, condition: torch.Tensor, candidate: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        if condition.shape[0] != candidate.shape[0] or condition.shape[2:] != candidate.shape[2:]:
            raise ValueError(f"condition {tuple(condition.shape)} and candidate {tuple(candidate.shape)} differ")
        return super().forward(torch.cat([condition, candidate], dim=1))

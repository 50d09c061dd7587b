"""U-Net generator built from MONAI blocks, usable on images of any size."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.nets import UNet
from torch import nn


class DenoiseUNet(nn.Module):
    """MONAI ``UNet`` wrapped for image restoration.

    Whole images of any size are padded (replicate) to a multiple of the total stride and cropped back, so
    inference needs no tiling. Normalisation defaults to none: instance/group norm compute statistics per image,
    and statistics learned on small training crops do not transfer to whole images.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the degraded input.
        out_channels: channels of the restored output (defaults to ``in_channels``).
        channels: feature channels per level.
        strides: down-sampling stride between levels (``len(channels) - 1`` values).
        num_res_units: residual units per block.
        norm: MONAI norm name (e.g. ``"batch"``), or None for no normalisation.
        act: MONAI activation name.
        dropout: dropout probability.
        residual: if True the U-Net predicts the noise and the output is ``input - noise`` (needs
            ``in_channels == out_channels``); otherwise it predicts the clean image directly.
    """

    def __init__(
        self,
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
        out_channels = in_channels if out_channels is None else out_channels
        if residual and in_channels != out_channels:
            raise ValueError(f"residual learning needs in_channels == out_channels, got {in_channels}, {out_channels}")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.residual = residual
        self.multiple = math.prod(strides)
        self.unet = UNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=channels,
            strides=strides,
            num_res_units=num_res_units,
            norm=norm,
            act=act,
            dropout=dropout,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        if len(spatial) != self.spatial_dims:
            raise ValueError(f"expected {self.spatial_dims} spatial dims, got input of shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} channels, got input of shape {tuple(x.shape)}")
        pad = [(-s) % self.multiple for s in spatial]
        # F.pad takes (last_lo, last_hi, ..., first_lo, first_hi)
        padding = [p for size in reversed(pad) for p in (0, size)]
        xp = F.pad(x, padding, mode="replicate") if any(pad) else x
        y = self.unet(xp)
        if self.residual:
            y = xp - y
        crop = (slice(None), slice(None)) + tuple(slice(0, s) for s in spatial)
        return y[crop]


def load_generator(network: nn.Module, checkpoint: str | Path, key: str | None = None) -> nn.Module:
    """Load generator weights from a checkpoint with ``weights_only=True`` (safe against pickled code).

    Args:
        network: the generator to fill.
        checkpoint: path to a ``.pt`` file holding a state dict, or a dict of state dicts (training checkpoint).
        key: entry of a training checkpoint holding the generator (default: ``"generator"`` when present).
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise ValueError(f"cannot read checkpoint {path}: {e}") from e
    key = key or ("generator" if "generator" in state else None)
    if key is not None:
        state = state[key]
    network.load_state_dict(state)
    return network

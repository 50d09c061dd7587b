"""U-Net generator built from MONAI blocks, usable on images of any size."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import List  # noqa: F401  (TorchScript resolves annotations)

import torch
import torch.nn.functional as F
from monai.networks.nets import UNet
from torch import nn

from medical_denoise.noise.estimate import wavelet_noise_std


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
        residual: if True the U-Net predicts the noise and the output is ``input - noise``; by default it
            predicts the clean image directly, which trained faster on photographs
            (``benchmarks/residual_vs_direct.py``). With ``in_channels = (2k + 1) * out_channels`` (a 2.5D stack
            of neighbouring slices) the noise is subtracted from the centre ``out_channels`` block.
        noise_level_input: take the noise std as an extra constant input channel (FFDNet-style); without it in
            the input, the std is estimated from the centre block (:func:`wavelet_noise_std`).
        level_scale: factor on the level channel (the std in the network range is small).
        change_limit: in eval mode, no output pixel moves further from the input's centre block than
            ``change_limit`` times the noise std (told, or estimated as above) plus ``change_floor``: noise rarely
            exceeds 4 std, so a denoiser has no reason to move a pixel further, and a noise-free input (std 0) comes
            back unchanged even where the network is unsure of it (a test pattern, burnt-in text). Needs
            ``out_channels`` equal to the centre block. None: no limit. Training is never limited (the
            network learns the whole change).
        change_floor: the limit's allowance at zero noise, in the network range (0.5 / 255: half an 8-bit step).
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
        residual: bool = False,
        noise_level_input: bool = False,
        level_scale: float = 10.0,
        change_limit: float | None = None,
        change_floor: float = 0.5 / 255.0,
    ) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        if residual and (in_channels % out_channels or (in_channels // out_channels) % 2 == 0):
            raise ValueError(
                "residual learning needs in_channels = (2k + 1) * out_channels (the centre block is the image), "
                f"got {in_channels}, {out_channels}"
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.residual = residual
        self.noise_level_input = noise_level_input
        self.level_scale = float(level_scale)
        if change_limit is not None and not change_limit > 0 or change_floor < 0:
            raise ValueError(
                f"change_limit must be > 0 (or None) and change_floor >= 0, got {change_limit}, {change_floor}"
            )
        # TorchScript needs one type: a limit <= 0 means none
        self.change_limit = 0.0 if change_limit is None else float(change_limit)
        self.change_floor = float(change_floor)
        # first input channel of the centre block: the image a residual output refers to
        self.centre = (in_channels // out_channels // 2) * out_channels
        self.multiple = math.prod(strides)
        self.unet = UNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels + int(noise_level_input),
            out_channels=out_channels,
            channels=channels,
            strides=strides,
            num_res_units=num_res_units,
            norm=norm,
            act=act,
            dropout=dropout,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # written in TorchScript's subset so `monai.bundle ckpt_export` can script it
        accepted = self.in_channels + int(self.noise_level_input)
        if x.dim() != self.spatial_dims + 2 or not (x.shape[1] == self.in_channels or x.shape[1] == accepted):
            raise ValueError(
                f"expected (N, {self.in_channels}, {self.spatial_dims} spatial dims), got input of shape {x.shape}"
            )
        spatial: List[int] = list(x.shape[2:])
        image = x[:, : self.in_channels]
        limited = self.change_limit > 0 and not self.training
        level_map = self._level_map(x) if self.noise_level_input or limited else image[:, :1]
        if self.noise_level_input:
            x = torch.cat([image, level_map * self.level_scale], dim=1)
        padding: List[int] = []
        for i in range(len(spatial) - 1, -1, -1):  # F.pad lists the last dimension first
            padding += [0, (self.multiple - spatial[i] % self.multiple) % self.multiple]
        xp = F.pad(x, padding, mode="replicate") if sum(padding) > 0 else x
        y = self.unet(xp)
        if self.residual:
            y = xp[:, self.centre : self.centre + self.out_channels] - y
        if self.spatial_dims == 2:
            y = y[:, :, : spatial[0], : spatial[1]]
        else:
            y = y[:, :, : spatial[0], : spatial[1], : spatial[2]]
        if limited:
            centre = image[:, self.centre : self.centre + self.out_channels]
            limit = level_map * self.change_limit + self.change_floor
            y = centre + torch.maximum(torch.minimum(y - centre, limit), -limit)
        return y

    def _level_map(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(N, 1, *spatial)`` noise std map: the input's level channel, or estimated on the centre block."""
        if x.shape[1] > self.in_channels:
            return x[:, self.in_channels :]
        level = wavelet_noise_std(x[:, self.centre : self.centre + self.out_channels]).to(x.dtype)
        shape: List[int] = [x.shape[0], 1] + list(x.shape[2:])
        ones: List[int] = [x.shape[0]] + [1] * (x.dim() - 1)
        return level.reshape(ones).expand(shape)


def widen_input_channels(state: dict, network: nn.Module) -> dict:
    """``state`` with zero weights added for input channels ``network`` has and the state lacks.

    A tensor whose shape differs from the network's only in dimension 1 (a first convolution's input channels), and
    is smaller there, is zero-padded at the end of it; the network then computes what the old one did and the new
    channels start without effect (fine-tuning a blind model into a noise-level-conditioned one).

    Args:
        state: a generator state dict.
        network: the generator it should fit.
    """
    target = network.state_dict()
    out = dict(state)
    for key, value in state.items():
        want = target.get(key)
        if want is None or value.dim() < 2 or want.dim() != value.dim() or want.shape == value.shape:
            continue
        if want.shape[0] == value.shape[0] and want.shape[2:] == value.shape[2:] and want.shape[1] > value.shape[1]:
            pad = value.new_zeros((value.shape[0], want.shape[1] - value.shape[1], *value.shape[2:]))
            out[key] = torch.cat([value, pad], dim=1)
    return out


def read_generator_state(checkpoint: str | Path, key: str | None = None, map_location=None) -> dict:
    """A generator state dict from a checkpoint, read with ``weights_only=True`` (safe against pickled code).

    Args:
        checkpoint: path to a ``.pt`` file holding a state dict, or a dict of state dicts (training checkpoint).
        key: entry of a training checkpoint holding the generator (default: ``"generator"`` when present).
        map_location: ``torch.load`` map location (default: the CPU).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be read as a weights-only checkpoint.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise ValueError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(state, Mapping):
        raise ValueError(
            f"{path}: holds a {type(state).__name__}, not a state dict; expected a generator state dict or a training "
            "checkpoint (a dict with a 'generator' entry)."
        )
    key = key or ("generator" if "generator" in state else None)
    if key is not None and not isinstance(state.get(key), Mapping):
        raise ValueError(f"{path}: no generator state dict under {key!r} (entries: {', '.join(map(str, state))}).")
    return state[key] if key is not None else state


def load_generator(network: nn.Module, checkpoint: str | Path, key: str | None = None) -> nn.Module:
    """Load generator weights from a checkpoint with ``weights_only=True`` (see :func:`read_generator_state`).

    Args:
        network: the generator to fill.
        checkpoint: path to a ``.pt`` file holding a state dict, or a dict of state dicts (training checkpoint).
        key: entry of a training checkpoint holding the generator (default: ``"generator"`` when present).
    """
    network.load_state_dict(read_generator_state(checkpoint, key))
    return network

"""Pixel losses for the generator."""

from __future__ import annotations

import torch
from monai.losses import SSIMLoss
from torch import nn


class L1SSIMLoss(nn.Module):
    """``(1 - ssim_weight) * L1 + ssim_weight * (1 - SSIM)``: L1 keeps intensities right, SSIM keeps structure.

    Args:
        spatial_dims: 2 or 3.
        ssim_weight: share of the SSIM term in [0, 1]; 0 is plain L1.
        data_range: intensity range of the images.
    """

    def __init__(self, spatial_dims: int = 2, ssim_weight: float = 0.2, data_range: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= ssim_weight <= 1.0:
            raise ValueError(f"ssim_weight must be in [0, 1], got {ssim_weight}")
        self.ssim_weight = ssim_weight
        self.ssim = SSIMLoss(spatial_dims=spatial_dims, data_range=data_range)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        l1 = torch.nn.functional.l1_loss(pred, target)
        if self.ssim_weight == 0:
            return l1
        return (1 - self.ssim_weight) * l1 + self.ssim_weight * self.ssim(pred, target)

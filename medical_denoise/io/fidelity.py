"""Never worse than the input where the input is certain: constant regions come back unchanged.

Air outside a CT reconstruction circle (-3024 HU), zero background of MR and CT angiography, and the black
border of an ultrasound sector hold one exact value over many pixels. Measured noise never does, so such a
region carries no noise to remove, and a network can only add haze to it. :class:`FidelityGuard` returns the
input there; the denoising itself (and the fidelity of noise-free inputs elsewhere) is the trained residual
model's job, not this guard's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["FidelityGuard"]


class FidelityGuard:
    """Copy the input into the output wherever the input is exactly constant over a ``size`` x ``size`` window.

    A pixel is kept when some ``size`` x ``size`` in-plane window containing it is exactly constant, or when it
    is joined to such a pixel through 4-neighbours of the same value: the whole constant region keeps its value,
    its edges and its thin parts included (a 1-pixel sliver of -3024 HU padding where the reconstruction circle
    meets the image border), while an isolated equal pair of noisy pixels does not. Only the in-plane axes are
    looked at: each slice is judged alone.

    Args:
        size: window side in pixels (odd, >= 3). 3 keeps the most; 5 ignores thin constant lines.

    Example::

        guard = FidelityGuard(3)
        y = guard(x_centre, network(x_slab))   # (N, C, H, W) each; y equals x_centre on constant regions
    """

    def __init__(self, size: int = 3) -> None:
        if int(size) != size or size < 3 or size % 2 == 0:
            raise ValueError(f"FidelityGuard size must be an odd integer >= 3, got {size!r}.")
        self.size = int(size)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Bool ``(N, C, H, W)``: True on the constant regions of ``x`` (see the class docstring)."""
        if x.ndim != 4:
            raise ValueError(f"FidelityGuard expects (N, C, H, W), got shape {tuple(x.shape)}.")
        k = self.size
        xf = x.float()
        # windows are fully inside the image: a region touching the border is judged on its own pixels
        if x.shape[-2] < k or x.shape[-1] < k:
            return torch.zeros_like(x, dtype=torch.bool)
        high = F.max_pool2d(xf, k, stride=1)
        low = -F.max_pool2d(-xf, k, stride=1)
        flat = (high == low).float()  # (N, C, H - k + 1, W - k + 1): window starting here is constant
        # a pixel is kept when any constant window covers it: the windows starting at most k - 1 before it
        covered = F.max_pool2d(F.pad(flat, (k - 1,) * 4), k, stride=1).bool()
        if not covered.any():
            return covered
        return torch.from_numpy(_same_value_regions(x.detach().cpu().numpy(), covered.cpu().numpy())).to(x.device)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y`` with the pixels of constant regions of ``x`` replaced by ``x`` (same shape, same dtype as ``y``).

        Args:
            x: the network's input image (the centre slice for a 2.5D model), ``(N, C, H, W)``.
            y: the network's output for it, same shape.
        """
        if x.shape != y.shape:
            raise ValueError(f"FidelityGuard: input {tuple(x.shape)} and output {tuple(y.shape)} differ.")
        keep = self.mask(x)
        return torch.where(keep, x.to(y.dtype), y)


def _same_value_regions(values: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Pixels 4-connected to a seed through neighbours of exactly the same value (per image plane)."""
    index = np.arange(values.size).reshape(values.shape)
    right = values[..., :, 1:] == values[..., :, :-1]
    down = values[..., 1:, :] == values[..., :-1, :]
    heads = np.concatenate([index[..., :, :-1][right], index[..., :-1, :][down]])
    tails = np.concatenate([index[..., :, 1:][right], index[..., 1:, :][down]])
    graph = coo_matrix((np.ones(heads.size, dtype=np.int8), (heads, tails)), shape=(values.size, values.size))
    _, labels = connected_components(graph, directed=False)
    return np.isin(labels, np.unique(labels[seeds.reshape(-1)])).reshape(values.shape)

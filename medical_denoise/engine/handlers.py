"""Handlers that show training progress as pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import decollate_batch
from monai.utils.enums import CommonKeys as Keys
from PIL import Image

from medical_denoise.atomic import atomic_write
from medical_denoise.engine.trainer import PIXEL_LOSS


def loss_summary(output: Any) -> dict[str, float]:
    """Pick the scalar losses from a (possibly decollated) ``ConditionalGanTrainer`` output, for logging."""
    first = output[0] if isinstance(output, (list, tuple)) else output
    names = {
        Keys.LOSS: "g_loss",
        "discriminator_loss": "d_loss",
        PIXEL_LOSS: "pixel_loss",
        "generator_loss": "adv_loss",
    }
    return {short: float(first[key]) for key, short in names.items() if key in first}


def to_display(image: torch.Tensor) -> np.ndarray:
    """(C, W, H[, D]) tensor in MONAI's reader orientation -> (H, W, 3) uint8 for PNG/TensorBoard.

    MONAI's image readers put the first spatial axis along width; transposing back shows the picture upright.
    Volumes show their middle slice.
    """
    arr = image.detach().float().cpu().numpy()
    if arr.ndim == 4:
        arr = arr[..., arr.shape[-1] // 2]
    arr = np.clip(arr, 0.0, 1.0).transpose(2, 1, 0)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return (arr[..., :3] * 255.0 + 0.5).astype(np.uint8)


def triplet_grid(samples: list[dict], max_rows: int) -> np.ndarray:
    """Rows of [degraded | restored | clean] for up to ``max_rows`` samples, padded to a common size."""
    rows = []
    for s in samples[:max_rows]:
        degraded, restored = s[Keys.IMAGE], s[Keys.PRED]
        if degraded.shape[0] != restored.shape[0]:  # a 2.5D stack of slices: show its centre slice
            first = (degraded.shape[0] // restored.shape[0] // 2) * restored.shape[0]
            degraded = degraded[first : first + restored.shape[0]]
        tiles = [to_display(t) for t in (degraded, restored, s[Keys.LABEL])]
        rows.append(np.concatenate(tiles, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)


def save_png_atomic(array: np.ndarray, path: Path) -> None:
    """Write a PNG through a temporary file so readers never see a half-written picture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: Image.fromarray(array).save(f, format="PNG"), binary=True)


class TripletImageHandler:
    """Saves ``combined_epoch_N.png`` (degraded | restored | clean) and logs it to TensorBoard.

    Attach to the validation evaluator: the first batch of every ``interval``-th validation run is drawn, so the
    same images show how the model improves over epochs.

    Args:
        output_dir: folder for the PNGs.
        interval: draw every ``interval`` epochs.
        max_rows: samples per grid.
        summary_writer: a ``SummaryWriter`` (or None to skip TensorBoard).
        tag: TensorBoard image tag.
    """

    def __init__(
        self,
        output_dir: str | Path,
        interval: int = 1,
        max_rows: int = 4,
        summary_writer: Any | None = None,
        tag: str = "val/degraded_restored_clean",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.interval = interval
        self.max_rows = max_rows
        self.summary_writer = summary_writer
        self.tag = tag

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.ITERATION_COMPLETED(event_filter=self._draws), self)

    def _draws(self, engine: Engine, iteration: int) -> bool:
        """The first batch of every ``interval``-th epoch (an evaluator restarts its count at every validation)."""
        return (iteration - 1) % engine.state.epoch_length == 0 and engine.state.epoch % self.interval == 0

    def __call__(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        output = engine.state.output
        samples = output if isinstance(output, list) else decollate_batch(output)
        grid = triplet_grid(samples, self.max_rows)
        save_png_atomic(grid, self.output_dir / f"combined_epoch_{epoch}.png")
        if self.summary_writer is not None:
            self.summary_writer.add_image(self.tag, grid, epoch, dataformats="HWC")
            self.summary_writer.flush()

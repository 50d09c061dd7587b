"""Resuming interrupted training and stopping broken runs."""

from __future__ import annotations

import math
import re
from pathlib import Path

from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

from medical_denoise.engine.handlers import loss_summary


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    """The interval checkpoint with the highest epoch in ``ckpt_dir`` (``*_epoch=N.pt``), or None."""
    found = []
    for path in Path(ckpt_dir).glob("*epoch=*.pt"):
        if m := re.search(r"epoch=(\d+)\.pt$", path.name):
            found.append((int(m.group(1)), path))
    return max(found)[1] if found else None


def resume_handlers(
    resume_from: str | Path | None, ckpt_dir: str | Path, load_dict: dict, map_location=None
) -> list[CheckpointLoader]:
    """Handlers that restore a training run, for a trainer's handler list.

    Args:
        resume_from: None/"" (fresh run), "latest" (newest interval checkpoint in ``ckpt_dir``) or a path.
        ckpt_dir: folder of interval checkpoints.
        load_dict: objects to restore (networks, optimizers, schedulers, the trainer itself).
        map_location: ``torch.load`` map location.
    """
    if resume_from in (None, "", False, "None", "null"):
        return []
    path = latest_checkpoint(ckpt_dir) if str(resume_from) == "latest" else Path(resume_from)
    if path is None:
        raise FileNotFoundError(f"resume_from='latest' but no '*epoch=N.pt' checkpoint in {ckpt_dir}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint to resume from not found: {path}")
    return [CheckpointLoader(load_path=str(path), load_dict=load_dict, map_location=map_location)]


class StopOnNonFiniteLoss:
    """Stops training with a clear error as soon as a loss is NaN or infinite.

    Raising (rather than ignite's silent ``TerminateOnNan``) makes the run exit non-zero; interval checkpoints
    are only written at the end of complete epochs, so the newest one on disk still holds finite weights.
    """

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        losses = loss_summary(engine.state.output)
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if bad:
            raise FloatingPointError(
                f"non-finite loss at epoch {engine.state.epoch}, iteration {engine.state.iteration}: {bad}; "
                "training stopped, the last complete-epoch checkpoint is intact (try a lower learning rate)"
            )

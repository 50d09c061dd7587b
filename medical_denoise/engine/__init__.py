from __future__ import annotations

from .checkpoint import AtomicCheckpointSaver
from .handlers import TripletImageHandler, loss_summary, triplet_grid
from .resume import StopOnNonFiniteLoss, latest_checkpoint, resume_handlers
from .trainer import ConditionalGanTrainer

__all__ = [
    "AtomicCheckpointSaver",
    "ConditionalGanTrainer",
    "StopOnNonFiniteLoss",
    "TripletImageHandler",
    "latest_checkpoint",
    "loss_summary",
    "resume_handlers",
    "triplet_grid",
]

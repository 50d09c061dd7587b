from __future__ import annotations

from .checkpoint import AtomicCheckpointSaver
from .losses import L1SSIMLoss
from .handlers import TripletImageHandler, loss_summary, triplet_grid
from .resume import EpochSeeder, StopOnNonFiniteLoss, init_handlers, latest_checkpoint, resume_handlers
from .trainer import ConditionalGanTrainer

__all__ = [
    "AtomicCheckpointSaver",
    "ConditionalGanTrainer",
    "EpochSeeder",
    "L1SSIMLoss",
    "StopOnNonFiniteLoss",
    "TripletImageHandler",
    "latest_checkpoint",
    "loss_summary",
    "init_handlers",
    "resume_handlers",
    "triplet_grid",
]

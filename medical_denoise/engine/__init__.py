from __future__ import annotations

from .budget import TimeBudget, fit_images_per_batch
from .checkpoint import AtomicCheckpointSaver
from .handlers import TripletImageHandler, loss_summary, triplet_grid
from .losses import L1SSIMLoss
from .resume import EpochSeeder, StopOnNonFiniteLoss, init_handlers, latest_checkpoint, resume_handlers
from .run_guard import RunFolderError, RunFolderGuard
from .trainer import ConditionalGanTrainer

__all__ = [
    "AtomicCheckpointSaver",
    "ConditionalGanTrainer",
    "EpochSeeder",
    "L1SSIMLoss",
    "RunFolderError",
    "RunFolderGuard",
    "StopOnNonFiniteLoss",
    "TimeBudget",
    "TripletImageHandler",
    "fit_images_per_batch",
    "init_handlers",
    "latest_checkpoint",
    "loss_summary",
    "resume_handlers",
    "triplet_grid",
]

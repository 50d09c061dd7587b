"""Crash-safe checkpoints."""

from __future__ import annotations

from monai.handlers import CheckpointSaver


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI ``CheckpointSaver`` whose files are written to a temporary file and renamed into place.

    MONAI turns ignite's atomic saving off (to keep group-read permissions, which ignite now restores itself);
    a run killed mid-save would then leave a truncated ``.pt``. Arguments are those of ``CheckpointSaver``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for ckpt in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if ckpt is not None:
                ckpt.save_handler._atomic = True

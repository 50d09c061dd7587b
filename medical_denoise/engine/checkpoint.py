"""Crash-safe checkpoints that carry their bookkeeping across resumed runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch.distributed as dist
from ignite.engine import Engine
from ignite.handlers import Checkpoint
from monai.handlers import CheckpointSaver

from medical_denoise.atomic import atomic_write

__all__ = ["KEY_METRIC_STATE", "AtomicCheckpointSaver", "global_rank"]

KEY_METRIC_STATE = "key_metric.json"  # in save_dir: the best score(s) behind the key-metric file(s)


def global_rank() -> int:
    """This process's rank in ``torch.distributed`` (0 when not distributed).

    Not ``ignite.distributed.get_rank``: its first call in a process runs a collective, which hangs when only
    rank 0 asks (multi_gpu_train.yaml's ``initialize`` has the other ranks waiting at a barrier then).
    """
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _replace_saved(ckpt: Checkpoint, items: list[tuple[float, str]]) -> None:
    """Set ignite's list of saved ``(priority, filename)`` items through its public state dict."""
    state = ckpt.state_dict()
    (key,) = state  # "_saved" (ignite >= 0.4.6) or "saved"
    state[key] = sorted(items, key=lambda it: it[0])
    ckpt.load_state_dict(state)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI ``CheckpointSaver`` whose files are written atomically and whose bookkeeping survives a resume.

    Atomic: MONAI turns ignite's atomic saving off (to keep group-read permissions, which ignite now restores
    itself); a run killed mid-save would then leave a truncated ``.pt``.

    Resumable: a new process starts with empty ignite bookkeeping, so after ``--resume_from`` the first
    validation replaced the best ``model.pt`` whatever its score, and the earlier process's interval checkpoints
    were never pruned. Here

    - the key-metric saver writes its saved scores to ``save_dir/key_metric.json`` next to the file (which stays a
      plain state dict, as inference loads it) and reads them back when attached; the evaluator's
      ``best_metric``/``best_metric_epoch`` are restored too, so its log names the true best;
    - the interval saver, at its first save, adopts the ``{prefix}_{name}_epoch=N.pt`` files already in
      ``save_dir``: it keeps the newest ``n_saved`` of those not after the current epoch and deletes the rest,
      including those after it (a run resumed from an older checkpoint replaces the later ones).

    This assumes ``save_dir`` holds only this run's files, which ``RunFolderGuard`` ensures.

    Args:
        args: positional arguments of ``CheckpointSaver``.
        resume_state: restore and keep the bookkeeping described above (False: MONAI's behaviour).
        kwargs: keyword arguments of ``CheckpointSaver``.
    """

    def __init__(self, *args, resume_state: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for ckpt in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if ckpt is not None:
                ckpt.save_handler._atomic = True
        self.resume_state = resume_state
        self.key_metric_state_path = Path(self.save_dir) / KEY_METRIC_STATE
        self._interval_adopted = False

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        if self.resume_state and self._key_metric_checkpoint is not None:
            self._restore_key_metric(engine)

    def metrics_completed(self, engine: Engine) -> None:
        """Save the key-metric file if the score improved, and record the scores next to it."""
        before = self._key_metric_checkpoint.state_dict()
        super().metrics_completed(engine)
        after = self._key_metric_checkpoint.state_dict()
        if self.resume_state and after != before and global_rank() == 0:
            (saved,) = after.values()
            state = {
                "saved": [[p, f] for p, f in saved],
                "best_metric": getattr(engine.state, "best_metric", None),
                "best_metric_epoch": getattr(engine.state, "best_metric_epoch", None),
            }
            atomic_write(self.key_metric_state_path, lambda f: json.dump(state, f, indent=1))

    def interval_completed(self, engine: Engine) -> None:
        """Save an interval checkpoint; the first time, adopt (and prune) the checkpoints already on disk."""
        if self.resume_state and not self._interval_adopted:
            self._adopt_interval_files(engine.state.epoch if self.epoch_level else engine.state.iteration)
            self._interval_adopted = True
        super().interval_completed(engine)

    def _restore_key_metric(self, engine: Engine) -> None:
        path = self.key_metric_state_path
        if not path.is_file():
            return
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            saved = [(float(p), str(f)) for p, f in state["saved"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.logger.warning(f"{path}: unreadable ({e}); the next validation sets the best score afresh")
            return
        fixed = self._key_metric_checkpoint.save_handler.filename  # MONAI's fixed name (model.pt), if any
        saved = [(p, f) for p, f in saved if (Path(self.save_dir) / (fixed or f)).is_file()]
        if not saved:
            return
        _replace_saved(self._key_metric_checkpoint, saved)
        if state.get("best_metric_epoch") not in (None, -1) and hasattr(engine.state, "best_metric"):
            engine.state.best_metric = state["best_metric"]
            engine.state.best_metric_epoch = state["best_metric_epoch"]
        self.logger.info(f"resumed key metric tracking from {path}: best {saved[-1][0]:.4f}")

    def _interval_files(self) -> list[tuple[int, str]]:
        ckpt = self._interval_checkpoint
        name = next(iter(self.save_dict)) if len(self.save_dict) == 1 else "checkpoint"
        base = f"{ckpt.filename_prefix}_{name}" if ckpt.filename_prefix else name
        pattern = re.compile(rf"^{re.escape(base)}_{re.escape(ckpt.score_name)}=(\d+)\.{re.escape(ckpt.ext)}$")
        folder = Path(self.save_dir)
        found = [(int(m.group(1)), p.name) for p in folder.glob("*") if (m := pattern.match(p.name))]
        return sorted(found)

    def _adopt_interval_files(self, step: int) -> None:
        ckpt = self._interval_checkpoint
        on_disk = self._interval_files()
        earlier = [it for it in on_disk if it[0] <= step]
        n_keep = len(earlier) if ckpt.n_saved is None else ckpt.n_saved
        keep = earlier[-n_keep:] if n_keep else []
        for n, filename in on_disk:
            if (n, filename) not in keep:
                ckpt.save_handler.remove(filename)  # rank 0 only, like the saving
                why = "superseded by this resumed run" if n > step else f"beyond n_saved={ckpt.n_saved}"
                self.logger.info(f"deleted checkpoint {filename} ({why})")
        if keep:
            _replace_saved(ckpt, keep)

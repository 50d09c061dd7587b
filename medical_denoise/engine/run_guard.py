"""One training run per output folder: a used folder is refused, and a folder is locked while a run trains in it.

Without this, a second ``training`` into the same ``output_dir`` replaced the first run's best ``model.pt`` with
worse weights, and ``--resume_from latest`` then resumed whichever run had left the newest checkpoint.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from medical_denoise.engine.checkpoint import KEY_METRIC_STATE, global_rank

__all__ = ["RunFolderError", "RunFolderGuard"]

logger = logging.getLogger(__name__)

_UNSET = (None, "", False, "None", "null")  # how configs and the command line spell "no checkpoint"
# lock files this process holds through a live guard; any other lock naming this pid is left over from an earlier
# run in this interpreter that ended without releasing it (see RunFolderGuard.exception_raised)
_HELD: set[Path] = set()


class RunFolderError(FileExistsError):
    """An output folder holds another training run, or another training is writing to it (one-line message)."""


def _as_bool(value: Any, name: str) -> bool:
    """``True``/``False`` from a config or command-line value (``--overwrite_run true`` arrives as a string)."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no", "none", "null", ""):
            return False
        raise ValueError(f"{name}={value!r}: expected True or False")
    return bool(value)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except (OverflowError, ValueError):
        return False
    return True


class RunFolderGuard:
    """Keeps one training run per output folder.

    :meth:`acquire` (the first step of ``training``, before the datalist is written) does, in order:

    1. takes ``<output_dir>/training.lock`` (pid, host, start time). A lock of a live process refuses the run;
       a lock of a dead process on this host (a killed run) is taken over with a warning.
    2. refuses a folder that holds another run (interval checkpoints, ``model.pt``, the datalist) unless
       ``resume_from`` is set, or ``overwrite_run`` is true: then that run's checkpoints, datalist, TensorBoard
       events and pictures are deleted first, so nothing of it is resumed or mixed into the new logs.

    Attached to the trainer, the lock is released on ``COMPLETED`` and ``EXCEPTION_RAISED``; an ``atexit`` hook
    covers the rest (ignite calls ``EXCEPTION_RAISED`` handlers only until the first re-raises, and MONAI's
    ``StatsHandler`` re-raises). Only rank 0 of a distributed run checks, locks and deletes (it alone writes).
    Files other than the run's own are never deleted, and a folder of unrelated files is not "used".

    Usage example::

        guard = RunFolderGuard("runs/train", resume_from=None, overwrite_run=False)
        guard.acquire()  # before anything writes into runs/train
        guard.attach(trainer)
        trainer.run()

    Args:
        output_dir: the run's folder.
        ckpt_dir: its checkpoint folder (default ``<output_dir>/checkpoints``).
        datalist_path: the datalist JSON the run writes (default ``<output_dir>/datalist.json``); only one inside
            ``output_dir`` belongs to a run.
        resume_from: the run's ``resume_from`` (None/"": a fresh run); a resumed run may use a used folder.
        overwrite_run: replace the run found in the folder.
        init_weights: the run's ``init_weights``; refused if ``overwrite_run`` would delete it.
        log_patterns: globs, relative to ``output_dir``, of further files of a run that ``overwrite_run`` deletes.
        lock_name: name of the lock file in ``output_dir``.

    Raises:
        RunFolderError: from :meth:`acquire`, when the folder is used or locked.
        ValueError: from :meth:`acquire`, for ``resume_from`` together with ``overwrite_run``.
    """

    def __init__(
        self,
        output_dir: str | Path,
        ckpt_dir: str | Path | None = None,
        datalist_path: str | Path | None = None,
        resume_from: str | Path | None = None,
        overwrite_run: bool | str = False,
        init_weights: str | Path | None = None,
        log_patterns: Sequence[str] = ("tensorboard/events.out.tfevents.*", "images/combined_epoch_*.png"),
        lock_name: str = "training.lock",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.ckpt_dir = Path(ckpt_dir) if ckpt_dir is not None else self.output_dir / "checkpoints"
        self.datalist_path = Path(datalist_path) if datalist_path is not None else self.output_dir / "datalist.json"
        self.resume = resume_from not in _UNSET
        self.overwrite_run = _as_bool(overwrite_run, "overwrite_run")
        self.init_weights = None if init_weights in _UNSET else Path(init_weights)
        self.log_patterns = tuple(log_patterns)
        self.lock_path = self.output_dir / lock_name
        self._token: str | None = None

    @property
    def held(self) -> bool:
        """Whether this guard holds the folder's lock."""
        return self._token is not None

    def acquire(self) -> RunFolderGuard:
        """Lock the folder, then check (and with ``overwrite_run`` clear) it; a no-op on ranks other than 0."""
        if self.held or global_rank() > 0:
            return self
        if self.resume and self.overwrite_run:
            raise ValueError(
                f"{self.output_dir}: give --resume_from (continue the run there) or --overwrite_run True "
                "(delete it), not both"
            )
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            found = self.run_files()
            if found and not self.resume:
                if not self.overwrite_run:
                    raise RunFolderError(
                        f"{self.output_dir} holds another training run ({self._describe(found)}); pass "
                        "--resume_from latest to continue it, --overwrite_run True to replace it, "
                        "or another --output_dir"
                    )
                self._clear(found)
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        """Remove the lock if this guard still holds it (idempotent)."""
        if self._token is None:
            return
        token, self._token = self._token, None
        _HELD.discard(self.lock_path)
        atexit.unregister(self.release)
        owner = self._read_lock()
        if owner is not None and owner.get("token") == token:  # never remove a lock another run has taken over
            with contextlib.suppress(FileNotFoundError):
                self.lock_path.unlink()

    def attach(self, engine: Engine) -> None:
        """Release the lock when ``engine`` completes or fails."""
        if not engine.has_event_handler(self.completed, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self.completed)
        if not engine.has_event_handler(self.exception_raised, Events.EXCEPTION_RAISED):
            engine.add_event_handler(Events.EXCEPTION_RAISED, self.exception_raised)

    def completed(self, engine: Engine) -> None:
        """``COMPLETED``: the run is over, the folder is free."""
        self.release()

    def exception_raised(self, engine: Engine, e: BaseException) -> None:
        """``EXCEPTION_RAISED``: free the folder and re-raise (ignite would otherwise swallow ``e``)."""
        self.release()
        raise e

    def run_files(self) -> list[Path]:
        """The files of an earlier run in the folder: checkpoints (with ``model.pt``) and the datalist.

        A datalist outside ``output_dir`` is the user's (a curated split given as ``--datalist_path``): it is
        neither a sign of an earlier run nor deleted.
        """
        found = sorted(self.ckpt_dir.glob("*.pt")) if self.ckpt_dir.is_dir() else []
        datalist = self.datalist_path
        if datalist.is_file() and datalist.resolve().is_relative_to(self.output_dir.resolve()):
            found.append(datalist)
        return found

    def _describe(self, found: list[Path]) -> str:
        names = [p.name for p in found]
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    def _clear(self, found: list[Path]) -> None:
        """Delete the earlier run's files (``overwrite_run``)."""
        doomed = set(found)
        if self.ckpt_dir.is_dir():
            # ignite's and atomic_write's temporary files of a killed save, and the key metric's saved state
            for pattern in ("tmp*", ".*.tmp", KEY_METRIC_STATE):
                doomed.update(p for p in self.ckpt_dir.glob(pattern) if p.is_file())
        for pattern in self.log_patterns:
            doomed.update(p for p in self.output_dir.glob(pattern) if p.is_file())
        if self.init_weights is not None and self.init_weights.resolve() in {p.resolve() for p in doomed}:
            raise ValueError(
                f"init_weights {self.init_weights} belongs to the run --overwrite_run True would delete; "
                "copy it elsewhere first"
            )
        for path in sorted(doomed):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        logger.warning("overwrite_run: deleted %d file(s) of the earlier run in %s", len(doomed), self.output_dir)

    def _lock(self) -> None:
        for _ in range(3):  # a stale lock is removed and the creation retried; another run may win that race
            if self._create_lock():
                return
            owner = self._read_lock()
            if owner is None:
                reason = "unreadable"
            elif owner.get("host") != socket.gethostname():
                raise RunFolderError(self._locked_message(owner, "; if that run is gone, delete the lock file"))
            elif int(owner.get("pid", -1)) == os.getpid():
                if self.lock_path in _HELD:  # a second run in this very process
                    raise RunFolderError(self._locked_message(owner, ""))
                reason = "left by an earlier run in this process"
            elif _pid_alive(int(owner.get("pid", -1))):
                raise RunFolderError(self._locked_message(owner, ""))
            else:
                reason = f"its process {owner.get('pid')} is gone"
            logger.warning("taking over the stale lock %s (%s)", self.lock_path, reason)
            with contextlib.suppress(FileNotFoundError):
                self.lock_path.unlink()
        raise RunFolderError(
            f"{self.output_dir}: could not take the lock {self.lock_path}; another run keeps taking it"
        )

    def _locked_message(self, owner: dict, hint: str) -> str:
        return (
            f"{self.output_dir} is in use by another training (pid {owner.get('pid')} on {owner.get('host')}, "
            f"since {owner.get('started')}); wait for it to end or use another --output_dir "
            f"(lock: {self.lock_path}{hint})"
        )

    def _create_lock(self) -> bool:
        """Create the lock with its content in one step (a hard link of a complete file); False if it exists."""
        token = uuid.uuid4().hex
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "token": token,
        }
        fd, tmp = tempfile.mkstemp(dir=self.output_dir, prefix=f".{self.lock_path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(owner, f)
            try:
                os.link(tmp, self.lock_path)
            except FileExistsError:
                return False
            except OSError as e:  # a file system without hard links: exclusive create (content follows at once)
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                try:
                    with open(self.lock_path, "x", encoding="utf-8") as f:
                        json.dump(owner, f)
                except FileExistsError:
                    return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._token = token
        _HELD.add(self.lock_path)
        atexit.register(self.release)
        return True

    def _read_lock(self) -> dict | None:
        try:
            owner = json.loads(self.lock_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return owner if isinstance(owner, dict) else None

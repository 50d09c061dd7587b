"""Atomic file writes: a temporary file in the target folder, then ``os.replace`` (used by every writer).

``mkstemp`` creates its files with mode 0600 and ``os.replace`` keeps that mode, so every helper here gives the
result the permissions a plain ``open()`` would (``0o666 & ~umask``, e.g. 0644 under umask 022), also when it
replaces an existing file. MONAI's ``CheckpointSaver`` turns ignite's atomic saving off for this very reason.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_path", "atomic_paths", "atomic_write", "check_writable_dir"]


def _umask_mode() -> int:
    umask = os.umask(0)  # the only portable way to read the umask is to set it
    os.umask(umask)
    return 0o666 & ~umask


def _full_suffix(path: Path) -> str:
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | Path], keep_suffix: bool = False) -> Iterator[list[Path]]:
    """Yield a temporary path next to each of ``paths``; when the block ends without error, move them all into place.

    For writers that want a file name (nibabel, Pillow, pydicom, ``torch.jit.save``, ONNX) and for outputs made of
    several files (a DICOM series): every file is written first, then all are moved, so a failure while writing
    leaves no output at all. On any error the temporary files, and the files this call already moved into place,
    are removed; an existing file is replaced only by its finished successor.

    Args:
        paths: destination files; their folders must exist. Temporary names are hidden: ``.<name>.<random>.tmp``.
        keep_suffix: end the temporary names with the destination's suffix too (``....tmp.nii.gz``), for savers
            that pick the format from the name (nibabel).

    Usage example::

        with atomic_path("out/image.nii.gz", keep_suffix=True) as tmp:
            nib.save(img, tmp)
    """
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    moved: list[Path] = []
    try:
        for target in targets:
            suffix = f".tmp{_full_suffix(target)}" if keep_suffix else ".tmp"
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
            os.close(fd)
            temps.append(Path(name))
        yield list(temps)
        mode = _umask_mode()
        for tmp in temps:
            os.chmod(tmp, mode)
        for tmp, target in zip(temps, targets):
            os.replace(tmp, target)
            moved.append(target)
    except BaseException:
        for path in temps:
            path.unlink(missing_ok=True)
        for path in moved:  # a half-moved set (e.g. part of a series) is worse than none
            path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` and move it into place when the block ends without error.

    One-file form of :func:`atomic_paths`; on error the temporary file is removed and ``path`` is left untouched.

    Args:
        path: destination file; its folder must exist.
        keep_suffix: see :func:`atomic_paths`.
    """
    with atomic_paths([path], keep_suffix) as (tmp,):
        yield tmp


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], binary: bool = False) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path`` and move it into place.

    A reader never sees a half-written file, and on any error the temporary file is removed and
    an existing ``path`` is left untouched.

    Args:
        path: destination file; its folder must exist.
        write: writes the content to the open file object it receives.
        binary: open the temporary file in binary mode (for images) instead of UTF-8 text.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        if binary:
            with open(tmp, "wb") as f:
                write(f)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                write(f)
    return path


def check_writable_dir(folder: str | Path) -> None:
    """Refuse, before any work, an output folder that cannot be written.

    The folder may not exist yet: then its nearest existing ancestor must be a writable folder.

    Args:
        folder: the output folder.

    Raises:
        NotADirectoryError: the path, or an ancestor, is a file.
        PermissionError: the folder is read-only.
    """
    probe = Path(folder).expanduser().absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"{probe} is not a folder: cannot write outputs in {folder}.")
    # root passes os.access on any folder; a folder without write bits is read-only on purpose, so it is refused too
    if not os.access(probe, os.W_OK | os.X_OK) or not probe.stat().st_mode & 0o222:
        raise PermissionError(f"{probe} is read-only: choose another output folder.")
    try:  # read-only file systems and ACLs that the mode bits do not show
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise PermissionError(f"{probe} is not writable ({e.strerror or e}): choose another output folder.") from e

"""Atomic file writes: a temporary file in the target folder, then ``os.replace`` (used by every writer)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write"]


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if binary:
            with os.fdopen(fd, "wb") as f:
                write(f)
        else:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                write(f)
        # mkstemp creates 0600; give the result the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path

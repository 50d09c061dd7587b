"""One-line error reports for users of the command line and of ``python -m monai.bundle run``.

MONAI wraps an error raised inside a config item in "Failed to evaluate/instantiate ..." RuntimeErrors, so a missing
file ends a 60-150 line traceback whose useful line is buried. :func:`user_message` digs out the error that names the
file; :func:`install_excepthook` (called by the bundle configs' ``initialize``) prints only that line for uncaught
errors, unless ``MEDICAL_DENOISE_DEBUG=1`` asks for the traceback.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

from medical_denoise._optional import explain_import_error

__all__ = ["DEBUG_ENV", "UsageError", "install_excepthook", "root_error", "user_message"]

#: set to 1 to get full tracebacks from ``python -m monai.bundle run`` with this package's configs
DEBUG_ENV = "MEDICAL_DENOISE_DEBUG"
# MONAI wraps an error raised while a config item is evaluated or instantiated in one of these
_MONAI_WRAPPERS = ("Failed to evaluate", "Failed to instantiate")


class UsageError(Exception):
    """A mistake in the command line or in the paths it names: reported on one line, exit status 2."""


def root_error(exc: BaseException) -> BaseException:
    """The error under MONAI's "Failed to evaluate/instantiate ..." wrappers: the one that names the file."""
    while isinstance(exc, RuntimeError) and exc.__cause__ is not None and str(exc).startswith(_MONAI_WRAPPERS):
        exc = exc.__cause__
    return exc


def user_message(exc: BaseException, more_hint: str | None = "--debug shows all") -> tuple[str, bool]:
    """``(one line for the user, whether the error is an expected user error)``.

    Expected errors (bad input, missing file, wrong option, missing extra: ``OSError``, ``ValueError``, ``KeyError``,
    ``ImportError``, :class:`UsageError`) give their own first line; others are prefixed with their type.

    Args:
        exc: the raised error (MONAI wrappers included).
        more_hint: appended when the message had more lines than the first (None: nothing).
    """
    message = explain_import_error(exc)
    root = root_error(exc)
    expected = message is not None or isinstance(root, (UsageError, OSError, ValueError, KeyError, ImportError))
    if message is None:
        lines = str(root).strip().splitlines() or [type(root).__name__]
        message = lines[0] if expected else f"{type(root).__name__}: {lines[0]}"
        if len(lines) > 1 and more_hint:
            message += f" (...; {more_hint})"
    return message, expected


def install_excepthook(prog: str = "medical-denoise") -> None:
    """Make uncaught errors print one line (``PROG: error: ...``) instead of a traceback, for this process.

    Nothing changes when the environment sets ``MEDICAL_DENOISE_DEBUG=1``. ``KeyboardInterrupt`` keeps Python's own
    report. The exit status stays 1.

    Args:
        prog: the name the line starts with.
    """
    if os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if not isinstance(exc, Exception):
            previous(kind, exc, tb)
            return
        message, expected = user_message(exc, f"{DEBUG_ENV}=1 shows all")
        print(f"{prog}: error: {message}", file=sys.stderr)
        if not expected:
            print(f"{prog}: unexpected error; run again with {DEBUG_ENV}=1 for the full traceback", file=sys.stderr)

    sys.excepthook = hook

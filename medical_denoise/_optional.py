"""Optional dependencies: which ``setup.cfg`` extra brings each module, and the one-line message when it is missing.

``tests/test_dependencies.py`` checks :data:`EXTRA_OF_MODULE` against ``setup.cfg`` and against the imports in the
source, so this table cannot drift from either. Only the standard library is imported here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRA_OF_MODULE", "MissingExtraError", "explain_import_error", "missing_extra_message", "require"]

PACKAGE = "medical-denoise"

# import name -> the extra of setup.cfg that installs it
EXTRA_OF_MODULE: dict[str, str] = {
    # compressed DICOM transfer syntaxes: pydicom finds these decoders itself (no import in this package)
    "pylibjpeg": "clinical",
    "libjpeg": "clinical",
    "openjpeg": "clinical",
    "rle": "clinical",
    "onnx": "export",
    "onnxruntime": "export",
    "onnxscript": "export",
    "bm3d": "bm3d",
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def missing_extra_message(module: str, feature: str | None = None) -> str:
    """``"<feature> needs the '<extra>' extra: pip install 'medical-denoise[<extra>]'"``, on one line.

    Args:
        module: import name, a key of :data:`EXTRA_OF_MODULE`.
        feature: what the user asked for (default: the module name).
    """
    extra = EXTRA_OF_MODULE[module.split(".")[0]]
    return f"{feature or module} needs the '{extra}' extra: pip install '{PACKAGE}[{extra}]'"


def require(module: str, feature: str | None = None) -> ModuleType:
    """Import an optional module, or raise :class:`MissingExtraError` naming its extra.

    Args:
        module: import name; its top-level package must be a key of :data:`EXTRA_OF_MODULE`.
        feature: what needs it, for the message (e.g. ``"ONNX export"``).

    Raises:
        MissingExtraError: the module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(missing_extra_message(module, feature)) from e


def explain_import_error(exc: BaseException) -> str | None:
    """A one-line message naming the extra for an import error of an optional module, else None.

    Walks the exception's causes, so an error raised while a bundle config was being evaluated is found too.

    Args:
        exc: any exception.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MissingExtraError):
            return str(exc)
        if isinstance(exc, ImportError):
            top = (exc.name or "").split(".")[0]
            if top in EXTRA_OF_MODULE:
                return missing_extra_message(top)
            # MONAI's OptionalImportError carries no module name, only a message such as "... 'bm3d' package ..."
            for module in EXTRA_OF_MODULE:
                if f"'{module}'" in str(exc) and f"{PACKAGE}[" not in str(exc):
                    return f"{str(exc).splitlines()[0]} ({missing_extra_message(module, 'it')})"
        exc = exc.__cause__ or exc.__context__
    return None

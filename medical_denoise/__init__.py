"""medical-denoise: conditional GANs that denoise and enhance medical images, built on MONAI.

The package reads by concern: ``data`` -> ``noise`` -> ``networks`` -> ``engine`` -> ``evaluation`` -> ``io``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["data", "engine", "errors", "evaluation", "io", "networks", "noise"]


def __getattr__(name: str) -> Any:
    """Import a subpackage on first use (PEP 562).

    Bundle configs write ``$import medical_denoise`` and use dotted names (``medical_denoise.io.denoise_path``);
    loading the subpackages only then lets the ``medical-denoise`` command answer ``--help``, ``--version`` and
    ``bundle-path`` without importing PyTorch and MONAI.
    """
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{name}")
    if name == "evaluation":  # evaluate.yaml calls medical_denoise.evaluation.split_eval.evaluate_split
        importlib.import_module(f"{__name__}.evaluation.split_eval")
    return module

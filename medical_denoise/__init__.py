"""medical-denoise: conditional GANs that denoise and enhance medical images, built on MONAI.

The package reads by concern: ``data`` -> ``noise`` -> ``networks`` -> ``engine`` -> ``evaluation`` -> ``io``.
"""

from __future__ import annotations

__version__ = "0.1.0"

# subpackages are imported so bundle configs can write ``$import medical_denoise`` and use dotted names
from medical_denoise import data, engine, evaluation, io, networks, noise  # noqa: E402
from medical_denoise.evaluation import split_eval  # noqa: E402,F401

__all__ = ["data", "engine", "evaluation", "io", "networks", "noise"]

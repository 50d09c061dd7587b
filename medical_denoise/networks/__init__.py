from __future__ import annotations

from .discriminator import ConditionalPatchDiscriminator
from .generator import DenoiseUNet, load_generator
from .predictor import GeneratorPredictor

__all__ = ["ConditionalPatchDiscriminator", "DenoiseUNet", "GeneratorPredictor", "load_generator"]

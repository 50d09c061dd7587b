from __future__ import annotations

from .discriminator import ConditionalPatchDiscriminator
from .generator import DenoiseUNet, load_generator
from .predictor import GeneratorPredictor, bundle_denoiser, bundle_predictor

__all__ = ["ConditionalPatchDiscriminator", "DenoiseUNet", "GeneratorPredictor", "bundle_denoiser", "bundle_predictor", "load_generator"]

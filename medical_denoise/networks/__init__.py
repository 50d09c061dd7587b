from __future__ import annotations

from .discriminator import ConditionalPatchDiscriminator
from .generator import DenoiseUNet, load_generator

__all__ = ["ConditionalPatchDiscriminator", "DenoiseUNet", "load_generator"]

from __future__ import annotations

from .discriminator import ConditionalPatchDiscriminator
from .export import export_onnx, export_torchscript, onnx_parity
from .generator import DenoiseUNet, load_generator, widen_input_channels
from .predictor import GeneratorPredictor, bundle_denoiser, bundle_predictor
from .sr import ModCropd, SuperResolutionUNet, UpsampledConditionDiscriminator, UpsampleToReferenced, upsample

__all__ = [
    "ConditionalPatchDiscriminator",
    "DenoiseUNet",
    "GeneratorPredictor",
    "bundle_denoiser",
    "bundle_predictor",
    "load_generator",
    "widen_input_channels",
    "ModCropd",
    "SuperResolutionUNet",
    "UpsampledConditionDiscriminator",
    "UpsampleToReferenced",
    "upsample",
    "export_onnx",
    "export_torchscript",
    "onnx_parity",
]

"""Clinical file formats in and out (DICOM, NIfTI, PNG/JPEG, TIFF), model routing and a file-level inference runner.

See ``docs/clinical_formats.md``.
"""

from __future__ import annotations

from medical_denoise.io.fidelity import FidelityGuard
from medical_denoise.io.formats import FORMATS, ImageFormat, output_name, output_suffix
from medical_denoise.io.geometry import zoom_affine, zoom_dicom_dataset, zoomed_like
from medical_denoise.io.image import LoadedImage
from medical_denoise.io.inference import (
    MAX_MEMORY_GB,
    FailedInputsError,
    InputItem,
    collect_inputs,
    denoise_image,
    denoise_path,
    predict_array,
    slab_indices,
)
from medical_denoise.io.intensity import (
    CT_WINDOW,
    MR_PERCENTILES,
    IntensityMapping,
    default_intensity_mapping,
    looks_like_hu,
)
from medical_denoise.io.readers import guess_format, nifti_modality, read_image
from medical_denoise.io.routing import (
    PHOTO_MODALITIES,
    RICIAN_MODALITIES,
    ImageKind,
    ModelChoice,
    ModelRouter,
    ModelSpec,
    Route,
    image_kind,
)
from medical_denoise.io.tiled import denoise_tiled, estimate_memory, tile_spans
from medical_denoise.io.writers import default_output_name, write_like

__all__ = [
    "CT_WINDOW",
    "FORMATS",
    "MAX_MEMORY_GB",
    "MR_PERCENTILES",
    "PHOTO_MODALITIES",
    "RICIAN_MODALITIES",
    "FailedInputsError",
    "FidelityGuard",
    "ImageFormat",
    "ImageKind",
    "InputItem",
    "IntensityMapping",
    "LoadedImage",
    "ModelChoice",
    "ModelRouter",
    "ModelSpec",
    "Route",
    "collect_inputs",
    "default_intensity_mapping",
    "default_output_name",
    "denoise_image",
    "denoise_path",
    "denoise_tiled",
    "estimate_memory",
    "guess_format",
    "image_kind",
    "looks_like_hu",
    "nifti_modality",
    "output_name",
    "output_suffix",
    "predict_array",
    "read_image",
    "slab_indices",
    "tile_spans",
    "write_like",
    "zoom_affine",
    "zoom_dicom_dataset",
    "zoomed_like",
]

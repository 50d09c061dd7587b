"""Clinical file formats in and out (DICOM, NIfTI, PNG/JPEG, TIFF) and a file-level inference runner.

See ``docs/clinical_formats.md``.
"""

from __future__ import annotations

from medical_denoise.io.geometry import zoom_affine, zoom_dicom_dataset, zoomed_like
from medical_denoise.io.image import LoadedImage
from medical_denoise.io.inference import collect_inputs, denoise_path, predict_array
from medical_denoise.io.intensity import CT_WINDOW, MR_PERCENTILES, IntensityMapping, default_intensity_mapping
from medical_denoise.io.readers import guess_format, read_image
from medical_denoise.io.writers import default_output_name, write_like

__all__ = [
    "CT_WINDOW",
    "MR_PERCENTILES",
    "IntensityMapping",
    "LoadedImage",
    "collect_inputs",
    "default_intensity_mapping",
    "default_output_name",
    "denoise_path",
    "guess_format",
    "predict_array",
    "read_image",
    "write_like",
    "zoom_affine",
    "zoom_dicom_dataset",
    "zoomed_like",
]

"""MONAI Label infer task returning the generator's denoised IMAGE (same format, geometry and dtype as the input).

MONAI Label's own ``BundleInferTask`` cannot serve this bundle: it reads ``configs/inference.yaml`` alone (ours is
merged on top of ``train.yaml``) and treats an output as a label map. This task reuses MONAI Label's
``BasicInferTask`` for request handling, device choice and cached weight loading, and the project's file I/O
(:func:`~medical_denoise.io.read_image`, :func:`~medical_denoise.io.predict_array`,
:func:`~medical_denoise.io.write_like`) for reading, slice-by-slice prediction and writing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from fastapi import HTTPException
from monai.inferers import Inferer, SimpleInferer
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from medical_denoise.io import LoadedImage, default_intensity_mapping, predict_array, read_image, write_like
from medical_denoise.label.bundle import BundleModel
from medical_denoise.networks import GeneratorPredictor

__all__ = ["DenoiseInferTask", "InverseIntensityd", "ReadImaged"]

# what each input format is written back as (JPEG is lossy: lossless PNG instead, as the bundle's inference does)
_SUFFIX = {"png": ".png", "jpeg": ".png", "tiff": ".tif", "dicom": ".dcm"}
_LOADED, _MAPPING = "loaded_image", "intensity_mapping"


class ReadImaged:
    """Reads ``data["image"]`` (a path) with :func:`~medical_denoise.io.read_image` and maps it to [0, 1].

    Sets ``data["image"]`` to the float32 network-range array, and keeps the :class:`~medical_denoise.io.LoadedImage`
    and its intensity mapping for writing back. Unreadable input raises ``HTTPException(400)`` naming the file.
    """

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        path = data["image"]
        if not isinstance(path, str):
            raise HTTPException(status_code=400, detail="the denoiser takes an image file, not an in-memory array")
        if os.path.isdir(path):  # a DICOMweb series kept as DICOM (MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI=false)
            raise HTTPException(
                status_code=400,
                detail=f"{path}: a DICOM series folder cannot be returned as one file; send single DICOM files, "
                "or let MONAI Label convert DICOMweb series to NIfTI (its default)",
            )
        try:
            image = read_image(path)
            _ybr_to_rgb(image)
        except (ValueError, FileNotFoundError) as e:
            raise HTTPException(status_code=400, detail=f"cannot read the input image: {e}") from e
        data[_LOADED], data[_MAPPING] = image, image.intensity
        data["image"] = image.intensity.forward(image.array)
        return data


class InverseIntensityd:
    """Maps ``data[key]`` from the network range back to the input's original units (float64)."""

    def __init__(self, key: str = "pred") -> None:
        self.key = key

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        data[self.key] = data[_MAPPING].inverse(data[self.key])
        return data


class DenoiseInferTask(BasicInferTask):
    """Denoises PNG/JPEG/TIFF images, NIfTI images or volumes and DICOM files with a ``gan_denoise`` generator.

    The 2D generator runs on whole images, and on volumes (and multi-frame DICOM) slice by slice along the last
    axis, with the channel rule of :func:`~medical_denoise.io.predict_array` (grayscale input with an RGB model:
    replicated, then averaged). The result is written like the input (PNG for PNG/JPEG, NIfTI with the input's
    affine and header, a derived DICOM with new SOP/Series UIDs) and returned as the response's image; its type
    is ``InferType.OTHERS`` since it is not a label map. DICOM series folders are refused (one file answers).

    Args:
        model: the bundle's network, weights path, channels and inferer (:func:`.bundle.load_bundle_model`).
        description: shown by ``/info``.
        preload: load the weights onto every device when the server starts.
    """

    def __init__(self, model: BundleModel, description: str = "", preload: bool = False) -> None:
        self.model = model
        super().__init__(
            path=str(model.weights),
            network=model.network,
            type=InferType.OTHERS,
            labels=None,
            dimension=2,
            description=description or f"{model.name} {model.version}: denoised image out (2D, volumes per slice)",
            model_state_dict="generator",  # a training checkpoint's entry; a plain state dict loads as is
            load_strict=True,
            preload=preload,
        )

    def is_valid(self) -> bool:
        return self.model.weights.is_file()

    def pre_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        return [ReadImaged()]

    def inferer(self, data: dict[str, Any] | None = None) -> Inferer:
        # the bundle's sliding window pads small images up to its window; run those whole instead
        shape = data[self.input_key].shape if data else ()
        plane = shape[1:3] if len(shape) >= 3 else ()
        if any(s > r for s, r in zip(plane, self.model.roi_size)):
            return self.model.inferer
        return SimpleInferer()

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        return [InverseIntensityd(self.output_label_key)]

    def _get_network(self, device: str, data: dict[str, Any] | None):
        # BasicInferTask would silently serve random weights when the file is gone
        if not self.model.weights.is_file():
            raise MONAILabelException(MONAILabelError.INFERENCE_ERROR, f"weights {self.model.weights} not found")
        return super()._get_network(device, data)

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda"):
        network = self._get_network(device, data)
        predictor = GeneratorPredictor(
            network, inferer=self.inferer(data), device=device, self_ensemble=self.model.self_ensemble
        )
        image = data[_LOADED]
        try:
            data[self.output_label_key] = predict_array(
                data[self.input_key],
                predictor,
                model_channels=self.model.channels,
                batch_size=self.model.batch_size,
                source=image.source,
                device=device,
            )
        except ValueError as e:  # channel counts the model cannot take
            raise HTTPException(status_code=400, detail=str(e)) from e
        return data

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[str, dict]:
        """Writes the denoised image to a temporary file (MONAI Label sends it and then deletes it)."""
        image = data[_LOADED]
        suffix = _nifti_suffix(image.source) if image.format == "nifti" else _SUFFIX[image.format]
        fd, name = tempfile.mkstemp(suffix=suffix, prefix="denoised_")
        os.close(fd)
        try:
            write_like(image, data[self.output_label_key], name, description=self.description, overwrite=True)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        result = {"format": image.format, "shape": list(np.shape(image.array)), "weights": str(self.model.weights)}
        return name, result


def _ybr_to_rgb(image: LoadedImage) -> None:
    """Colour DICOM in YBR: pydicom 3 decodes it to RGB, but pydicom 2 (MONAI Label's) returns YBR values.

    Converts ``image.array`` to RGB in place under pydicom 2, so the model sees (and the writer, which writes
    RGB, stores) the same pixels as with pydicom 3.
    """
    if image.format != "dicom" or image.channels != 3 or hasattr(pydicom.Dataset, "set_pixel_data"):
        return
    if not str(image.datasets[0].get("PhotometricInterpretation", "")).startswith("YBR"):
        return
    if image.bit_depth != 8:
        raise ValueError(f"{image.source}: {image.bit_depth}-bit YBR colour DICOM is not supported with pydicom 2.")
    from pydicom.pixel_data_handlers.util import convert_color_space

    ybr = np.clip(np.rint(np.moveaxis(image.array, 0, -1)), 0, 255).astype(np.uint8)  # (H, W[, F], 3)
    if ybr.ndim == 4:
        ybr = ybr.transpose(2, 0, 1, 3)  # frames first, as pydicom expects
    rgb = convert_color_space(ybr, "YBR_FULL", "RGB").astype(np.float32)  # decoded 4:2:2 is full YBR too
    if rgb.ndim == 4:
        rgb = rgb.transpose(1, 2, 0, 3)
    image.array = np.ascontiguousarray(np.moveaxis(rgb, -1, 0))
    image.intensity = default_intensity_mapping(image.array, image.modality, bit_depth=8, photo=True)


def _nifti_suffix(source: Path) -> str:
    return ".nii" if source.name.lower().endswith(".nii") else ".nii.gz"

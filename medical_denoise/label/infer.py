"""MONAI Label infer task returning the denoised IMAGE (same format, geometry and dtype as the input).

Each request's image is given its model by the bundle's ``router``, as the bundle's ``inference`` run id does
(:mod:`medical_denoise.io.routing`): RGB photographs -> the dermoscopy model, grayscale CT/MR/CR/... -> the
clinical 2.5D model with its context slices and :class:`~medical_denoise.io.FidelityGuard`. An image no model
fits, or whose model has no weights, is answered with HTTP 400 and the router's one-line reason; channels are
never converted to fit a model.

MONAI Label's own ``BundleInferTask`` cannot serve this bundle: it reads ``configs/inference.yaml`` alone (ours is
merged on top of ``train.yaml``) and treats an output as a label map. This task reuses MONAI Label's
``BasicInferTask`` for request handling and the project's file I/O (:func:`~medical_denoise.io.read_image`,
:func:`~medical_denoise.io.denoise_image`, :func:`~medical_denoise.io.write_like`) for reading, routing,
slice-by-slice prediction and writing.
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
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from medical_denoise.io import (
    ImageFormat,
    LoadedImage,
    ModelRouter,
    Route,
    default_intensity_mapping,
    denoise_image,
    output_suffix,
    read_image,
    write_like,
)
from medical_denoise.label.bundle import BundleRouter, ReloadingPredictor

__all__ = ["DenoiseInferTask", "ReadImaged", "RouteImaged"]

_LOADED, _ROUTE = "loaded_image", "route"


class ReadImaged:
    """Reads ``data["image"]`` (a path) with :func:`~medical_denoise.io.read_image`.

    Keeps the :class:`~medical_denoise.io.LoadedImage` in ``data["loaded_image"]`` and sets ``data["image"]`` to
    its array (original units). Unreadable input raises ``HTTPException(400)`` naming the file.

    Args:
        modality: overrides the modality of every input (the router's ``modality``; e.g. "CT" for a NIfTI in HU).
    """

    def __init__(self, modality: str | None = None) -> None:
        self.modality = modality

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
            image = read_image(path, modality=self.modality)
            _ybr_to_rgb(image)
        except (ValueError, FileNotFoundError) as e:
            raise HTTPException(status_code=400, detail=f"cannot read the input image: {e}") from e
        data[_LOADED], data["image"] = image, image.array
        return data


class RouteImaged:
    """Picks the model for ``data["loaded_image"]`` with the bundle's router and stores the route in ``data["route"]``.

    A model whose weights file changed since it was loaded is reloaded here, once per request.

    Args:
        router: the bundle's ``router`` (:func:`.bundle.load_bundle_router`).

    Raises:
        HTTPException: 400 with the router's one-line refusal (no model fits the image, or its weights are
            missing or do not fit its network).
    """

    def __init__(self, router: ModelRouter) -> None:
        self.router = router

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        image = data[_LOADED]
        try:
            route = self.router.route(image)
        except ValueError as e:
            raise HTTPException(status_code=400, detail=str(e)) from e
        if isinstance(route.predictor, ReloadingPredictor):
            try:
                route.predictor.refresh()
            except ValueError as e:
                detail = f"{image.source}: the {route.name} model cannot be used: {e}; pass --{route.spec.option} PATH."
                raise HTTPException(status_code=400, detail=detail) from e
        data[_ROUTE] = route
        return data


class DenoiseInferTask(BasicInferTask):
    """Denoises PNG/JPEG/TIFF images, NIfTI images or volumes and DICOM files with the ``gan_denoise`` models.

    Each image goes to the model the bundle's router picks for it (module docstring) and is denoised by
    :func:`~medical_denoise.io.denoise_image` exactly as the bundle's ``inference`` does: the image's intensity
    mapping, 2D or 2.5D slabs slice by slice along the last axis, the model's fidelity guard, and voxels the
    network left unchanged restored bit for bit. The result is written like the input (PNG for PNG/JPEG, NIfTI
    with the input's affine and header, a derived DICOM with new SOP/Series UIDs) and returned as the response's
    image; its type is ``InferType.OTHERS`` since it is not a label map. DICOM series folders are refused (one
    file answers). The networks run on the bundle's ``device``.

    Args:
        models: the bundle's router and settings (:func:`.bundle.load_bundle_router`).
        description: shown by ``/info``.
        preload: load the weights of every model that has them when the server starts.
    """

    def __init__(self, models: BundleRouter, description: str = "", preload: bool = False) -> None:
        self.models = models
        super().__init__(
            path=None,  # the router holds the weights; BasicInferTask's own loading is not used
            network=None,
            type=InferType.OTHERS,
            labels=None,
            dimension=2,
            description=description
            or f"{models.name} {models.version}: denoised image out (RGB photos: dermoscopy model; grayscale "
            "CT/MR/...: clinical 2.5D model)",
            preload=False,  # BasicInferTask would load its (absent) single network
        )
        if preload:
            models.preload()

    def is_valid(self) -> bool:
        return bool(self.models.available())

    def pre_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        return [ReadImaged(self.models.router.modality), RouteImaged(self.models.router)]

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        return []  # denoise_image returns the input's own units

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda"):
        image: LoadedImage = data[_LOADED]
        route: Route = data[_ROUTE]
        try:
            data[self.output_label_key] = denoise_image(image, route, batch_size=self.models.batch_size)
        except ValueError as e:  # what the model cannot take (e.g. colour-coded images at another scale)
            raise HTTPException(status_code=400, detail=str(e)) from e
        return data

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[str, dict]:
        """Writes the denoised image to a temporary file (MONAI Label sends it and then deletes it)."""
        image: LoadedImage = data[_LOADED]
        route: Route = data[_ROUTE]
        suffix = output_suffix(image.format, image.source)  # JPEG is lossy: lossless PNG, as inference writes
        fd, name = tempfile.mkstemp(suffix=suffix, prefix="denoised_")
        os.close(fd)
        description = route.spec.description or self.models.description  # as the bundle's inference writes it
        try:
            write_like(image, data[self.output_label_key], name, description=description, overwrite=True)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        result = {
            "format": str(image.format),
            "shape": list(np.shape(image.array)),
            "model": route.name,
            "weights": None if route.spec.checkpoint is None else str(route.spec.checkpoint),
        }
        return name, result


def _ybr_to_rgb(image: LoadedImage) -> None:
    """Colour DICOM in YBR: pydicom 3 decodes it to RGB, but pydicom 2 (MONAI Label's) returns YBR values.

    Converts ``image.array`` to RGB in place under pydicom 2, so the model sees (and the writer, which writes
    RGB, stores) the same pixels as with pydicom 3.
    """
    if image.format != ImageFormat.DICOM or image.channels != 3 or hasattr(pydicom.Dataset, "set_pixel_data"):
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

"""Which model denoises which input, and what is refused.

Routing rule (``model="auto"``): RGB photographs (PNG/JPEG/TIFF in RGB, colour DICOM of a photographic
modality, :data:`PHOTO_MODALITIES`) go to the dermoscopy model; grayscale images go to a clinical 2.5D model
chosen by the physics of their noise: MR (and NIfTI of undetected modality, :data:`RICIAN_MODALITIES`) to the
shared ``clinical`` model, which removes the Rician floor of magnitude MR; every other modality (CT, CR/DX, MG,
XA, NM/PET, grey ultrasound, grayscale PNG/TIFF) to the CT-trained ``clinical_ct`` model when one is set, as their
noise is additive: the shared model takes their dark regions for an MR background and darkens them (see
``docs/clinical_results.md``). Colour DICOM of any other modality (colour Doppler ultrasound, colour-coded
overlays) goes the same way for its grey pixels only (R == G == B); its coloured pixels are returned
byte-identical. ``model="dermoscopy"`` forces the photo model, ``"clinical"`` the clinical models (by the rule
above), ``"ct"``/``"mr"`` set the modality: its intensity mapping, and with it the clinical model.

A model that does not fit an input is never adapted (no grey -> RGB replication, no per-channel split): the
input is refused with one line that names the file and what to pass. So is an input whose model has no
weights yet (the clinical model before ``models/clinical.pt`` exists), and a checkpoint whose tensors do not
fit the network. See ``docs/clinical_formats.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.utils import StrEnum
from torch import nn

from medical_denoise.io.fidelity import FidelityGuard
from medical_denoise.io.formats import ImageFormat
from medical_denoise.io.image import LoadedImage
from medical_denoise.io.intensity import IntensityMapping
from medical_denoise.noise.estimate import estimate_noise_level
from medical_denoise.noise.modality import RICIAN_MODALITIES, ModalityNoise, modality_noise

__all__ = [
    "CLINICAL_CT",
    "PHOTO_MODALITIES",
    "RICIAN_MODALITIES",
    "ImageKind",
    "ModelChoice",
    "ModelRouter",
    "ModelSpec",
    "Route",
    "image_kind",
    "log_route",
]

logger = logging.getLogger(__name__)

#: DICOM modalities whose colour images are photographs (external camera, dermoscopy, ophthalmic, endoscopy,
#: microscopy, and "OT"/none, the secondary captures of photos); colour images of other modalities are
#: colour-coded medical images.
PHOTO_MODALITIES = frozenset({"XC", "DMS", "OP", "ES", "GM", "SM", "OT", "", "PHOTO"})


#: route name of the CT-trained model (``ModelRouter(clinical_ct=...)``), for every other grayscale modality.
CLINICAL_CT = "clinical_ct"
# the config overlay that trains each grayscale model, named when its weights are missing
_TRAINING_OVERLAY = {"clinical": "configs/clinical.yaml", CLINICAL_CT: "configs/clinical_ct.yaml"}


class ModelChoice(StrEnum):
    """Values of the ``model`` config key."""

    AUTO = "auto"
    DERMOSCOPY = "dermoscopy"
    CLINICAL = "clinical"
    CT = "ct"
    MR = "mr"


class ImageKind(StrEnum):
    """What an input is, as far as routing goes."""

    PHOTO = "photo"  # RGB photograph
    GRAYSCALE = "grayscale"  # one channel, any modality
    COLOUR_MEDICAL = "colour_medical"  # RGB DICOM of a non-photographic modality (colour Doppler US, ...)


def image_kind(image: LoadedImage) -> ImageKind:
    """:class:`ImageKind` of a read image; ``ValueError`` naming the file for channel counts other than 1 and 3."""
    if image.channels == 1:
        return ImageKind.GRAYSCALE
    if image.channels != 3:
        raise ValueError(f"{image.source}: image has {image.channels} channels; only grayscale and RGB are supported.")
    if image.format != ImageFormat.DICOM or str(image.modality).upper() in PHOTO_MODALITIES:
        return ImageKind.PHOTO
    return ImageKind.COLOUR_MEDICAL


@dataclass
class ModelSpec:
    """One model the router can hand out, built on first use.

    Args:
        network: the generator; its weights come from ``checkpoint``. Ignored when ``predictor`` is given.
        checkpoint: the weights. None or a missing file makes the model unavailable: inputs that need it are
            refused (never sent to the other model).
        predictor: a ready ``(N, C_in, H, W) -> (N, C_out, H', W')`` callable instead of network + checkpoint.
        image_channels: channels of the images it denoises (3: RGB, 1: grayscale); its output has as many.
        context_slices: neighbouring slices on each side stacked as input channels (2.5D): the network takes
            ``(2 * context_slices + 1) * image_channels`` channels; 0 for a plain 2D model.
        self_ensemble: average 8 flips/rotations (8x the time) for every input; passed to the predictor factory.
        ensemble_up_to_mp: inputs of at most this many megavoxels (all slices) get the 8 flips/rotations even when
            ``self_ensemble`` is False: a lone slice gains a few tenths of a dB for about a second, while a large
            volume keeps one pass and its time bound. 0: never.
        scale: in-plane output/input size ratio of the model (1: denoising).
        guard: applied to its outputs (see :class:`~medical_denoise.io.fidelity.FidelityGuard`), or None.
        option: the config key that sets ``checkpoint``, named in messages (``checkpoint``,
            ``clinical_checkpoint``).
        description: stored in DICOM DerivationDescription of its outputs (default: ``denoise_path``'s).
    """

    network: nn.Module | None = None
    checkpoint: str | Path | None = None
    predictor: Callable[[torch.Tensor], torch.Tensor] | None = None
    image_channels: int = 1
    context_slices: int = 0
    self_ensemble: bool = False
    ensemble_up_to_mp: float = 0.0
    scale: int = 1
    guard: FidelityGuard | None = None
    option: str = "checkpoint"
    description: str | None = None

    def __post_init__(self) -> None:
        if int(self.image_channels) != self.image_channels or self.image_channels < 1:
            raise ValueError(f"ModelSpec image_channels must be a positive integer, got {self.image_channels!r}.")
        if int(self.context_slices) != self.context_slices or self.context_slices < 0:
            raise ValueError(f"ModelSpec context_slices must be an integer >= 0, got {self.context_slices!r}.")
        if self.predictor is None and self.network is None:
            raise ValueError("ModelSpec needs a network (with a checkpoint) or a predictor.")
        if not self.ensemble_up_to_mp >= 0:
            raise ValueError(f"ModelSpec ensemble_up_to_mp must be >= 0 megavoxels, got {self.ensemble_up_to_mp!r}.")

    def ensembles(self, image: LoadedImage) -> bool:
        """Whether ``image`` gets the 8-fold self-ensemble: always with ``self_ensemble``, else by its size."""
        voxels = math.prod(image.array.shape[1:])  # channels aside: (C, H, W[, slices])
        return self.self_ensemble or voxels <= self.ensemble_up_to_mp * 1e6

    @property
    def in_channels(self) -> int:
        """Channels the network takes: the slab of ``2k + 1`` slices of ``image_channels`` each."""
        return (2 * self.context_slices + 1) * self.image_channels


@dataclass(frozen=True)
class Route:
    """The router's answer for one image.

    Args:
        name: "dermoscopy", "clinical" (MR), "clinical_ct" (other grayscale), or "model" (a single fixed model).
        spec: the chosen model.
        predictor: its built predictor.
        grey_pixels_only: a colour-coded image: only its R == G == B pixels go through ``predictor`` (as one
            grey channel); the others are kept byte-identical.
        modality: the modality whose mapping the image gets (an override, or None for the image's own).
        self_ensemble: ``predictor`` averages the 8 flips/rotations (:meth:`ModelSpec.ensembles`).
        noise_std: the noise std the model is told, in the image's original units (HU for CT), or None: the model
            estimates it from each slice (see :meth:`predictor_for`).
    """

    name: str
    spec: ModelSpec
    predictor: Callable[[torch.Tensor], torch.Tensor]
    grey_pixels_only: bool = False
    modality: str | None = None
    self_ensemble: bool = False
    noise_std: float | None = None

    def predictor_for(self, mapping: IntensityMapping) -> Callable[[torch.Tensor], torch.Tensor]:
        """The predictor for an image with this intensity mapping: told ``noise_std`` when one is set.

        A network with a noise-level input (``DenoiseUNet(noise_level_input=True)``) takes the std as a constant
        last channel in its network range (``noise_std / (high - low)``); it then removes that much noise and keeps
        the rest, where blind it estimates the level from each slice and removes all it sees.
        """
        if self.noise_std is None:
            return self.predictor
        level = float(self.noise_std) / (mapping.high - mapping.low)

        def told(x: torch.Tensor) -> torch.Tensor:
            return self.predictor(torch.cat([x, torch.full_like(x[:, :1], level)], dim=1))

        return told


class ModelRouter:
    """Picks the model for each input of :func:`~medical_denoise.io.denoise_path` (rule: module docstring).

    Predictors are built on first use by ``predictor_factory(network, checkpoint=..., self_ensemble=...)``, so a
    model whose weights do not exist yet costs nothing until an input needs it, and is then refused for that
    input with what to pass.

    Args:
        dermoscopy: the RGB photograph model, or None (photographs are then refused).
        clinical: the grayscale 2.5D model for MR (:data:`RICIAN_MODALITIES`), and for every grayscale input
            when ``clinical_ct`` is unset; None: those inputs are refused.
        clinical_ct: a 2.5D model for grayscale inputs of every other modality (CT, X-ray, NM, ...: additive
            noise; by the image's modality or the override) in place of ``clinical``; None, or a spec with neither
            checkpoint nor predictor: they go to ``clinical``.
        model: a :class:`ModelChoice` value: ``auto`` (default), ``dermoscopy``, ``clinical``, ``ct``, ``mr``.
        modality: overrides the modality of every input (e.g. "CT" for a NIfTI in HU); ``ct``/``mr`` set it.
        noise_std: tell the model this noise std, in each image's original units (HU for CT), instead of letting
            it estimate the level per slice: it removes that much noise and keeps the rest (a gentler result than
            blind, which removes all the noise it sees). Only models with a noise-level input take it; others
            refuse the image. None: blind.
        scale: output/input size ratio asked for (2 or 4 with sr.yaml); a model of another scale is refused.
        predictor_factory: builds a predictor from a spec's network and weights; default
            :class:`~medical_denoise.networks.GeneratorPredictor` on the network's device.

    Usage example::

        router = ModelRouter(dermoscopy=ModelSpec(rgb_net, "models/model.pt", image_channels=3),
                             clinical=ModelSpec(unet25d, "models/clinical.pt", context_slices=1,
                                                guard=FidelityGuard(), option="clinical_checkpoint"))
        denoise_path("in/", "out/", router, description="gan_denoise")
    """

    def __init__(
        self,
        dermoscopy: ModelSpec | None = None,
        clinical: ModelSpec | None = None,
        clinical_ct: ModelSpec | None = None,
        model: str = "auto",
        modality: str | None = None,
        noise_std: float | None = None,
        scale: int = 1,
        predictor_factory: Callable[..., Callable[[torch.Tensor], torch.Tensor]] | None = None,
    ) -> None:
        try:
            self.model = ModelChoice(str(model).lower())
        except ValueError:
            choices = ", ".join(c.value for c in ModelChoice)
            raise ValueError(f"model must be one of {choices}; got {model!r}.") from None
        forced = {ModelChoice.CT: "CT", ModelChoice.MR: "MR"}.get(self.model)
        if forced and modality and str(modality).upper() != forced:
            raise ValueError(f"model {self.model.value!r} sets modality {forced}, but modality {modality!r} was given.")
        self.modality: str | None = forced or (str(modality) if modality else None)
        number = isinstance(noise_std, (int, float)) and not isinstance(noise_std, bool)
        if noise_std is not None and not (number and math.isfinite(noise_std) and noise_std >= 0):
            raise ValueError(f"noise_std must be a number >= 0 in the image's units (HU for CT), got {noise_std!r}.")
        self.noise_std = None if noise_std is None else float(noise_std)
        self.dermoscopy = dermoscopy
        self.clinical = clinical
        unset = clinical_ct is not None and clinical_ct.checkpoint is None and clinical_ct.predictor is None
        self.clinical_ct = None if unset else clinical_ct
        self.scale = int(scale)
        self.predictor_factory = predictor_factory
        self._fixed: ModelSpec | None = None
        self._built: dict[tuple[int, bool], Callable[[torch.Tensor], torch.Tensor]] = {}

    @classmethod
    def fixed(cls, spec: ModelSpec, modality: str | None = None, scale: int | None = None) -> ModelRouter:
        """A router with one model for every input whose channel count it takes (others are refused).

        Args:
            spec: the model.
            modality: modality override for every input.
            scale: output/input size ratio (default ``spec.scale``).
        """
        router = cls(modality=modality, scale=spec.scale if scale is None else scale)
        router._fixed = spec
        return router

    def route(self, image: LoadedImage) -> Route:
        """The model for ``image`` (read with ``modality=self.modality``), built if needed.

        Raises:
            ValueError: one line naming the file: the chosen model does not fit it, its weights are missing or
                do not fit its network, or it works at another scale.
        """
        kind = image_kind(image)
        what = _describe(image, kind)
        if self._fixed is not None:
            if image.channels != self._fixed.image_channels:
                raise ValueError(
                    f"{image.source}: {what} has {image.channels} channel(s) but the model takes "
                    f"{self._fixed.image_channels}; pass a model made for {image.channels}-channel images."
                )
            return self._answer(image, "model", self._fixed, what)
        if kind is ImageKind.PHOTO:
            if self.model is not ModelChoice.AUTO and self.model is not ModelChoice.DERMOSCOPY:
                raise ValueError(
                    f"{image.source}: {what}; the {self.model.value} choice runs the clinical model, which takes "
                    "grayscale images: use --model auto (or dermoscopy) for photographs."
                )
            if self.modality is not None:
                raise ValueError(
                    f"{image.source}: {what}, but modality {self.modality} was given; drop the modality "
                    "override for photographs."
                )
            return self._answer(image, ModelChoice.DERMOSCOPY.value, self.dermoscopy, what)
        if self.model is ModelChoice.DERMOSCOPY:
            hint = " (its grey pixels only)" if kind is ImageKind.COLOUR_MEDICAL else ""
            raise ValueError(
                f"{image.source}: {what}; the dermoscopy model takes RGB photographs: use --model auto (or clinical) "
                f"for it{hint}."
            )
        grey_only = kind is ImageKind.COLOUR_MEDICAL
        if self.clinical_ct is not None and modality_noise(image.modality) is not ModalityNoise.RICIAN:
            return self._answer(image, CLINICAL_CT, self.clinical_ct, what, grey_pixels_only=grey_only)
        return self._answer(image, ModelChoice.CLINICAL.value, self.clinical, what, grey_pixels_only=grey_only)

    def _answer(
        self, image: LoadedImage, name: str, spec: ModelSpec | None, what: str, grey_pixels_only: bool = False
    ) -> Route:
        if spec is None:
            raise ValueError(
                f"{image.source}: {what} needs the {name} model, which this configuration does not define."
            )
        if spec.scale != self.scale:
            raise ValueError(
                f"{image.source}: {what} needs the {name} model, which works at scale {spec.scale}, but scale "
                f"{self.scale} was asked; there is no {name} model for that scale."
            )
        if image.channels != spec.image_channels and not grey_pixels_only:
            raise ValueError(
                f"{image.source}: {what} has {image.channels} channel(s) but the {name} model takes "
                f"{spec.image_channels}; pass a model made for {image.channels}-channel images."
            )
        if self.noise_std is not None and not getattr(spec.network, "noise_level_input", False):
            raise ValueError(
                f"{image.source}: {what} goes to the {name} model, which has no noise-level input to tell "
                f"noise_std {self.noise_std:g}; leave noise_std unset (null) for it."
            )
        ensemble = spec.predictor is None and spec.ensembles(image)  # a ready predictor is used as given
        predictor = self._predictor(image, name, spec, what, ensemble)
        return Route(name, spec, predictor, grey_pixels_only, self.modality, ensemble, self.noise_std)

    def _predictor(self, image: LoadedImage, name: str, spec: ModelSpec, what: str, ensemble: bool):
        if spec.predictor is not None:
            return spec.predictor
        if (id(spec), ensemble) in self._built:
            return self._built[(id(spec), ensemble)]
        if spec.checkpoint is None or not Path(spec.checkpoint).is_file():
            where = "none is set" if spec.checkpoint is None else f"{spec.checkpoint} does not exist"
            overlay = _TRAINING_OVERLAY.get(name)
            train = f" (train it with {overlay})" if overlay else ""
            other = "; the photo model is not used instead" if overlay else ""
            raise ValueError(
                f"{image.source}: {what} needs the {name} model, but its weights are missing ({where}): pass "
                f"--{spec.option} PATH{train}{other}."
            )
        factory = self.predictor_factory or _default_factory
        try:
            predictor = factory(spec.network, checkpoint=spec.checkpoint, self_ensemble=ensemble)
        except ValueError as e:  # weights that do not fit (networks.predictor.load_weights), one line
            raise ValueError(
                f"{image.source}: {what} needs the {name} model: {e}; pass {name} model weights as --{spec.option}."
            ) from None
        self._built[(id(spec), ensemble)] = predictor
        return predictor


def _default_factory(network: nn.Module, checkpoint: str | Path, self_ensemble: bool = False):
    from medical_denoise.networks.predictor import GeneratorPredictor

    return GeneratorPredictor(network, checkpoint, self_ensemble=self_ensemble)


def _describe(image: LoadedImage, kind: ImageKind) -> str:
    """'grayscale CT image', 'RGB photograph', 'colour US image' for messages."""
    modality = str(image.modality)
    if kind is ImageKind.PHOTO:
        return "RGB photograph"
    if kind is ImageKind.COLOUR_MEDICAL:
        return f"colour {modality} image"
    label = "" if modality.lower() in ("photo", "unknown") else f" {modality}"
    return f"grayscale{label} image"


def log_route(image: LoadedImage, route: Route, mapping: IntensityMapping, mapped_sample, note: str = "") -> None:
    """Tell the user which model and mapping an image got, and the noise level it faces (the models are blind).

    Args:
        image: the input.
        route: the router's answer for it.
        mapping: its intensity mapping.
        mapped_sample: the (part of the) image the noise level is estimated on, already in the network range.
        note: appended inside the brackets, e.g. which crop the estimate comes from.
    """
    told = "" if route.noise_std is None else f", told noise std {route.noise_std:g} in its units"
    logger.info(
        "%s: %s model%s, %s %s mapping [%g, %g] -> [0, 1], estimated noise sigma %.1f (0-255 scale of that range%s)%s",
        image.source, route.name, " (8-fold self-ensemble)" if route.self_ensemble else "", image.modality,
        mapping.kind, mapping.low, mapping.high, estimate_noise_level(mapped_sample), note, told,
    )  # fmt: skip

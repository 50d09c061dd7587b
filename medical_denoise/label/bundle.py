"""What a serving app needs from the ``gan_denoise`` bundle: its model router (networks, weights, inferer) and settings.

:func:`load_bundle_router` builds the bundle's ``router`` exactly as ``monai.bundle run inference`` does (RGB
photographs -> the dermoscopy model, grayscale MR -> the clinical 2.5D model, other grayscale -> its CT fine-tune; see
:mod:`medical_denoise.io.routing`), with weights that are reloaded when their file changes.
:func:`load_bundle_model` gives the dermoscopy generator alone.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.inferers import Inferer
from torch import nn

from medical_denoise.bundle import bundle_path
from medical_denoise.io.routing import ModelRouter, ModelSpec

__all__ = [
    "DEFAULT_BUNDLE",
    "BundleModel",
    "BundleRouter",
    "ReloadingPredictor",
    "bundle_parser",
    "load_bundle_model",
    "load_bundle_router",
]

# the bundle inside an installed wheel, or the repository's bundles/gan_denoise for a checkout
DEFAULT_BUNDLE = bundle_path()
# inference.yaml is merged on top of train.yaml, which holds the network and channel settings
CONFIGS = ("configs/train.yaml", "configs/inference.yaml")
# the serving app's option for each model's weights, named in the router's refusals ("pass --conf weights PATH")
WEIGHTS_OPTIONS = {
    "dermoscopy": "conf weights",
    "clinical": "conf clinical_weights",
    "clinical_ct": "conf clinical_ct_weights",
}


@dataclass
class BundleModel:
    """The generator of a ``gan_denoise`` bundle, without weights loaded.

    Args:
        network: the generator as the bundle builds it (random weights).
        weights: checkpoint file to load into ``network`` (a state dict or a training checkpoint).
        channels: channels the network takes and returns.
        inferer: the bundle's inferer for large images (a ``SlidingWindowInferer``).
        roi_size: the inferer's window; images no larger than it run whole.
        batch_size: slices per forward pass for volumes.
        self_ensemble: average over flips/rotations, as the bundle's ``inference`` does.
        name: bundle name from ``metadata.json``.
        version: bundle version from ``metadata.json``.
    """

    network: nn.Module
    weights: Path
    channels: int
    inferer: Inferer
    roi_size: tuple[int, ...]
    batch_size: int
    self_ensemble: bool
    name: str
    version: str


class ReloadingPredictor:
    """One model's predictor that is rebuilt when its weights file changes (as MONAI Label's infer tasks reload).

    The router caches the predictor it builds for a model; :meth:`refresh`, called once per request, reloads
    the weights when the file's modification time changed, so a server picks up a retrained checkpoint without a
    restart, and never mixes two checkpoints within one volume.

    Args:
        factory: builds the actual predictor: ``factory(network, checkpoint=..., self_ensemble=...)`` (the
            bundle's ``predictor``, a :class:`~medical_denoise.networks.GeneratorPredictor` with its inferer).
        network: the model's network (weights are loaded into it).
        checkpoint: its weights file.
        self_ensemble: passed to ``factory``.

    Raises:
        ValueError: (from ``factory``) the weights do not fit the network.
    """

    def __init__(
        self,
        factory: Callable[..., Callable[[torch.Tensor], torch.Tensor]],
        network: nn.Module,
        checkpoint: str | Path,
        self_ensemble: bool = False,
    ) -> None:
        self.factory = factory
        self.network = network
        self.checkpoint = Path(checkpoint)
        self.self_ensemble = self_ensemble
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._predictor: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.refresh()

    def refresh(self) -> None:
        """Reload the weights if their file changed since the last load.

        Raises:
            ValueError: the file is gone, or its new weights do not fit the network (the model then stays
                refused until a loadable file is back: a failed load may have changed part of the network).
        """
        with self._lock:
            try:
                stamp = os.stat(self.checkpoint).st_mtime_ns
            except FileNotFoundError:
                self._stamp, self._predictor = None, None
                raise ValueError(f"weights {self.checkpoint} no longer exist") from None
            if stamp == self._stamp and self._predictor is not None:
                return
            self._stamp, self._predictor = None, None
            self._predictor = self.factory(self.network, checkpoint=self.checkpoint, self_ensemble=self.self_ensemble)
            self._stamp = stamp

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._predictor is None:
            raise ValueError(f"weights {self.checkpoint} are not loaded (see the previous error)")
        return self._predictor(x)


class _ReloadingFactory:
    """The router's ``predictor_factory``: one :class:`ReloadingPredictor` per network and weights file."""

    def __init__(self, factory: Callable[..., Callable[[torch.Tensor], torch.Tensor]]) -> None:
        self.factory = factory
        self._built: dict[tuple[int, str, bool], ReloadingPredictor] = {}

    def __call__(self, network: nn.Module, checkpoint: str | Path, self_ensemble: bool = False) -> ReloadingPredictor:
        key = (id(network), str(checkpoint), bool(self_ensemble))
        if key not in self._built:
            self._built[key] = ReloadingPredictor(self.factory, network, checkpoint, self_ensemble)
        return self._built[key]


@dataclass
class BundleRouter:
    """The bundle's models for a serving app, routed as the bundle's ``inference`` routes them.

    Args:
        router: the bundle's ``router`` (:class:`~medical_denoise.io.ModelRouter`); its predictors are
            :class:`ReloadingPredictor`, and its refusals name the app's options (``--conf weights PATH``).
        batch_size: output slices per predictor call.
        description: DerivationDescription of derived DICOM outputs (a model's own ``description`` wins).
        name: bundle name from ``metadata.json``.
        version: bundle version from ``metadata.json``.
    """

    router: ModelRouter
    batch_size: int
    description: str
    name: str
    version: str

    def specs(self) -> dict[str, ModelSpec]:
        """The models the router knows, by route name ("dermoscopy", "clinical", "clinical_ct")."""
        router = self.router
        pairs = (("dermoscopy", router.dermoscopy), ("clinical", router.clinical), ("clinical_ct", router.clinical_ct))
        return {name: spec for name, spec in pairs if spec is not None}

    def weights(self) -> dict[str, str | None]:
        """Each model's weights file (None: none set), by route name."""
        return {name: None if s.checkpoint is None else str(s.checkpoint) for name, s in self.specs().items()}

    def available(self) -> list[str]:
        """Models whose weights file exists now (the others refuse their inputs)."""
        return [name for name, path in self.weights().items() if path is not None and Path(path).is_file()]

    def preload(self) -> None:
        """Load the weights of every available model now instead of at its first request."""
        factory = self.router.predictor_factory
        for name in self.available():
            spec = self.specs()[name]
            if spec.predictor is None and factory is not None:
                factory(spec.network, checkpoint=spec.checkpoint, self_ensemble=spec.self_ensemble)


def bundle_parser(bundle_dir: str | Path = DEFAULT_BUNDLE, overrides: Mapping[str, Any] | None = None) -> ConfigParser:
    """The bundle's inference config (``train.yaml`` + ``inference.yaml``) with ``bundle_root`` and overrides set.

    Args:
        bundle_dir: the bundle folder (holding ``configs/``).
        overrides: config ids to replace, as on the bundle command line, e.g. ``{"network_def#channels": [8, 16]}``.

    Raises:
        FileNotFoundError: a config file or ``metadata.json`` is missing.
    """
    bundle_dir = Path(bundle_dir).resolve()
    files = [bundle_dir / c for c in CONFIGS]
    for f in [*files, bundle_dir / "configs" / "metadata.json"]:
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found: is {bundle_dir} a gan_denoise bundle?")
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser["bundle_root"] = str(bundle_dir)
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser


def _metadata(bundle_dir: Path) -> dict[str, Any]:
    return json.loads((bundle_dir / "configs" / "metadata.json").read_text())


def load_bundle_router(
    bundle_dir: str | Path = DEFAULT_BUNDLE,
    weights: str | Path | None = None,
    clinical_weights: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    clinical_ct_weights: str | Path | None = None,
) -> BundleRouter:
    """Build the bundle's ``router`` from its configs, as ``monai.bundle run inference`` does.

    The networks, weights, inferer, model choice (``model``), modality override (``modality``), context slices
    and fidelity guard all come from ``train.yaml`` + ``inference.yaml``; nothing is defined twice. A model
    whose default weights are missing (``models/clinical.pt`` before it is trained) does not stop the app: its
    inputs are refused with the router's one-line message until the file exists.

    Args:
        bundle_dir: the bundle folder (holding ``configs/``).
        weights: dermoscopy (RGB photograph) weights; default the config's ``checkpoint`` (``models/model.pt``).
        clinical_weights: grayscale 2.5D weights; default the config's ``clinical_checkpoint``
            (``models/clinical.pt``).
        overrides: config ids to replace, as on the bundle command line, e.g. ``{"model": "ct"}`` or
            ``{"clinical_network_def#channels": [8, 16]}``.
        clinical_ct_weights: weights for grayscale inputs other than MR; default the config's
            ``clinical_ct_checkpoint`` (``models/clinical_ct.pt`` with the shipped clinical weights, else
            ``clinical_weights`` serve those inputs too).

    Raises:
        FileNotFoundError: a config file or ``metadata.json`` is missing, a weights file given here does not
            exist, or no model has weights.
        ValueError: an invalid ``model`` or ``modality`` setting.
    """
    bundle_dir = Path(bundle_dir).resolve()
    settings = dict(overrides or {})
    given = {
        "checkpoint": ("weights", weights),
        "clinical_checkpoint": ("clinical_weights", clinical_weights),
        "clinical_ct_checkpoint": ("clinical_ct_weights", clinical_ct_weights),
    }
    for key, (option, path) in given.items():
        if path is None:
            continue
        if not Path(path).is_file():  # asked for by name: a typo must not start a server that refuses everything
            raise FileNotFoundError(f"{option} {path} not found (--conf {option}).")
        settings[key] = str(Path(path).resolve())
    for name, option in WEIGHTS_OPTIONS.items():
        settings[f"router#{name}#option"] = option
    parser = bundle_parser(bundle_dir, settings)
    try:
        router = parser.get_parsed_content("router")
    except RuntimeError as e:  # MONAI wraps a component's error; the router's one line ("model must be ...") is it
        if isinstance(e.__cause__, ValueError):
            raise e.__cause__ from None
        raise
    router.predictor_factory = _ReloadingFactory(router.predictor_factory or _generator_predictor)
    metadata = _metadata(bundle_dir)
    models = BundleRouter(
        router=router,
        batch_size=int(parser.get_parsed_content("batch_size")),
        description=str(parser.get_parsed_content("description")),
        name=str(metadata.get("name", bundle_dir.name)),
        version=str(metadata.get("version", "")),
    )
    if not models.available():
        listed = ", ".join(f"{name} {path}" for name, path in models.weights().items())
        raise FileNotFoundError(
            f"no model weights found ({listed}): train the bundle or pass --conf weights PATH / "
            "--conf clinical_weights PATH."
        )
    return models


def _generator_predictor(network: nn.Module, checkpoint: str | Path, self_ensemble: bool = False):
    from medical_denoise.networks.predictor import GeneratorPredictor

    return GeneratorPredictor(network, checkpoint, self_ensemble=self_ensemble)


def load_bundle_model(
    bundle_dir: str | Path = DEFAULT_BUNDLE,
    weights: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> BundleModel:
    """Build the bundle's dermoscopy generator and inferer alone (no routing; the app uses :func:`load_bundle_router`).

    Args:
        bundle_dir: the bundle folder (holding ``configs/``).
        weights: generator checkpoint; default the inference config's ``checkpoint`` (the shipped ``models/model.pt``).
        overrides: config ids to replace, as on the bundle command line, e.g. ``{"network_def#channels": [8, 16]}``.

    Raises:
        FileNotFoundError: a config file, ``metadata.json`` or the weights file is missing.
    """
    bundle_dir = Path(bundle_dir).resolve()
    parser = bundle_parser(bundle_dir, overrides)
    weights = Path(weights) if weights else Path(parser.get_parsed_content("checkpoint"))  # inference's default
    if not weights.is_file():
        raise FileNotFoundError(
            f"generator weights {weights} not found: train the bundle (its checkpoints/model.pt) or pass another "
            "checkpoint (MONAI Label: --conf weights PATH)."
        )
    metadata = _metadata(bundle_dir)
    return BundleModel(
        network=parser.get_parsed_content("network_def", instantiate=True),
        weights=weights.resolve(),
        channels=int(parser.get_parsed_content("channels")),
        inferer=parser.get_parsed_content("inferer", instantiate=True),
        roi_size=tuple(int(s) for s in parser.get_parsed_content("roi_size")),
        batch_size=int(parser.get_parsed_content("batch_size")),
        self_ensemble=bool(parser.get_parsed_content("self_ensemble")),
        name=str(metadata.get("name", bundle_dir.name)),
        version=str(metadata.get("version", "")),
    )

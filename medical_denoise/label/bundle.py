"""What a serving app needs from the ``gan_denoise`` bundle: network, weights, channels and inferer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import medical_denoise
from monai.bundle import ConfigParser
from monai.inferers import Inferer
from torch import nn

__all__ = ["DEFAULT_BUNDLE", "BundleModel", "bundle_parser", "load_bundle_model"]

# the repository's bundle; an installed (non-editable) package must be given a bundle folder explicitly
DEFAULT_BUNDLE = Path(medical_denoise.__file__).resolve().parents[1] / "bundles" / "gan_denoise"
# inference.yaml is merged on top of train.yaml, which holds the network and channel settings
CONFIGS = ("configs/train.yaml", "configs/inference.yaml")


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


def load_bundle_model(
    bundle_dir: str | Path = DEFAULT_BUNDLE,
    weights: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> BundleModel:
    """Build the bundle's generator and inferer from its configs, as ``monai.bundle run inference`` would.

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
    metadata = json.loads((bundle_dir / "configs" / "metadata.json").read_text())
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

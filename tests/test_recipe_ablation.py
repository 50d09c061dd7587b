"""benchmarks/recipe_ablation.py: every variant names options train.yaml really has, and each builds its networks.

MONAI's config parser adds an unknown ``--key`` silently, so a misspelt variant would train the base recipe under
another name; this catches it without training anything.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "gan_denoise"


def load_ablation():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # its helper module sits next to it
    try:
        spec = importlib.util.spec_from_file_location("recipe_ablation", ROOT / "benchmarks" / "recipe_ablation.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


VARIANTS = load_ablation().VARIANTS


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_options_exist_and_build(name):
    variant = VARIANTS[name]
    assert len(variant.options) % 2 == 0
    parser = ConfigParser()
    files = ["train.yaml", "gpu.yaml", *(Path(f).name for f in variant.overlays)]
    parser.read_config([str(BUNDLE / "configs" / f) for f in files])
    parser.update({"bundle_root": str(BUNDLE), "device": "$torch.device('cpu')"})
    for key, value in zip(variant.options[::2], variant.options[1::2], strict=True):
        assert key.startswith("--")
        key = key[2:]
        assert key in parser, f"{name}: {key} is not a train.yaml option"
        parser[key] = ast.literal_eval(value)
    network = parser.get_parsed_content("network_def")
    discriminator = parser.get_parsed_content("discriminator_def")
    loss = parser.get_parsed_content("pixel_loss")
    x = torch.rand(1, 3, *parser.get_parsed_content("patch_size"))
    with torch.no_grad():
        y = network(x)  # what validation and inference feed: the colour channels only
        # what training feeds: the degradations' output, as the discriminator's condition too
        chain = Compose(
            parser.get_parsed_content("train#augmentations") + parser.get_parsed_content("train#degradations")
        )
        sample = chain({"image": torch.rand(3, 128, 128)})[0]
        condition = sample["image"][None]
        z = network(condition)
        discriminator(condition, z)
    assert y.shape == x.shape and z.shape == x.shape and float(loss(y, x)) >= 0.0
    assert condition.shape[1] == 3 + int(network.noise_level_input)

"""configs/metadata.json against the MONAI bundle specification, offline, and every shipped network against it.

MONAI's ``verify_metadata`` downloads the JSON schema named in ``schema``; these tests encode its required keys
instead, so they run without a network. ``verify_net_in_out`` and ``ckpt_export`` run through MONAI's Python API,
which is what ``python -m monai.bundle verify_net_in_out|ckpt_export`` calls.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import PackageNotFoundError, version

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out

import medical_denoise
from medical_denoise.networks import load_generator
from tests.utils import BUNDLE

META_FILE = BUNDLE / "configs" / "metadata.json"
# the required top-level keys of MONAI's meta_schema_20240725.json (the bundle specification's mandatory keys;
# required_packages_version replaced the deprecated optional_packages_version) and their JSON types
REQUIRED = {
    "version": str,
    "monai_version": str,
    "pytorch_version": str,
    "numpy_version": str,
    "required_packages_version": dict,
    "task": str,
    "description": str,
    "authors": str,
    "copyright": str,
    "network_data_format": dict,
}
# every input/output tensor format must hold these (bundle specification, "Tensor format specifiers")
TENSOR_KEYS = {"type", "format", "modality", "num_channels", "spatial_shape", "dtype", "value_range", "is_patch_data",
               "channel_def"}  # fmt: skip
# each shipped weights file: its data-format key in metadata.json, net id, configs and output/input size ratio
NETWORKS = {
    "model.pt": ("network_data_format", "network_def", ["configs/train.yaml"], 1),
    "sr_x2.pt": ("sr_x2_data_format", "network_def", ["configs/train.yaml", "configs/sr.yaml"], 2),
    "clinical.pt": ("clinical_data_format", "clinical_network_def", ["configs/train.yaml"], 1),
    "clinical_ct.pt": ("clinical_ct_data_format", "clinical_ct_network_def", ["configs/train.yaml"], 1),
}
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads(META_FILE.read_text())


def _configs(files: list[str]) -> list[str]:
    return [str(BUNDLE / f) for f in files]


def _spatial(shape: list, n: int = 1) -> tuple[int, ...]:
    """A size that fits the spec's shape expressions (``"8*n"`` -> 8 for n = 1)."""
    return tuple(int(eval(str(s), {"__builtins__": {}}, {"n": n})) for s in shape)  # noqa: S307 (own file)


def test_metadata_has_the_specification_required_fields(meta):
    missing = [k for k in REQUIRED if k not in meta]
    assert not missing, f"{META_FILE}: missing required keys {missing}"
    for key, kind in REQUIRED.items():
        assert isinstance(meta[key], kind) and meta[key], f"{META_FILE}: {key} must be a non-empty {kind.__name__}"
    assert "optional_packages_version" not in meta, "deprecated: MONAI renames it to required_packages_version"
    assert SEMVER.match(meta["version"]) and meta["version"] in meta.get("changelog", {})
    for key in ("monai_version", "pytorch_version", "numpy_version"):
        assert SEMVER.match(meta[key]), key
    assert set(meta["network_data_format"]) >= {"inputs", "outputs"}
    assert all(isinstance(v, str) for v in meta.get("supported_apps", {}).values())


def test_required_packages_are_pinned_installed_and_include_this_package(meta):
    packages = meta["required_packages_version"]
    assert all(isinstance(v, str) and v for v in packages.values())
    assert packages["medical-denoise"] == medical_denoise.__version__
    assert packages["monai"] == meta["monai_version"] and packages["torch"] == meta["pytorch_version"]
    assert packages["numpy"] == meta["numpy_version"]
    not_installed = []
    for name in packages:
        try:
            version(name)
        except PackageNotFoundError:
            not_installed.append(name)
    assert not not_installed, f"{META_FILE}: required packages not installed here: {not_installed}"


def test_every_shipped_network_has_a_data_format(meta):
    shipped = {p.name for p in (BUNDLE / "models").glob("*.pt")}
    assert {"model.pt", "sr_x2.pt"} <= shipped
    assert shipped <= set(NETWORKS), f"weights without a data format in {META_FILE}: {shipped - set(NETWORKS)}"
    for name, (key, *_) in NETWORKS.items():
        fmt = meta.get(key)
        assert isinstance(fmt, dict), f"{META_FILE}: no {key} for models/{name}"
        assert set(fmt["inputs"]) == {"image"} and set(fmt["outputs"]) == {"pred"}, key
        for side in ("inputs", "outputs"):
            for tensor_name, tensor in fmt[side].items():
                where = f"{key}#{side}#{tensor_name}"
                assert TENSOR_KEYS <= set(tensor), f"{where}: missing {TENSOR_KEYS - set(tensor)}"
                assert len(tensor["channel_def"]) == tensor["num_channels"], where
                assert tensor["dtype"] == "float32" and len(tensor["value_range"]) in (0, 2), where


@pytest.mark.parametrize("weights", list(NETWORKS))
def test_network_matches_its_data_format(meta, weights):
    """MONAI's verify_net_in_out (channels, dtype) on the entry's network, plus the spatial size it promises."""
    key, net_id, configs, scale = NETWORKS[weights]
    fmt = meta[key]
    # verify_net_in_out reads network_data_format: point it at this network's entry, as the README's commands do
    verify_net_in_out(net_id=net_id, meta_file=str(META_FILE), config_file=_configs(configs), device="cpu",
                      bundle_root=str(BUNDLE), **{"_meta_#network_data_format": fmt})  # fmt: skip
    parser = ConfigParser()
    parser.read_config(_configs(configs))
    parser.update({"bundle_root": str(BUNDLE)})
    net = parser.get_parsed_content(net_id).eval()
    for n in (1, 3):
        size_in = _spatial(fmt["inputs"]["image"]["spatial_shape"], n)
        size_out = _spatial(fmt["outputs"]["pred"]["spatial_shape"], n)
        assert size_out == tuple(scale * s for s in size_in), key
        with torch.no_grad():
            out = net(torch.rand(1, fmt["inputs"]["image"]["num_channels"], *size_in))
        assert tuple(out.shape[2:]) == size_out, f"{weights}: {tuple(out.shape)} for input size {size_in}"


@pytest.mark.parametrize("weights", list(NETWORKS))
def test_shipped_weights_export_to_torchscript(meta, weights, tmp_path):
    """MONAI's ckpt_export with the weights' net id and configs; the TorchScript module equals the eager one."""
    key, net_id, configs, _ = NETWORKS[weights]
    ckpt = BUNDLE / "models" / weights
    if not ckpt.is_file():
        pytest.skip(f"{ckpt} is not shipped yet")
    ts = tmp_path / f"{ckpt.stem}.ts"
    ckpt_export(net_id=net_id, filepath=str(ts), ckpt_file=str(ckpt), meta_file=str(META_FILE),
                config_file=_configs(configs), bundle_root=str(BUNDLE),
                **{"_meta_#network_data_format": meta[key]})  # fmt: skip
    extra = {"metadata.json": ""}
    exported = torch.jit.load(str(ts), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["network_data_format"] == meta[key]  # the export describes itself

    parser = ConfigParser()
    parser.read_config(_configs(configs))
    parser.update({"bundle_root": str(BUNDLE)})
    eager = load_generator(parser.get_parsed_content(net_id), ckpt).eval()
    x = torch.rand(1, meta[key]["inputs"]["image"]["num_channels"], 37, 50)  # not a multiple of 8: padding path
    with torch.no_grad():
        torch.testing.assert_close(exported(x), eager(x), atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------------------- named config seams


def _parsed(name: str, overlay: str | None):
    parser = ConfigParser()
    files = [BUNDLE / "configs" / "train.yaml"] + ([BUNDLE / "configs" / overlay] if overlay else [])
    parser.read_config([str(f) for f in files])
    parser.update({"bundle_root": str(BUNDLE)})
    return parser.get_parsed_content(name, instantiate=True)


@pytest.mark.parametrize(
    ("overlay", "train_chain", "val_chain"),
    [
        (None, ["AddNoised"], ["AddNoised"]),
        ("sr.yaml", ["GaussianBlurd", "Downsampled", "AddNoised"], ["ModCropd", "GaussianBlurd", "Downsampled", "AddNoised"]),
        ("deblur.yaml", ["GaussianBlurd", "AddNoised"], ["GaussianBlurd", "AddNoised"]),
    ],
)  # fmt: skip
def test_overlays_replace_the_degradation_seams_and_keep_the_augmentations(overlay, train_chain, val_chain):
    """An overlay swaps `train#degradations`/`validate#degradations` whole; loading and augmentations stay train.yaml's."""
    names = lambda transforms: [type(t).__name__ for t in transforms]  # noqa: E731
    base_augmentations = names(_parsed("train#augmentations", None))
    assert "AddNoised" not in base_augmentations and "RandSpatialCropSamplesd" in base_augmentations
    train = names(_parsed("train#preprocessing", overlay).transforms)
    load = names(_parsed("load_transforms", overlay))
    assert train == load + base_augmentations + train_chain
    assert names(_parsed("validate#preprocessing", overlay).transforms) == load + val_chain


def _merged(overlays: list[str], tmp_path) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / f) for f in ["train.yaml", *overlays]])
    parser.update({"bundle_root": str(BUNDLE), "output_dir": str(tmp_path)})
    return parser


@pytest.mark.parametrize(
    "order", [["multi_gpu_train.yaml", "clinical.yaml"], ["clinical.yaml", "multi_gpu_train.yaml"]]
)
def test_clinical_and_multi_gpu_compose_in_either_order(order, tmp_path):
    """clinical.yaml sets the draws (weights, draws per epoch), multi_gpu_train.yaml the ranks; neither undoes the
    other, so each rank draws its share of the modality-balanced epoch."""
    from torch.utils.data import WeightedRandomSampler

    from medical_denoise.data import training_sampler

    parser = _merged(order, tmp_path)
    assert parser.get_parsed_content("distributed") is True
    assert parser.get_parsed_content("draws_per_epoch") == 48
    assert (
        "balanced_weights" in parser["train#draw_weights"]
        and parser["train#dataloader#sampler"].replace("::", "#") == "@train#sampler"
    )
    assert parser["network_def"] == "@clinical_network_def"
    # what the sampler expression builds from those keys on 2 ranks (no process group here)
    items = [{"modality": "CT"}, {"modality": "MR"}, {"modality": "MR"}]
    sampler = training_sampler(items, [1.0, 0.5, 0.5], parser.get_parsed_content("draws_per_epoch"), True, 2)
    assert isinstance(sampler, WeightedRandomSampler) and len(sampler) == 24


def test_training_sampler_defaults_to_a_shuffled_epoch_and_shards_it_on_several_ranks():
    from monai.data import DistributedSampler

    from medical_denoise.data import training_sampler

    items = list(range(5))
    assert training_sampler(items) is None  # the loader shuffles, every item once
    sharded = training_sampler(items, distributed=True, num_replicas=2, rank=1)
    assert isinstance(sharded, DistributedSampler) and len(sharded) == 3  # even: 3 batches of items on each rank
    assert len(training_sampler(items, num_samples=7)) == 7
    with pytest.raises(ValueError, match="2 draw weights for 5 training items"):
        training_sampler(items, [1.0, 2.0], 4)


@pytest.mark.parametrize(
    "order",
    [["sr.yaml", "clinical.yaml"], ["clinical.yaml", "deblur.yaml"], ["noise_level_map.yaml", "clinical.yaml"]],
)
def test_clinical_refuses_an_overlay_whose_degradations_it_would_ignore(order, tmp_path):
    """(clinical.yaml then sr.yaml is refused by MONAI's parser already: sr.yaml merges into a network_def that
    clinical.yaml made a reference.)"""
    from medical_denoise.errors import UsageError, root_error

    parser = _merged(order, tmp_path)
    (check,) = [i for i, e in enumerate(parser["initialize"]) if "check_clinical_overlay" in str(e)]
    with pytest.raises(Exception) as err:
        parser.get_parsed_content(f"initialize#{check}")
    assert isinstance(root_error(err.value), UsageError)
    assert "cannot be merged with sr.yaml, deblur.yaml or noise_level_map.yaml" in str(root_error(err.value))
    parser = _merged(["clinical.yaml"], tmp_path)
    assert parser.get_parsed_content(f"initialize#{check}") is None  # clinical alone passes


def test_a_curated_datalist_file_is_train_yamls_option_for_every_task(tmp_path):
    """`--datalist_file` (e.g. docs/isic_datalist.json) replaces the automatic split; its dataset_dir is read
    relative to the JSON's own folder."""
    (tmp_path / "data").mkdir()
    listing = tmp_path / "lists" / "split.json"
    listing.parent.mkdir()
    listing.write_text(json.dumps({"dataset_dir": "../data", "training": [], "test_isic_train": []}))
    parser = _merged([], tmp_path)
    parser.update({"datalist_file": str(listing)})
    assert parser.get_parsed_content("datalist") == str(listing)
    assert parser.get_parsed_content("data_root") == str((tmp_path / "data").resolve())
    assert "datalist_file" not in ConfigParser.load_config_file(str(BUNDLE / "configs" / "clinical.yaml"))

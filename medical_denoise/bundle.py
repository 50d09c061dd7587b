"""Where the ``gan_denoise`` bundle is: inside an installed wheel, or in the repository for a source checkout.

The repository keeps the bundle once, in ``bundles/gan_denoise``. A wheel carries it as package data at
``medical_denoise/bundles/gan_denoise`` (``setup.cfg`` maps the folder there at build time), and an editable
install or a plain checkout uses the repository's folder. Only the standard library is imported here, so the
``medical-denoise`` command can answer ``bundle-path`` and ``--version`` without loading PyTorch.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["BUNDLE_NAME", "bundle_config_file", "bundle_metadata", "bundle_path"]

BUNDLE_NAME = "gan_denoise"
_PACKAGE_DIR = Path(__file__).resolve().parent


def bundle_path(name: str = BUNDLE_NAME) -> Path:
    """The folder of bundle ``name`` (holding ``configs/``, ``models/``, ``docs/``).

    Args:
        name: bundle folder name.

    Raises:
        FileNotFoundError: neither the installed copy nor the repository's folder holds ``configs/metadata.json``.
    """
    candidates = (_PACKAGE_DIR / "bundles" / name, _PACKAGE_DIR.parent / "bundles" / name)  # wheel, then checkout
    for folder in candidates:
        if (folder / "configs" / "metadata.json").is_file():
            return folder
    raise FileNotFoundError(f"bundle {name!r} not found in {' or '.join(str(c) for c in candidates)}.")


def bundle_config_file(name: str, bundle_dir: str | Path | None = None) -> Path:
    """A config of the bundle by short name (``"clinical"`` -> ``configs/clinical.yaml``) or by path.

    Args:
        name: a file name in ``configs/`` with or without ``.yaml``, or a path to a config file.
        bundle_dir: the bundle folder (default: :func:`bundle_path`).

    Raises:
        FileNotFoundError: no such config, naming the ones the bundle has.
    """
    given = Path(name).expanduser()
    if given.suffix in (".yaml", ".yml", ".json") and given.is_file():
        return given.resolve()
    configs = Path(bundle_dir or bundle_path()) / "configs"
    for candidate in (configs / name, configs / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in configs.glob("*.yaml")))
    raise FileNotFoundError(f"{name}: no such config file, nor {configs / name}.yaml (bundle configs: {known}).")


def bundle_metadata(bundle_dir: str | Path | None = None) -> dict:
    """The bundle's ``configs/metadata.json`` (``version``, ``monai_version``, ``changelog`` ...).

    Args:
        bundle_dir: the bundle folder (default: :func:`bundle_path`).
    """
    path = Path(bundle_dir or bundle_path()) / "configs" / "metadata.json"
    with open(path, encoding="utf-8") as f:
        return json.load(f)

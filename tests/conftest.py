"""Shared pytest fixtures: the bundle, tiny-network overrides, the bundle runner and DICOM test data.

The fixtures hand out the helpers of ``tests/utils.py`` (import those directly where a module-level constant or a
``parametrize`` list needs them), as deepinv's ``tests/conftest.py`` does for its shared setup.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests import utils


@pytest.fixture(scope="session")
def bundle_root() -> Path:
    """The ``gan_denoise`` bundle folder of this checkout."""
    return utils.BUNDLE


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """Command-line overrides for a seconds-per-epoch network and data loader (:data:`tests.utils.TINY`)."""
    return list(utils.TINY)


@pytest.fixture(scope="session")
def run_bundle() -> Callable[..., object]:
    """:func:`tests.utils.run_bundle`: ``run_bundle("run", "training", *args, env=env)`` fails the test on error."""
    return utils.run_bundle


@pytest.fixture(scope="session")
def dicom_file() -> Callable[[str], Path]:
    """:func:`tests.utils.dicom_file`: a pydicom test file by name, or a skip if it needs ``pydicom-data``."""
    return utils.dicom_file


@pytest.fixture(scope="session")
def make_series() -> Callable[..., list[Path]]:
    """:func:`tests.utils.make_series`: ``make_series(folder, n=5, base=..., iop=..., spacing=..., seed=...)``."""
    return utils.make_series

"""Build script: everything is declared in setup.cfg except the package list, which setup.cfg cannot extend.

The bundle is kept once, in ``bundles/gan_denoise``; ``package_dir`` in setup.cfg maps that folder to the package
``medical_denoise.bundles.gan_denoise``, so wheels carry it as package data (see ``medical_denoise/bundle.py``).
"""

from setuptools import find_packages, setup

BUNDLE_PACKAGE = "medical_denoise.bundles.gan_denoise"

setup(packages=[*find_packages(include=["medical_denoise", "medical_denoise.*"]), BUNDLE_PACKAGE])

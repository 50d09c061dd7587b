"""MONAI Label app serving the ``gan_denoise`` bundle as an image-to-image (denoising) model.

``main.py`` is the app (``monailabel start_server --app medical_denoise/label``); it needs the separate
``.venv-label`` environment (``scripts/setup_label_env.sh``). :mod:`.bundle` needs MONAI only. Nothing here is
imported by ``medical_denoise`` itself. See ``docs/monai_label.md``.
"""

from __future__ import annotations

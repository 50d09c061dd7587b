"""MONAI Label app: serves the ``gan_denoise`` bundle's generator as an image-to-image model.

    monailabel start_server --app medical_denoise/label --studies STUDIES_DIR \
        [--conf weights PATH] [--conf bundle DIR] [--conf bundle_overrides JSON] [--conf model_name NAME]

Conf keys (all optional): ``bundle`` (default: the repository's ``bundles/gan_denoise``), ``weights`` (default:
``<bundle>/models/model.pt``), ``bundle_overrides`` (a JSON object of bundle config ids, as on the bundle command
line, e.g. ``{"network_def#channels": [8, 16]}`` for a checkpoint of another architecture), ``model_name``
(default ``gan_denoise``), ``preload`` (``true``: load weights at start). Training, active learning and scoring
are disabled: train with the bundle (``python -m monai.bundle run training ...``). See ``docs/monai_label.md``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.utils.others.generic import strtobool

import medical_denoise
from medical_denoise.label.bundle import DEFAULT_BUNDLE, load_bundle_model
from medical_denoise.label.infer import DenoiseInferTask

logger = logging.getLogger(__name__)


class MyApp(MONAILabelApp):
    """Inference-only app with one model, the bundle's generator (``/infer/<model_name>`` returns an image).

    Args:
        app_dir: the app folder (MONAI Label creates ``model/``, ``logs/`` ... in it).
        studies: the datastore folder or DICOMweb URL.
        conf: ``--conf`` key/value pairs, see the module docstring.
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        try:
            overrides = json.loads(conf.get("bundle_overrides", "{}"))
        except json.JSONDecodeError as e:
            raise ValueError(f"--conf bundle_overrides must be a JSON object: {e}") from e
        if not isinstance(overrides, dict):
            raise ValueError(f"--conf bundle_overrides must be a JSON object, got {overrides!r}")
        self.model_name = conf.get("model_name", "gan_denoise")
        # fails here, before serving, when the bundle or weights are missing
        self.bundle_model = load_bundle_model(conf.get("bundle", DEFAULT_BUNDLE), conf.get("weights"), overrides)
        self.preload = bool(strtobool(conf.get("preload", "false")))
        logger.info("serving %s (weights %s) as %r", self.bundle_model.name, self.bundle_model.weights, self.model_name)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="medical-denoise",
            description="GAN denoiser (medical-denoise gan_denoise bundle): returns the denoised image",
            version=medical_denoise.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        return {self.model_name: DenoiseInferTask(self.bundle_model, preload=self.preload)}

    def init_trainers(self) -> dict[str, TrainTask]:
        return {}  # training is the bundle's job; the GAN trainer is not a MONAI Label TrainTask

    def init_strategies(self) -> dict[str, Strategy]:
        return {}  # no labels to collect, so no active-learning sample selection

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        return {}

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["weights"] = str(self.bundle_model.weights)
        return info

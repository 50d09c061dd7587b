"""MONAI Label app: serves the ``gan_denoise`` bundle's models as one image-to-image model, routed per input.

    monailabel start_server --app medical_denoise/label --studies STUDIES_DIR \
        [--conf weights PATH] [--conf clinical_weights PATH] [--conf clinical_ct_weights PATH] \
        [--conf model auto] [--conf modality CT] \
        [--conf bundle DIR] [--conf bundle_overrides JSON] [--conf model_name NAME] [--conf preload true]

Each request's image gets its model from the bundle's ``router``, as the bundle's ``inference`` run id does: RGB
photographs -> the dermoscopy model, grayscale MR -> the clinical 2.5D model, other grayscale (CT, CR/DX, ...) -> its
CT fine-tune (HTTP 400 with a one-line reason when no model fits or its weights are missing).

Conf keys (all optional): ``bundle`` (default: the installed or repository ``bundles/gan_denoise``), ``weights``
(dermoscopy weights, default ``<bundle>/models/model.pt``), ``clinical_weights`` (grayscale 2.5D weights, default
``<bundle>/models/clinical.pt``), ``clinical_ct_weights`` (weights for grayscale inputs other than MR, default
``<bundle>/models/clinical_ct.pt``, or ``clinical_weights`` when those are given), ``model`` (``auto``,
``dermoscopy``, ``clinical``, ``ct`` or ``mr``, the bundle's ``model`` key), ``modality`` (overrides every input's
modality, e.g. ``CT`` for a NIfTI in HU), ``bundle_overrides`` (a JSON object of bundle config ids, as on the bundle
command line, e.g. ``{"network_def#channels": [8, 16]}`` for a checkpoint of another architecture), ``model_name``
(default ``gan_denoise``), ``preload`` (``true``: load weights at start). Training, active learning and scoring are
disabled: train with the bundle (``python -m monai.bundle run training ...``). See ``docs/monai_label.md``.
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
from medical_denoise.label.bundle import DEFAULT_BUNDLE, load_bundle_router
from medical_denoise.label.infer import DenoiseInferTask

logger = logging.getLogger(__name__)


class MyApp(MONAILabelApp):
    """Inference-only app with one model name, the bundle's routed models (``/infer/<model_name>`` returns an image).

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
        for key in ("model", "modality"):  # the bundle's own keys, as --model/--modality of its inference
            if conf.get(key):
                overrides[key] = conf[key]
        self.model_name = conf.get("model_name", "gan_denoise")
        # fails here, before serving, when the bundle is missing, a given weights file is missing, or no model
        # has weights; a model whose default weights are missing only refuses its own inputs
        self.models = load_bundle_router(
            conf.get("bundle", DEFAULT_BUNDLE),
            conf.get("weights"),
            conf.get("clinical_weights"),
            overrides,
            clinical_ct_weights=conf.get("clinical_ct_weights"),
        )
        self.preload = bool(strtobool(conf.get("preload", "false")))
        available = self.models.available()
        for name, path in self.models.weights().items():
            if name in available:
                logger.info("serving the %s model (weights %s) as %r", name, path, self.model_name)
            else:
                logger.warning("%s model weights %s not found: its inputs are refused until they exist", name, path)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="medical-denoise",
            description="GAN denoiser (medical-denoise gan_denoise bundle): returns the denoised image",
            version=medical_denoise.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        return {self.model_name: DenoiseInferTask(self.models, preload=self.preload)}

    def init_trainers(self) -> dict[str, TrainTask]:
        return {}  # training is the bundle's job; the GAN trainer is not a MONAI Label TrainTask

    def init_strategies(self) -> dict[str, Strategy]:
        return {}  # no labels to collect, so no active-learning sample selection

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        return {}

    def info(self) -> dict[str, Any]:
        info = super().info()
        weights = self.models.weights()
        info["weights"] = weights.get("dermoscopy")  # the photo model's, as before routing
        info["clinical_weights"] = weights.get("clinical")
        info["clinical_ct_weights"] = weights.get("clinical_ct")
        info["routing"] = {
            "model": self.models.router.model.value,
            "modality": self.models.router.modality,
            "available": self.models.available(),
        }
        return info

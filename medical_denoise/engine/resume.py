"""Resuming interrupted training and stopping broken runs."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data.utils import set_rnd
from monai.handlers import CheckpointLoader

from medical_denoise.engine.handlers import loss_summary
from medical_denoise.networks.generator import read_generator_state, widen_input_channels

_UNSET = (None, "", False, "None", "null")  # how configs and the command line spell "no checkpoint"


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    """The interval checkpoint with the highest epoch in ``ckpt_dir`` (``*_epoch=N.pt``), or None."""
    found = []
    for path in Path(ckpt_dir).glob("*epoch=*.pt"):
        if m := re.search(r"epoch=(\d+)\.pt$", path.name):
            found.append((int(m.group(1)), path))
    return max(found)[1] if found else None


def resume_handlers(
    resume_from: str | Path | None, ckpt_dir: str | Path, load_dict: dict, map_location=None
) -> list[CheckpointLoader]:
    """Handlers that restore a training run, for a trainer's handler list.

    Args:
        resume_from: None/"" (fresh run), "latest" (newest interval checkpoint in ``ckpt_dir``) or a path.
        ckpt_dir: folder of interval checkpoints.
        load_dict: objects to restore (networks, optimizers, schedulers, the trainer itself).
        map_location: ``torch.load`` map location.
    """
    if resume_from in _UNSET:
        return []
    path = latest_checkpoint(ckpt_dir) if str(resume_from) == "latest" else Path(resume_from)
    if path is None:
        raise FileNotFoundError(f"resume_from='latest' but no '*epoch=N.pt' checkpoint in {ckpt_dir}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint to resume from not found: {path}")
    return [CheckpointLoader(load_path=str(path), load_dict=load_dict, map_location=map_location)]


def init_handlers(init_weights: str | Path | None, network: torch.nn.Module, map_location=None) -> list:
    """Handlers that start training from existing generator weights (fine-tuning), for a trainer's handler list.

    Attach them before :func:`resume_handlers`: a resumed run then gets its own newer weights, not these. Weights of
    a network with fewer input channels are widened with zero weights (:func:`widen_input_channels`), so a blind
    model can be fine-tuned into a noise-level-conditioned one from where it stands.

    Args:
        init_weights: None/"" (random initialisation) or a generator state dict, e.g. a bundle's ``models/model.pt``,
            or a checkpoint holding one under ``generator``.
        network: the generator to load into.
        map_location: ``torch.load`` map location.
    """
    if init_weights in _UNSET:
        return []
    path = Path(init_weights)
    if not path.is_file():
        raise FileNotFoundError(f"init_weights not found: {path}")
    return [InitWeights(path, network, map_location)]


class InitWeights:
    """Loads generator weights (``weights_only``) when training starts; see :func:`init_handlers`.

    Args:
        path: a state dict, or a checkpoint holding one under ``generator``.
        network: the generator to load into.
        map_location: ``torch.load`` map location.
    """

    def __init__(self, path: str | Path, network: torch.nn.Module, map_location=None) -> None:
        self.path = Path(path)
        self.network = network
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        state = read_generator_state(self.path, map_location=self.map_location)
        self.network.load_state_dict(widen_input_channels(state, self.network))


class StopOnNonFiniteLoss:
    """Stops training with a clear error as soon as a loss is NaN or infinite.

    Raising (rather than ignite's silent ``TerminateOnNan``) makes the run exit non-zero; interval checkpoints
    are only written at the end of complete epochs, so the newest one on disk still holds finite weights.
    """

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        losses = loss_summary(engine.state.output)
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if bad:
            raise FloatingPointError(
                f"non-finite loss at epoch {engine.state.epoch}, iteration {engine.state.iteration}: {bad}; "
                "training stopped, the last complete-epoch checkpoint is intact (try a lower learning rate)"
            )


class EpochSeeder:
    """Reseeds all training randomness from ``(seed, epoch)`` when each epoch starts.

    Crops, flips and noise of epoch ``k`` then depend only on the seed and ``k``: two runs with the same seed
    and config match, and a run resumed from the checkpoint of epoch ``k - 1`` continues exactly as the
    uninterrupted run would have, without storing RNG states in checkpoints.

    Args:
        seed: base seed of the run.
        dataset: the training dataset, whose random transforms are reseeded too (needed when the loader has
            no workers; with workers, MONAI seeds them from torch's reseeded generator).
    """

    def __init__(self, seed: int, dataset=None) -> None:
        self.seed = seed
        self.dataset = dataset

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        epoch_seed = self.seed + 1000 * engine.state.epoch
        # not monai's set_determinism: that also forces slow deterministic cuDNN kernels on every epoch
        torch.manual_seed(epoch_seed)
        np.random.seed(epoch_seed % 2**32)  # noqa: NPY002  (MONAI's transforms draw from the global state)
        random.seed(epoch_seed)
        if self.dataset is not None:
            set_rnd(self.dataset, epoch_seed)

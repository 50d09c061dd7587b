"""Training to a wall-clock budget: a schedule fitted to the time, and the largest batch the device holds."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events

__all__ = ["TimeBudget", "fit_images_per_batch"]

logger = logging.getLogger(__name__)


class TimeBudget:
    """Ends a training run inside a wall-clock budget, with its schedule fitted to the budget.

    After ``calibrate_epochs`` epochs it times them and sets the run's ``max_epochs`` to the epochs that fit in the
    budget (less ``reserve_minutes``, e.g. for the evaluation after it), and with it a cosine learning-rate
    schedule's ``T_max`` and the adversarial start (``adv_start_share`` of the fitted iterations), so the schedule
    ends with the budget rather than at a fixed epoch. An epoch that would overrun the budget is not started: the
    run stops at an epoch end, after that epoch's checkpoint. A resumed run gets a fresh budget.

    Args:
        minutes: wall-clock budget of the training run, from its start.
        lr_scheduler: a ``CosineAnnealingLR`` stepped once per epoch, whose ``T_max`` is fitted; None: none.
        adv_start_share: share of the fitted iterations trained with the pixel loss alone (the trainer's
            ``adv_start_iteration``); None leaves the trainer's.
        reserve_minutes: minutes of the budget kept free for what follows the training.
        calibrate_epochs: epochs timed before the schedule is fitted.
    """

    def __init__(
        self,
        minutes: float,
        lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        adv_start_share: float | None = None,
        reserve_minutes: float = 0.0,
        calibrate_epochs: int = 1,
    ) -> None:
        if not minutes > reserve_minutes >= 0 or calibrate_epochs < 1:
            raise ValueError(
                f"need minutes > reserve_minutes >= 0 and calibrate_epochs >= 1, got {minutes}, {reserve_minutes}, "
                f"{calibrate_epochs}"
            )
        self.seconds = 60.0 * (float(minutes) - float(reserve_minutes))
        self.lr_scheduler = lr_scheduler
        self.adv_start_share = adv_start_share
        self.calibrate_epochs = int(calibrate_epochs)
        self.start, self.first_epoch = 0.0, 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def started(self, engine: Engine) -> None:
        self.start, self.first_epoch = time.monotonic(), engine.state.epoch

    def epoch_completed(self, engine: Engine) -> None:
        done = engine.state.epoch - self.first_epoch
        elapsed = time.monotonic() - self.start
        per_epoch = elapsed / done
        if done == self.calibrate_epochs:
            self.fit(engine, engine.state.epoch + int((self.seconds - elapsed) // per_epoch))
        if engine.state.epoch < engine.state.max_epochs and elapsed + per_epoch > self.seconds:
            logger.info("time budget: %.1f of %.1f min used; stopping after epoch %d", elapsed / 60,
                        self.seconds / 60, engine.state.epoch)  # fmt: skip
            engine.terminate()

    def fit(self, engine: Engine, epochs: int) -> None:
        """Set the run's length (and the schedule's) to ``epochs``, at least the current epoch."""
        epochs = max(engine.state.epoch, min(epochs, engine.state.max_epochs))
        engine.state.max_epochs = epochs
        if isinstance(self.lr_scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
            self.lr_scheduler.T_max = epochs
        if self.adv_start_share is not None and hasattr(engine, "adv_start_iteration"):
            engine.adv_start_iteration = int(self.adv_start_share * epochs * engine.state.epoch_length)
        logger.info("time budget: %d epochs fit in %.1f min", epochs, self.seconds / 60)


def input_channels(network: torch.nn.Module) -> int:
    """Channels a generator takes in training: its image channels plus a noise-level map if it has that input."""
    return int(network.in_channels) + int(getattr(network, "noise_level_input", False))


def fit_images_per_batch(
    network: torch.nn.Module,
    patch_size: Sequence[int],
    samples_per_image: int,
    default: int,
    max_images: int = 512,
    memory_share: float = 0.5,
) -> int:
    """The largest images per batch whose generator forward and backward (bf16 autocast) stays within
    ``memory_share`` of the CUDA device's memory (the rest is left for the discriminator, optimizer states and the
    cached images); ``default`` on a CPU.

    Args:
        network: the generator (with ``in_channels``, see :func:`input_channels`), already on its device (only
            gradients are computed; weights are not changed).
        patch_size: training crop size.
        samples_per_image: crops per image (a batch holds images x crops).
        default: images per batch off CUDA, and the smallest tried.
        max_images: the largest tried.
        memory_share: share of the device's memory the probe may use.
    """
    device = next(network.parameters()).device
    if device.type != "cuda":
        return int(default)
    limit = memory_share * torch.cuda.get_device_properties(device).total_memory
    best, images = int(default), int(default)
    while images <= max_images:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            x = torch.rand(images * samples_per_image, input_channels(network), *patch_size, device=device)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = network(x.contiguous(memory_format=torch.channels_last)).float().mean()
            loss.backward()
            peak = torch.cuda.max_memory_allocated(device)
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            network.zero_grad(set_to_none=True)
        if peak > limit:
            break
        best, images = images, images * 2
    torch.cuda.empty_cache()
    logger.info("images per batch: %d (%d crops of %s)", best, best * samples_per_image, list(patch_size))
    return best

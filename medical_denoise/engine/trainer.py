"""Image-to-image adversarial training as a MONAI engine."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from ignite.metrics import Metric
from monai.engines import Trainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn, default_prepare_batch
from monai.inferers import Inferer, SimpleInferer
from monai.transforms import Transform
from monai.utils import AdversarialIterationEvents, AdversarialKeys
from monai.utils.enums import CommonKeys as Keys
from torch.optim import Optimizer

PIXEL_LOSS = "pixel_loss"


class ConditionalGanTrainer(Trainer):
    """Trains a generator that maps a degraded image to a clean one, against a conditional discriminator.

    MONAI's ``GanTrainer`` feeds the generator latent codes and ``AdversarialTrainer`` judges unconditioned
    images; here each iteration does, on a batch of (degraded ``image``, clean ``label``):

    1. ``d_steps`` discriminator steps on ``D(image, label)`` (real) vs ``D(image, G(image).detach())`` (fake);
    2. one generator step on ``pixel_weight * pixel_loss(G(image), label) + adv_weight * adversarial``.

    ``engine.state.output`` holds ``image``, ``label``, ``pred`` and ``loss`` (the generator total) like
    ``SupervisedTrainer``, plus the ``AdversarialKeys`` losses, so every MONAI handler (StatsHandler,
    TensorBoard, CheckpointSaver, ValidationHandler, metrics) works unchanged.

    Args:
        device: device to train on.
        max_epochs: number of epochs.
        train_data_loader: loader of dicts with ``image`` (degraded) and ``label`` (clean).
        g_network: generator.
        g_optimizer: generator optimizer.
        d_network: conditional discriminator called as ``d_network(condition, candidate)``.
        d_optimizer: discriminator optimizer.
        pixel_loss_function: loss between prediction and clean target (e.g. L1, or L1 + SSIM).
        adversarial_loss_function: ``monai.losses.PatchAdversarialLoss`` (or a callable with its signature).
        pixel_weight: weight of the pixel loss in the generator objective.
        adv_weight: weight of the adversarial term; 0 trains a plain supervised denoiser (D still learns).
        adv_start_iteration: global iteration before which the adversarial term is off, so the generator
            first learns a sane mapping and D doesn't overpower it early.
        d_steps: discriminator updates per generator update.
        epoch_length: iterations per epoch (default: length of the loader).
        non_blocking: non-blocking host-to-device copies.
        prepare_batch: parses ``(image, label)`` from the batch.
        iteration_update: replaces ``_iteration`` if given.
        g_inferer: runs the generator forward (default ``SimpleInferer``).
        postprocessing: transforms applied to each (decollated) sample of the output after each iteration.
        key_train_metric: metric whose value is the key training metric.
        additional_metrics: further ignite metrics.
        metric_cmp_fn: compares key-metric values.
        train_handlers: ignite handlers to attach.
        amp: automatic mixed precision; dtype from ``amp_kwargs`` (``{"dtype": torch.bfloat16}``).
            A gradient scaler is used only for float16.
        grad_clip_norm: max gradient norm for both networks (None: no clipping).
        compile_generator: run the generator's training forward through ``torch.compile``; the compiled module
            shares the parameters, so checkpoints and validation keep using ``g_network`` unchanged.
        event_names: additional custom events.
        event_to_attr: maps events to state attributes.
        decollate: decollate the output into a list of per-sample dicts (losses repeated in each) after each
            iteration, as MONAI's trainers do; ``loss_summary`` reads either form.
        optim_set_to_none: ``zero_grad(set_to_none=...)``.
        to_kwargs: extra ``Tensor.to`` arguments.
        amp_kwargs: ``torch.autocast`` arguments.
    """

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Iterable,
        g_network: torch.nn.Module,
        g_optimizer: Optimizer,
        d_network: torch.nn.Module,
        d_optimizer: Optimizer,
        pixel_loss_function: Callable,
        adversarial_loss_function: Callable,
        pixel_weight: float = 1.0,
        adv_weight: float = 0.01,
        adv_start_iteration: int = 0,
        d_steps: int = 1,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = default_prepare_batch,
        iteration_update: Callable | None = None,
        g_inferer: Inferer | None = None,
        postprocessing: Transform | None = None,
        key_train_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        grad_clip_norm: float | None = None,
        compile_generator: bool = False,
        event_names: list | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = True,
        optim_set_to_none: bool = False,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
    ) -> None:
        if d_steps < 1:
            raise ValueError(f"d_steps must be >= 1, got {d_steps}")
        if not isinstance(amp, bool):  # "--amp true" on the command line arrives as a string
            raise TypeError(f"amp must be a bool (write --amp True / False), got {amp!r}")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            postprocessing=postprocessing,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            handlers=train_handlers,
            amp=amp,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
        )
        self.register_events(*AdversarialIterationEvents)
        self.g_network = g_network
        self.g_forward = torch.compile(g_network) if compile_generator else g_network
        self.g_optimizer = g_optimizer
        self.d_network = d_network
        self.d_optimizer = d_optimizer
        self.pixel_loss_function = pixel_loss_function
        self.adversarial_loss_function = adversarial_loss_function
        self.pixel_weight = pixel_weight
        self.adv_weight = adv_weight
        self.adv_start_iteration = adv_start_iteration
        self.d_steps = d_steps
        self.g_inferer = SimpleInferer() if g_inferer is None else g_inferer
        self.grad_clip_norm = grad_clip_norm
        self.optim_set_to_none = optim_set_to_none
        self.amp_dtype = (amp_kwargs or {}).get(
            "dtype", torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16
        )
        use_scaler = amp and self.amp_dtype == torch.float16
        self.g_scaler = torch.amp.GradScaler(torch.device(device).type, enabled=use_scaler)
        self.d_scaler = torch.amp.GradScaler(torch.device(device).type, enabled=use_scaler)

    def run(self) -> None:  # type: ignore[override]
        # skip Trainer.run: it builds a CUDA-only GradScaler we don't use
        super(Trainer, self).run()

    def _autocast(self) -> torch.autocast:
        device_type = torch.device(self.state.device).type
        return torch.autocast(device_type, dtype=self.amp_dtype, enabled=self.amp)

    def _step(self, loss: torch.Tensor, network: torch.nn.Module, optimizer: Optimizer, scaler) -> None:
        scaler.scale(loss).backward()
        if self.grad_clip_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(network.parameters(), self.grad_clip_norm)
        scaler.step(optimizer)
        scaler.update()

    def _iteration(self, engine: ConditionalGanTrainer, batchdata: dict[str, torch.Tensor]) -> dict[str, Any]:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        inputs, targets = batch[0], batch[1]
        args, kwargs = (batch[2], batch[3]) if len(batch) == 4 else ((), {})
        out: dict[str, Any] = {Keys.IMAGE: inputs, Keys.LABEL: targets}
        engine.state.output = out
        g, d = engine.g_network, engine.d_network
        g.train()
        d.train()

        with engine._autocast():
            fakes = engine.g_inferer(inputs, engine.g_forward, *args, **kwargs)
        out[Keys.PRED] = out[AdversarialKeys.FAKES] = fakes
        engine.fire_event(AdversarialIterationEvents.GENERATOR_FORWARD_COMPLETED)

        # discriminator: real pairs vs generated pairs, generator frozen (detached)
        for _ in range(engine.d_steps):
            engine.d_optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
            with engine._autocast():
                real_logits = d(inputs, targets)
                fake_logits = d(inputs, fakes.detach())
                d_loss = 0.5 * (
                    engine.adversarial_loss_function(real_logits, target_is_real=True, for_discriminator=True)
                    + engine.adversarial_loss_function(fake_logits, target_is_real=False, for_discriminator=True)
                )
            engine.fire_event(AdversarialIterationEvents.DISCRIMINATOR_LOSS_COMPLETED)
            engine._step(d_loss, d, engine.d_optimizer, engine.d_scaler)
        out[AdversarialKeys.DISCRIMINATOR_LOSS] = d_loss.detach()
        engine.fire_event(AdversarialIterationEvents.DISCRIMINATOR_MODEL_COMPLETED)

        # generator: pixel fidelity + fooling the (now frozen) discriminator. Under DDP the frozen pass uses the
        # wrapped module: D is not updated here, so its gradients need no all-reduce.
        d_frozen = d.module if isinstance(d, torch.nn.parallel.DistributedDataParallel) else d
        d_frozen.requires_grad_(False)
        engine.g_optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        adv_on = engine.adv_weight > 0 and engine.state.iteration > engine.adv_start_iteration
        with engine._autocast():
            pixel_loss = engine.pixel_loss_function(fakes.float(), targets.float())
            if adv_on:
                adv_loss = engine.adversarial_loss_function(
                    d_frozen(inputs, fakes), target_is_real=True, for_discriminator=False
                )
            else:
                adv_loss = torch.zeros((), device=pixel_loss.device)
            g_loss = engine.pixel_weight * pixel_loss + engine.adv_weight * adv_loss
        engine.fire_event(AdversarialIterationEvents.GENERATOR_LOSS_COMPLETED)
        engine._step(g_loss, g, engine.g_optimizer, engine.g_scaler)
        d_frozen.requires_grad_(True)
        engine.fire_event(AdversarialIterationEvents.GENERATOR_MODEL_COMPLETED)

        out[Keys.PRED] = out[AdversarialKeys.FAKES] = fakes.detach()
        out[PIXEL_LOSS] = pixel_loss.detach()
        out[AdversarialKeys.GENERATOR_LOSS] = adv_loss.detach()
        out[Keys.LOSS] = g_loss.detach()
        # as SupervisedTrainer: decollate and postprocessing hang on this event; they replace engine.state.output
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output

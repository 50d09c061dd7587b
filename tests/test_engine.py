from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.handlers import StatsHandler
from monai.losses import PatchAdversarialLoss
from monai.utils import CommonKeys as Keys
from PIL import Image

from medical_denoise.engine import (
    AtomicCheckpointSaver,
    ConditionalGanTrainer,
    StopOnNonFiniteLoss,
    TripletImageHandler,
    init_handlers,
    latest_checkpoint,
    loss_summary,
)
from medical_denoise.networks import ConditionalPatchDiscriminator, DenoiseUNet
from tests.utils import TINY_DISCRIMINATOR


def _batches(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        clean = torch.rand(2, 3, size, size, generator=g)
        out.append({"image": clean + 0.1 * torch.randn(clean.shape, generator=g), "label": clean})
    return out


def _trainer(
    data, handlers=(), adv_weight=0.1, adv_start_iteration=0, lr=1e-3, max_epochs=1, decollate=False, **kwargs
):
    torch.manual_seed(0)
    g = DenoiseUNet(channels=(8, 16), strides=(2,), num_res_units=1)
    d = ConditionalPatchDiscriminator(image_channels=3, **TINY_DISCRIMINATOR)
    return ConditionalGanTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=data,
        g_network=g,
        g_optimizer=torch.optim.Adam(g.parameters(), lr),
        d_network=d,
        d_optimizer=torch.optim.Adam(d.parameters(), lr),
        pixel_loss_function=torch.nn.L1Loss(),
        adversarial_loss_function=PatchAdversarialLoss(criterion="least_squares"),
        adv_weight=adv_weight,
        adv_start_iteration=adv_start_iteration,
        train_handlers=list(handlers),
        decollate=decollate,
        **kwargs,
    )


def test_decollate_and_postprocessing_run_after_each_iteration():
    """As in SupervisedTrainer: the output becomes per-sample dicts, each postprocessed, and the losses still log."""
    seen = []

    def mark(sample):
        seen.append(sample["pred"].shape)
        return {**sample, "pred": sample["pred"].clamp(0, 1)}

    trainer = _trainer(_batches(2), decollate=True, postprocessing=mark)
    trainer.run()
    output = trainer.state.output
    assert isinstance(output, list) and len(output) == 2  # the batch's two samples
    assert all(float(o["pred"].min()) >= 0 and float(o["pred"].max()) <= 1 for o in output)
    assert seen == [torch.Size([3, 32, 32])] * 4  # 2 iterations x 2 samples
    assert set(loss_summary(output)) == {"g_loss", "d_loss", "pixel_loss", "adv_loss"}


def test_one_iteration_updates_generator_and_discriminator():
    trainer = _trainer(_batches(1))
    g0, d0 = copy.deepcopy(trainer.g_network.state_dict()), copy.deepcopy(trainer.d_network.state_dict())
    trainer.run()
    changed = lambda before, net: any(not torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # noqa: E731
    assert changed(g0, trainer.g_network) and changed(d0, trainer.d_network)
    losses = loss_summary(trainer.state.output)
    assert set(losses) == {"g_loss", "d_loss", "pixel_loss", "adv_loss"}
    assert all(np.isfinite(v) for v in losses.values())
    assert losses["adv_loss"] > 0
    assert losses["g_loss"] == pytest.approx(losses["pixel_loss"] + 0.1 * losses["adv_loss"], rel=1e-5)


def test_adversarial_term_waits_for_start_iteration():
    trainer = _trainer(_batches(2), adv_start_iteration=1)
    seen = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: seen.append(loss_summary(e.state.output)["adv_loss"])
    )
    trainer.run()
    assert seen[0] == 0.0 and seen[1] > 0


def test_training_reduces_pixel_loss():
    trainer = _trainer(_batches(1) * 30, adv_weight=0.0, lr=3e-3)
    seen = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: seen.append(loss_summary(e.state.output)["pixel_loss"])
    )
    trainer.run()
    assert np.mean(seen[-5:]) < 0.7 * np.mean(seen[:5])


def test_monai_stats_handler_works_with_engine(capsys):
    trainer = _trainer(_batches(1), handlers=[StatsHandler(name="t", output_transform=loss_summary, tag_name="l")])
    trainer.run()
    assert "pixel_loss" in capsys.readouterr().out


def test_non_finite_loss_stops_with_clear_error():
    data = _batches(1)
    data[0]["label"][0, 0, 0, 0] = float("nan")
    trainer = _trainer(data, handlers=[StopOnNonFiniteLoss()])
    with pytest.raises(FloatingPointError, match="non-finite loss at epoch 1, iteration 1"):
        trainer.run()


def test_checkpoints_are_atomic_and_resumable(tmp_path, monkeypatch):
    trainer = _trainer(_batches(1), max_epochs=2)
    save_dict = {"generator": trainer.g_network, "trainer": trainer}
    AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict=save_dict, save_interval=1, n_saved=1).attach(trainer)
    trainer.run()
    assert latest_checkpoint(tmp_path).name == "checkpoint_epoch=2.pt"
    state = torch.load(latest_checkpoint(tmp_path), weights_only=True)
    assert state["trainer"]["iteration"] == 2  # ignite stores the iteration; epoch = iteration // epoch_length

    # a crash in the middle of writing leaves the previous checkpoint intact and no partial file
    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    trainer2 = _trainer(_batches(1), max_epochs=3)
    saver = AtomicCheckpointSaver(
        save_dir=str(tmp_path),
        save_dict={"generator": trainer2.g_network},
        save_interval=1,
        n_saved=1,
        file_prefix="other",
    )
    saver.attach(trainer2)
    with pytest.raises(OSError, match="disk full"):
        trainer2.run()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=2.pt"]


@pytest.mark.parametrize("wrapped", [False, True])
def test_init_weights_start_training_from_given_generator_weights(tmp_path, wrapped):
    torch.manual_seed(1)
    donor = DenoiseUNet(channels=(8, 16), strides=(2,), num_res_units=1)
    state = (
        {"generator": donor.state_dict()} if wrapped else donor.state_dict()
    )  # training checkpoint / models/model.pt
    torch.save(state, tmp_path / "weights.pt")
    trainer = _trainer(_batches(1), adv_weight=0.0, lr=0.0)  # lr 0: after the run the weights are the loaded ones
    assert not all(torch.equal(v, trainer.g_network.state_dict()[k]) for k, v in donor.state_dict().items())
    for handler in init_handlers(tmp_path / "weights.pt", trainer.g_network):
        handler.attach(trainer)
    trainer.run()
    assert all(torch.equal(v, trainer.g_network.state_dict()[k]) for k, v in donor.state_dict().items())
    assert init_handlers(None, trainer.g_network) == []
    with pytest.raises(FileNotFoundError, match="init_weights not found: .*missing.pt"):
        init_handlers(tmp_path / "missing.pt", trainer.g_network)


def test_triplet_handler_writes_png_and_tensorboard(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    trainer = _trainer(_batches(1), handlers=[TripletImageHandler(tmp_path / "img", summary_writer=writer)])
    trainer.run()
    writer.close()
    png = np.asarray(Image.open(tmp_path / "img" / "combined_epoch_1.png"))
    assert png.shape == (2 * (32 + 2), 3 * 32, 3)
    assert list((tmp_path / "tb").glob("events.out.tfevents*"))


def test_triplet_handler_draws_the_first_batch_of_every_interval_th_epoch(tmp_path):
    from ignite.engine import Engine

    class Writer:  # counts what TensorBoard would get
        def __init__(self):
            self.steps = []

        def add_image(self, tag, grid, step, dataformats):
            self.steps.append(step)

        def flush(self):
            pass

    writer = Writer()
    handler = TripletImageHandler(tmp_path, interval=2, max_rows=1, summary_writer=writer)
    drawn = []
    engine = Engine(lambda e, batch: {Keys.IMAGE: batch, Keys.PRED: batch, Keys.LABEL: batch})
    handler.attach(engine)
    handler.attach(engine)  # once only
    engine.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: drawn.append(sorted(p.name for p in tmp_path.iterdir()))
    )
    batches = [torch.full((1, 3, 8, 8), i / 3.0) for i in range(3)]
    engine.run(batches, max_epochs=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["combined_epoch_2.png", "combined_epoch_4.png"]
    assert writer.steps == [2, 4]  # one grid per drawn epoch, though attached twice
    assert drawn[3] == ["combined_epoch_2.png"]  # written at epoch 2's first batch, not at its end
    first_batch = np.asarray(Image.open(tmp_path / "combined_epoch_2.png"))
    assert first_batch.max() == 0  # batch 0 (all zeros), not a later one


def test_l1_ssim_loss():
    from medical_denoise.engine import L1SSIMLoss

    x = torch.rand(2, 3, 32, 32)
    assert float(L1SSIMLoss(ssim_weight=0.0)(x, x)) == 0.0
    assert float(L1SSIMLoss(ssim_weight=0.5)(x, x)) == pytest.approx(0.0, abs=1e-5)
    y = x + 0.1 * torch.randn_like(x)
    l1 = float(torch.nn.functional.l1_loss(y, x))
    assert float(L1SSIMLoss(ssim_weight=0.0)(y, x)) == pytest.approx(l1)
    assert float(L1SSIMLoss(ssim_weight=0.5)(y, x)) > 0.5 * l1  # the SSIM term adds structure error
    with pytest.raises(ValueError):
        L1SSIMLoss(ssim_weight=2.0)


def test_compiled_generator_shares_weights_with_the_saved_one(monkeypatch):
    compiled = []

    def fake_compile(module):  # torch.compile itself needs minutes of C++ compilation on this CPU
        compiled.append(module)
        return lambda x: module(x)

    monkeypatch.setattr(torch, "compile", fake_compile)
    torch.manual_seed(0)
    g = DenoiseUNet(channels=(8, 16), strides=(2,), num_res_units=1)
    d = ConditionalPatchDiscriminator(image_channels=3, **TINY_DISCRIMINATOR)
    before = copy.deepcopy(g.state_dict())
    trainer = ConditionalGanTrainer(
        device="cpu", max_epochs=1, train_data_loader=_batches(1), g_network=g,
        g_optimizer=torch.optim.Adam(g.parameters(), 1e-3), d_network=d,
        d_optimizer=torch.optim.Adam(d.parameters(), 1e-3), pixel_loss_function=torch.nn.L1Loss(),
        adversarial_loss_function=PatchAdversarialLoss(criterion="least_squares"), compile_generator=True,
        decollate=False,
    )  # fmt: skip
    trainer.run()
    assert compiled == [g]
    assert any(not torch.equal(v, g.state_dict()[k]) for k, v in before.items())  # the trained weights are g's

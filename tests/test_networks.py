from __future__ import annotations

import numpy as np
import pytest
import torch

from medical_denoise.networks import ConditionalPatchDiscriminator, DenoiseUNet, GeneratorPredictor, load_generator
from tests.utils import TINY_DISCRIMINATOR, TINY_NET


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 45, 61), (1, 3, 7, 9)])
def test_generator_keeps_any_2d_shape(shape):
    net = DenoiseUNet(**TINY_NET)
    assert net(torch.rand(shape)).shape == shape


def test_generator_3d_and_grey():
    net = DenoiseUNet(spatial_dims=3, in_channels=1, channels=(4, 8), strides=(2,), num_res_units=1)
    x = torch.rand(1, 1, 9, 10, 11)
    assert net(x).shape == x.shape


def test_residual_generator_starts_near_identity_and_direct_does_not():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    residual = DenoiseUNet(channels=(8, 16), strides=(2,), residual=True)
    direct = DenoiseUNet(channels=(8, 16), strides=(2,), residual=False)
    # predicting the noise: output = input - small correction, so an untrained net is far closer to the input
    assert (residual(x) - x).abs().mean() < (direct(x) - x).abs().mean()


def test_generator_output_does_not_depend_on_padding_elsewhere():
    # no normalisation: a pixel far from the border sees the same result whether or not the image is bigger
    torch.manual_seed(0)
    net = DenoiseUNet(**TINY_NET).eval()
    x = torch.rand(1, 3, 64, 64)
    big = torch.cat([x, torch.rand(1, 3, 64, 64)], dim=-1)
    with torch.no_grad():
        small_out, big_out = net(x), net(big)[..., :64]
    assert torch.allclose(small_out[..., 8:-16, 8:-16], big_out[..., 8:-16, 8:-16], atol=1e-5)


def test_generator_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"expected \(N, 3"):
        DenoiseUNet()(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="residual"):
        DenoiseUNet(in_channels=1, out_channels=3, residual=True)


def test_conditional_discriminator_sees_pairs():
    d = ConditionalPatchDiscriminator(image_channels=3, **TINY_DISCRIMINATOR)
    out = d(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    assert out[-1].shape[:2] == (2, 1) and out[-1].shape[-1] > 1  # a map of patch decisions
    with pytest.raises(ValueError, match="differ"):
        d(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 32, 32))


def test_load_generator_roundtrip_and_errors(tmp_path):
    net = DenoiseUNet(channels=(8, 16), strides=(2,))
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    other = DenoiseUNet(channels=(8, 16), strides=(2,))
    load_generator(other, path)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))

    torch.save({"generator": net.state_dict(), "discriminator": {}}, tmp_path / "ckpt.pt")
    load_generator(other, tmp_path / "ckpt.pt")

    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_generator(other, tmp_path / "missing.pt")
    (tmp_path / "broken.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="broken.pt"):
        load_generator(other, tmp_path / "broken.pt")


def test_load_generator_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"generator": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt"):
        load_generator(DenoiseUNet(channels=(8, 16), strides=(2,)), tmp_path / "evil.pt")


@pytest.mark.parametrize("shape", [(1, 3, 12, 20), (2, 1, 9, 7, 5)])
def test_self_ensemble_undoes_every_flip_and_rotation(shape):
    x = torch.rand(shape)
    identity = GeneratorPredictor(torch.nn.Conv2d(1, 1, 1), device="cpu", self_ensemble=True)
    identity.network = torch.nn.Identity()  # a wrongly undone transform would scramble pixels
    assert torch.allclose(identity(x), x)


def test_self_ensemble_output_follows_flips_of_the_input():
    torch.manual_seed(0)
    net = DenoiseUNet(channels=(8, 16), strides=(2,), num_res_units=1)  # not equivariant by itself
    single, ensemble = GeneratorPredictor(net), GeneratorPredictor(net, self_ensemble=True)
    x = torch.rand(1, 3, 16, 24)
    assert not torch.allclose(single(x.flip(3)), single(x).flip(3), atol=1e-4)
    assert torch.allclose(ensemble(x.flip(3)), ensemble(x).flip(3), atol=1e-5)
    assert torch.allclose(ensemble(x.flip(2)), ensemble(x).flip(2), atol=1e-5)


def test_self_ensemble_refuses_a_string_flag():
    # the bundle command line passes "--self_ensemble false" as the truthy string "false"
    with pytest.raises(TypeError, match="self_ensemble must be True or False"):
        GeneratorPredictor(DenoiseUNet(channels=(8, 16), strides=(2,)), self_ensemble="false")


# ------------------------------------------------------------------------------------ noise-level conditioning


def test_wavelet_noise_std_matches_skimage_and_ignores_constant_regions():
    from skimage.data import camera
    from skimage.restoration import estimate_sigma

    from medical_denoise.noise import wavelet_noise_std

    rng = np.random.default_rng(0)
    image = camera() / 255.0
    noisy = image + rng.normal(0.0, 0.05, image.shape)
    ours = float(wavelet_noise_std(torch.from_numpy(noisy)[None, None])[0])
    assert ours == pytest.approx(estimate_sigma(noisy), rel=0.02) and ours == pytest.approx(0.05, rel=0.15)
    for fill in (noisy.min() - 1.0, noisy.max() + 1.0):  # padding below the image (CT's -3024), saturation above
        padded = np.full((512, 1024), fill)
        padded[:, :512] = noisy  # half the image is exact padding: its zero coefficients must not pull the median down
        assert float(wavelet_noise_std(torch.from_numpy(padded)[None, None])[0]) == pytest.approx(ours, rel=0.02)
    assert float(wavelet_noise_std(torch.zeros(1, 1, 8, 8))[0]) == 0.0


def test_wavelet_noise_std_of_a_noise_free_test_pattern_is_zero():
    """Flat patches at many grey levels with sharp, odd-aligned edges (a display test pattern): no noise. Leaving
    out every zero coefficient, as padding needs, measured only the edges (95 of 255 on pydicom's vlut_04.dcm)."""
    from medical_denoise.noise import wavelet_noise_std

    pattern = np.kron(np.random.default_rng(1).integers(0, 11, (9, 9)) / 10.0, np.ones((23, 23)))
    assert float(wavelet_noise_std(torch.from_numpy(pattern)[None, None])[0]) == 0.0
    noisy = pattern + np.random.default_rng(2).normal(0.0, 0.02, pattern.shape)  # and noise is still measured
    assert float(wavelet_noise_std(torch.from_numpy(noisy)[None, None])[0]) == pytest.approx(0.02, rel=0.15)


def _level_net(**kwargs):
    torch.manual_seed(0)
    return DenoiseUNet(
        in_channels=3, out_channels=1, channels=(8, 16), strides=(2,), num_res_units=1, residual=True, **kwargs
    )


def test_level_conditioned_generator_takes_a_level_map_or_estimates_it():
    from medical_denoise.noise import wavelet_noise_std

    net = _level_net(noise_level_input=True).eval()
    slab = torch.rand(2, 3, 30, 34)
    level = wavelet_noise_std(slab[:, 1:2])
    told = torch.cat([slab, level.view(2, 1, 1, 1).expand(2, 1, 30, 34)], dim=1)
    with torch.no_grad():
        assert torch.allclose(net(slab), net(told), atol=1e-6)  # blind = told the estimate
        other = torch.cat([slab, torch.full_like(slab[:, :1], 0.3)], dim=1)
        assert not torch.allclose(net(other), net(told), atol=1e-4)  # the map reaches the output
        scripted = torch.jit.script(net)
        assert torch.allclose(scripted(slab), net(slab), atol=1e-6)
    with pytest.raises(ValueError, match=r"expected \(N, 3"):
        net(torch.rand(1, 5, 16, 16))
    with pytest.raises(ValueError, match=r"expected \(N, 3"):
        _level_net()(told)  # without a level input the extra channel is refused


def test_change_limit_bounds_the_change_by_the_noise_level_in_eval_mode_only():
    from medical_denoise.noise import wavelet_noise_std

    net = _level_net(noise_level_input=True, change_limit=4.0, change_floor=0.01)
    with torch.no_grad():
        for p in net.parameters():  # a network that changes the image a lot
            p.add_(torch.randn_like(p))
    slab = torch.rand(2, 3, 32, 32)
    zero = torch.cat([slab, torch.zeros_like(slab[:, :1])], dim=1)
    told = torch.cat([slab, torch.full_like(slab[:, :1], 0.05)], dim=1)
    with torch.no_grad():
        assert (net(zero) - slab[:, 1:2]).abs().max() > 0.3  # training mode: never limited
        net.eval()
        assert (net(zero) - slab[:, 1:2]).abs().max() <= 0.01 + 1e-6  # told no noise: back within the floor
        change = (net(told) - slab[:, 1:2]).abs()
        assert change.max() <= 4 * 0.05 + 0.01 + 1e-6 and change.max() > 0.15
        blind = (net(slab) - slab[:, 1:2]).abs().amax(dim=(1, 2, 3))
        assert (blind <= 4 * wavelet_noise_std(slab[:, 1:2]) + 0.01 + 1e-6).all()
        assert torch.allclose(torch.jit.script(net)(slab), net(slab), atol=1e-6)
    rgb = DenoiseUNet(in_channels=3, channels=(8, 16), strides=(2,), num_res_units=1, change_limit=4.0).eval()
    flat = torch.full((1, 3, 16, 16), 0.5)  # no level input: estimated (0 on a flat image)
    with torch.no_grad():
        assert (rgb(flat) - flat).abs().max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match="change_limit"):
        _level_net(change_limit=0.0)


def test_widened_weights_keep_what_the_blind_model_computed(tmp_path):
    from medical_denoise.engine import init_handlers
    from medical_denoise.networks import widen_input_channels

    blind = _level_net().eval()
    conditioned = _level_net(noise_level_input=True).eval()
    conditioned.load_state_dict(widen_input_channels(blind.state_dict(), conditioned))
    slab = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        for level in (0.0, 0.1):
            told = torch.cat([slab, torch.full_like(slab[:, :1], level)], dim=1)
            assert torch.allclose(conditioned(told), blind(slab), atol=1e-6)
    # the fine-tuning entry point (train.yaml's init_weights) widens the same way
    torch.save(blind.state_dict(), tmp_path / "blind.pt")
    fresh = _level_net(noise_level_input=True)
    torch.manual_seed(3)
    for p in fresh.parameters():
        p.data.normal_()
    (handler,) = init_handlers(tmp_path / "blind.pt", fresh)
    handler(None)
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(slab), blind(slab), atol=1e-6)

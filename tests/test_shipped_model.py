"""The weights shipped in the bundle load offline, safely, and denoise a photo they never saw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import SlidingWindowInferer
from skimage import data

from medical_denoise.evaluation.metrics import psnr
from medical_denoise.evaluation.restoration import DegradationChain, bicubic_upsample
from medical_denoise.networks import bundle_predictor
from medical_denoise.noise import GaussianNoise
from tests.utils import BUNDLE

WEIGHTS = BUNDLE / "models" / "model.pt"
SR_WEIGHTS = BUNDLE / "models" / "sr_x2.pt"


@pytest.fixture(scope="module")
def case():
    # a fundus photograph from scikit-image: not dermoscopy, never in training
    clean = np.moveaxis(data.retina()[500:756, 500:756].astype(np.float32) / 255, -1, 0)
    noisy = GaussianNoise(25.0).apply(clean, 25.0, np.random.default_rng(0))
    return clean, noisy.astype(np.float32)


@pytest.mark.parametrize("weights", [WEIGHTS, SR_WEIGHTS], ids=["denoise", "sr_x2"])
def test_weights_are_small_and_plain_tensors(weights):
    assert weights.is_file() and weights.stat().st_size < 25 * 2**20
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_shipped_model_raises_psnr(case):
    clean, noisy = case
    denoised = bundle_predictor(BUNDLE).numpy(noisy)
    assert denoised.shape == clean.shape
    assert psnr(clean, denoised) > psnr(clean, noisy) + 10.0  # measured: 20.5 -> 39.6 dB (stage 4)


def test_self_ensemble_is_at_least_as_good_as_a_single_pass(case):
    clean, noisy = case
    single = psnr(clean, bundle_predictor(BUNDLE).numpy(noisy))
    assert psnr(clean, bundle_predictor(BUNDLE, self_ensemble=True).numpy(noisy)) > single + 0.05


def test_whole_image_inference_is_as_good_as_tiled(case):
    clean, noisy = case
    whole = bundle_predictor(BUNDLE)
    tiled = bundle_predictor(BUNDLE)
    tiled.inferer = SlidingWindowInferer(roi_size=(64, 64), sw_batch_size=8, overlap=0.25, mode="gaussian")
    assert psnr(clean, whole.numpy(noisy)) >= psnr(clean, tiled.numpy(noisy)) - 0.05


def test_shipped_sr_model_beats_bicubic(case):
    clean, _ = case
    # sr.yaml's validation degradation: PSF sigma 0.5, area x2, noise level 2; a photo the model never saw
    low = DegradationChain("sr", blur_sigma=0.5, scale=2).degrade(clean, 2.0, "retina")
    assert low.shape == (3, 128, 128)
    sr = bundle_predictor(BUNDLE, config_file=["configs/train.yaml", "configs/sr.yaml"]).numpy(low)
    assert sr.shape == clean.shape
    assert psnr(clean, sr) > psnr(clean, bicubic_upsample(low, 2)) + 0.1

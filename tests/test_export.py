"""TorchScript and ONNX export of the generator: same outputs as PyTorch on odd image sizes."""

from __future__ import annotations

import pytest
import torch

from medical_denoise.networks import DenoiseUNet, export_onnx, export_torchscript, onnx_parity
from tests.utils import TINY_NET

ATOL = 1e-4  # float32 outputs in [0, 1]: different kernels reorder sums, nothing more
ODD_SIZES = [(1, 3, 37, 50), (2, 3, 101, 29), (1, 3, 16, 24)]  # last: a multiple of the stride, no padding


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    net = DenoiseUNet(**TINY_NET)
    with torch.no_grad():  # non-trivial PReLU slopes and biases, so a wrong graph shows
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


@pytest.fixture(scope="module")
def onnx_file(network, tmp_path_factory):
    pytest.importorskip("onnxscript")
    # a stride-multiple example: the exporter must not bake in "no padding" (export_onnx nudges the size)
    return export_onnx(network, tmp_path_factory.mktemp("onnx") / "generator.onnx", example_shape=(1, 3, 32, 32))


def test_torchscript_matches_pytorch_on_any_size(network, tmp_path):
    path = export_torchscript(network, tmp_path / "generator.ts", extra_files={"metadata.json": "{}"})
    extra = {"metadata.json": ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    assert extra["metadata.json"] == b"{}"
    assert [p.name for p in tmp_path.iterdir()] == ["generator.ts"]  # no temporary left behind
    with torch.no_grad():
        for shape in ODD_SIZES:
            x = torch.rand(shape)
            out = loaded(x)
            assert out.shape == x.shape
            assert (out - network(x)).abs().max().item() < ATOL


def test_onnx_matches_pytorch_on_odd_sizes(network, onnx_file):
    inputs = [torch.rand(shape) for shape in ODD_SIZES]
    diff = onnx_parity(network, onnx_file, inputs)
    assert diff < ATOL
    assert onnx_parity(network, onnx_file, inputs[0]) <= diff


def test_onnx_parity_detects_a_different_network(network, onnx_file):
    other = DenoiseUNet(**TINY_NET).eval()
    assert onnx_parity(other, onnx_file, torch.rand(1, 3, 37, 50)) > 1e-3


def test_onnx_parity_reports_missing_file(network, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        onnx_parity(network, tmp_path / "missing.onnx", torch.rand(1, 3, 8, 8))


def test_onnx_export_keeps_the_level_estimate_and_change_limit(tmp_path):
    """The clinical network estimates its noise level and limits its change in eval mode: both trace into ONNX
    (no data-dependent shapes) and agree with PyTorch on sizes the export never saw."""
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    net = DenoiseUNet(in_channels=3, out_channels=1, channels=(8, 16), strides=(2,), num_res_units=1,
                      residual=True, noise_level_input=True, change_limit=4.0).eval()  # fmt: skip
    with torch.no_grad():  # a network that changes its input a lot, so the limit is active
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    path = export_onnx(net, tmp_path / "clinical.onnx", example_shape=(1, 3, 32, 32))
    flat = torch.rand(1, 3, 40, 36).round()  # binary: its flat blocks lie at the two extreme levels, left out
    assert onnx_parity(net, path, [torch.rand(1, 3, 37, 50), torch.rand(2, 3, 64, 64), flat]) < ATOL

"""Export a generator to TorchScript and ONNX, and check the exported model against PyTorch."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.networks.utils import convert_to_torchscript
from monai.utils import OptionalImportError, optional_import
from torch import nn

from medical_denoise.atomic import atomic_path

ONNX_OPSET = 18  # the lowest opset torch's torch.export-based ONNX exporter emits


def _write_atomic(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path next to ``path`` (created if missing), then move it into place.

    Torch's and ONNX's savers want a path, hence :func:`~medical_denoise.atomic.atomic_path`, not ``atomic_write``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        write(str(tmp))
    return path


def export_torchscript(network: nn.Module, path: str | Path, extra_files: dict[str, str | bytes] | None = None) -> Path:
    """Script ``network`` in eval mode and save it, as ``monai.bundle ckpt_export`` does.

    Scripting (not tracing) keeps ``DenoiseUNet``'s size-dependent padding, so the file accepts any image size.

    Args:
        network: the generator (weights already loaded).
        path: output ``.ts``/``.pt`` file, written atomically.
        extra_files: extra files to embed (e.g. ``{"metadata.json": ...}``), read back with ``torch.jit.load``.
    """
    was_training = network.training
    scripted = convert_to_torchscript(network.eval())
    network.train(was_training)
    return _write_atomic(path, lambda tmp: torch.jit.save(scripted, tmp, _extra_files=extra_files or {}))


def _odd_example_shape(example_shape: Sequence[int], multiple: int) -> list[int]:
    # torch.export records the branch the example takes: a spatial size that is already a multiple of the
    # network's stride would skip DenoiseUNet's padding and bake that in for every size
    shape = list(example_shape)
    for i in range(2, len(shape)):
        if multiple > 1 and shape[i] % multiple == 0:
            shape[i] += 1
    return shape


def export_onnx(
    network: nn.Module,
    path: str | Path,
    example_shape: Sequence[int] = (1, 3, 67, 61),
    dynamic_spatial: bool = True,
    opset: int = ONNX_OPSET,
    verify_atol: float | None = 1e-4,
) -> Path:
    """Export ``network`` to a single ONNX file with torch's ``torch.export``-based exporter (needs onnxscript).

    With ``dynamic_spatial`` the batch and spatial sizes are symbolic: one file serves every image size. The example
    shape is nudged off multiples of ``network.multiple`` (DenoiseUNet's total stride) so the exported graph
    contains the padding; the file is then checked with onnxruntime on the example size and on the next multiple
    of the stride (the case a wrongly specialised graph gets wrong) before it is moved into place.

    Args:
        network: the generator (weights already loaded); exported in eval mode on its current device.
        path: output ``.onnx`` file, written atomically (weights inside: models must stay under 2 GB).
        example_shape: ``(N, C, *spatial)`` of the example input.
        dynamic_spatial: symbolic batch and spatial sizes (False: fixed to ``example_shape``).
        opset: ONNX opset version (>= 18).
        verify_atol: largest allowed max-abs difference to PyTorch in the check; None skips the check.

    Raises:
        OptionalImportError: without the ``onnxscript`` package, which torch's exporter needs.
        ValueError: if the exported model differs from PyTorch by more than ``verify_atol``.
    """
    if not optional_import("onnxscript")[1]:
        raise OptionalImportError("export_onnx needs the 'onnxscript' package (pip install onnxscript)")
    multiple = int(getattr(network, "multiple", 1))
    shape = _odd_example_shape(example_shape, multiple) if dynamic_spatial else list(example_shape)
    device = next(network.parameters()).device
    example = torch.rand(shape, device=device)
    dynamic_shapes = None
    if dynamic_spatial:
        dims = {0: torch.export.Dim("batch")}
        dims.update({i: torch.export.Dim(f"spatial_{i - 2}", min=1, max=65536) for i in range(2, len(shape))})
        dynamic_shapes = (dims,)
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                network,
                (example,),
                dynamo=True,
                input_names=["image"],
                output_names=["pred"],
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                verbose=False,
            )
    finally:
        network.train(was_training)

    def write(tmp: str) -> None:
        program.save(tmp, external_data=False)
        if verify_atol is None:
            return
        checks = [example]
        if dynamic_spatial:  # another batch size and sizes that need no padding
            rounded = [2, shape[1]] + [max(multiple, math.ceil(s / multiple) * multiple) for s in shape[2:]]
            checks.append(torch.rand(rounded, device=device))
        diff = onnx_parity(network, tmp, checks)
        if not diff <= verify_atol:
            raise ValueError(f"ONNX export of {type(network).__name__} to {path} differs from PyTorch by {diff}")

    return _write_atomic(path, write)


def onnx_parity(
    network: nn.Module,
    path: str | Path,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> float:
    """Largest absolute difference between ``network`` (eval, no grad) and the ONNX file over ``inputs``.

    Args:
        network: the PyTorch generator the file was exported from.
        path: the ``.onnx`` file.
        inputs: one ``(N, C, *spatial)`` tensor or several (e.g. of different sizes).
        providers: onnxruntime execution providers.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    session = ort.InferenceSession(str(path), providers=list(providers))
    name = session.get_inputs()[0].name
    inputs = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    worst = 0.0
    try:
        with torch.no_grad():
            for x in inputs:
                expected = network(x.to(device, torch.float32)).float().cpu().numpy()
                got = session.run(None, {name: x.detach().float().cpu().numpy()})[0]
                if got.shape != expected.shape:
                    raise ValueError(f"{path}: output shape {got.shape} != PyTorch's {expected.shape}")
                diff = float(np.max(np.abs(got - expected)))
                if not math.isfinite(diff):
                    return math.inf  # NaN would compare as "no difference"
                worst = max(worst, diff)
    finally:
        network.train(was_training)
    return worst

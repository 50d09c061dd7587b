"""CPU inference speed of the dermoscopy generator: PyTorch eager against onnxruntime, same weights, same input.

Exports ``models/model.pt``'s generator to ONNX for one fixed input size (a 600 x 450 ISIC image, padded by the
network to 600 x 456), checks that the two outputs agree, and times single passes (median of ``--repeats`` after
two warm-ups) with the same number of threads. Needs the optional ``onnx``, ``onnxscript`` and ``onnxruntime``
packages (not dependencies of medical-denoise).

    python benchmarks/onnx_speed.py --threads 2 --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser

from medical_denoise.networks.predictor import load_weights

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "gan_denoise"


def median_seconds(run, repeats: int) -> float:
    for _ in range(2):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--height", type=int, default=450)
    ap.add_argument("--width", type=int, default=600)
    args = ap.parse_args()
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.yaml"))
    parser.update({"bundle_root": str(BUNDLE)})
    net = load_weights(parser.get_parsed_content("network_def"), BUNDLE / "models" / "model.pt").eval()
    x = torch.rand(1, 3, args.height, args.width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = net(x)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generator.onnx"
        torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["pred"], dynamo=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"image": x.numpy()}
    out = session.run(None, feed)[0]
    diff = float(np.abs(out - ref.numpy()).max())
    with torch.no_grad():
        t_torch = median_seconds(lambda: net(x), args.repeats)
    t_ort = median_seconds(lambda: session.run(None, feed), args.repeats)
    mp = args.height * args.width / 1e6
    print(f"input 1x3x{args.height}x{args.width}, {args.threads} thread(s), torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}")  # fmt: skip
    print(f"max |onnxruntime - torch| = {diff:.2e} (outputs in [0, 1]; 1/255 = 3.9e-03)")
    print(f"torch eager : {t_torch:.3f} s per pass, {t_torch / mp:.2f} s/MP")
    print(f"onnxruntime : {t_ort:.3f} s per pass, {t_ort / mp:.2f} s/MP ({t_torch / t_ort:.2f}x torch)")


if __name__ == "__main__":
    main()

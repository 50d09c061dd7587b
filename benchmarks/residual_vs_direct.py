"""Measure which generator output trains faster: the clean image directly, or the noise (residual learning).

Both variants of ``DenoiseUNet`` get the same seeds, crops, noise (sigma ~ U(0, 50)) and optimizer; the PSNR
of a held-out image at sigma 25 is printed every ``--report_every`` iterations.

    python benchmarks/residual_vs_direct.py --dataset_dir ../shared/data/isic_dev --iterations 300
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medical_denoise.networks import DenoiseUNet


def load(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a.clamp(0, 1) - b) ** 2).mean()))


def train(residual: bool, images: list[torch.Tensor], held_out: torch.Tensor, args) -> list[tuple[int, float, float]]:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    noisy_val = held_out + 25 / 255 * torch.randn(held_out.shape, generator=torch.Generator().manual_seed(1))
    net = DenoiseUNet(residual=residual)
    opt = torch.optim.Adam(net.parameters(), args.lr)
    start, out = time.time(), []
    for it in range(1, args.iterations + 1):
        crops = []
        for _ in range(args.batch_size):
            im = images[rng.integers(len(images))]
            y, x = rng.integers(im.shape[1] - args.patch), rng.integers(im.shape[2] - args.patch)
            crops.append(im[:, y : y + args.patch, x : x + args.patch])
        clean = torch.stack(crops)
        sigma = torch.from_numpy(rng.uniform(0, 50 / 255, (args.batch_size, 1, 1, 1)).astype(np.float32))
        loss = torch.nn.functional.l1_loss(net(clean + sigma * torch.randn_like(clean)), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % args.report_every == 0:
            with torch.no_grad():
                out.append((it, psnr(net(noisy_val), held_out), time.time() - start))
            print(
                f"{'residual' if residual else 'direct'} iteration {it}: held-out PSNR {out[-1][1]:.2f} dB", flush=True
            )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", type=Path, required=True)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--report_every", type=int, default=100)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    files = sorted(f for f in args.dataset_dir.iterdir() if f.suffix.lower() in (".jpg", ".png"))
    if len(files) < 2:
        raise SystemExit(f"{args.dataset_dir}: need at least 2 images")
    images, held_out = [load(f) for f in files[:-1]], load(files[-1])[None, :, :256, :256]
    noisy = held_out + 25 / 255 * torch.randn(held_out.shape, generator=torch.Generator().manual_seed(1))
    print(f"held-out {files[-1].name}: noisy PSNR {psnr(noisy, held_out):.2f} dB at sigma 25")
    results = {name: train(name == "residual", images, held_out, args) for name in ("direct", "residual")}
    print("\n| iteration | direct PSNR (dB) | residual PSNR (dB) |\n|---|---|---|")
    for (it, d, _), (_, r, _) in zip(results["direct"], results["residual"]):
        print(f"| {it} | {d:.2f} | {r:.2f} |")


if __name__ == "__main__":
    main()

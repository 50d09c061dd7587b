"""Training and inference throughput of the bundle's default networks, and the speed-up over BM3D.

Example::

    nice -n 10 python benchmarks/throughput.py --devices cpu --record docs/benchmarks.md
    python benchmarks/throughput.py --devices cuda --amp bf16 --channels_last --infer_size 2048

Training: full ``ConditionalGanTrainer`` iterations (discriminator step + generator step with the adversarial term
on) on random patches held in host memory, so host-to-device copies count but decoding and augmentation do not;
reported as training patches per second. Inference: whole-image forward passes (eval, no grad) of an RGB image,
reported as megapixels (H x W) per second. Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA; on the CPU
the process's peak resident set size during the phase (Linux ``VmHWM``, reset before each phase).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events

try:
    import medical_denoise  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medical_denoise.atomic import atomic_write
from medical_denoise.engine import ConditionalGanTrainer

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "gan_denoise"
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); elsewhere the peak stays cumulative."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (since :func:`reset_peak_rss` where supported)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak on a GPU, process peak RSS on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mb = float("nan")

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            reset_peak_rss()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.mb = peak_rss_mb()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bundle_components(config_file: Path, overrides: dict | None = None) -> dict:
    """Generator, discriminator, losses and default sizes as the bundle's train config defines them."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_file)
    parser.update({"bundle_root": str(config_file.parents[1]), **(overrides or {})})
    names = ("network_def", "discriminator_def", "pixel_loss", "adversarial_loss", "channels", "patch_size")
    parts = {k: parser.get_parsed_content(k) for k in names}
    parts["batch"] = parser.get_parsed_content("images_per_batch") * parser.get_parsed_content("samples_per_image")
    parts["adv_weight"] = parser.get_parsed_content("adv_weight")
    return parts


def prepare(network: torch.nn.Module, device: torch.device, channels_last: bool, compile_: bool) -> torch.nn.Module:
    network = network.to(device, memory_format=torch.channels_last) if channels_last else network.to(device)
    return torch.compile(network) if compile_ else network


def train_throughput(parts: dict, device: torch.device, args: argparse.Namespace) -> tuple[float, float]:
    """(training patches per second, peak memory MiB) over ``args.train_iters`` timed iterations."""
    g = prepare(parts["network_def"], device, args.channels_last, args.compile)
    d = prepare(parts["discriminator_def"], device, args.channels_last, False)
    batch, patch = args.batch or parts["batch"], args.patch or parts["patch_size"]
    shape = (batch, parts["channels"], *patch)
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(shape, generator=gen)
    data = [{"image": clean + 0.1 * torch.randn(shape, generator=gen), "label": clean}]
    dtype = AMP_DTYPES[args.amp]
    trainer = ConditionalGanTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=data * (args.warmup + args.train_iters),
        g_network=g,
        g_optimizer=torch.optim.Adam(g.parameters(), 1e-4),
        d_network=d,
        d_optimizer=torch.optim.Adam(d.parameters(), 1e-4, betas=(0.5, 0.999)),
        pixel_loss_function=parts["pixel_loss"],
        adversarial_loss_function=parts["adversarial_loss"],
        adv_weight=parts["adv_weight"] or 1e-3,  # the adversarial term always on: the full cost
        adv_start_iteration=0,
        amp=dtype is not None,
        amp_kwargs={"dtype": dtype} if dtype is not None else None,
        to_kwargs={"memory_format": torch.channels_last} if args.channels_last else None,
        decollate=False,
    )
    stamps: list[float] = []

    @trainer.on(Events.ITERATION_COMPLETED)
    def _stamp(_) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    with PeakMemory(device) as mem:
        trainer.run()
    seconds = stamps[-1] - stamps[args.warmup - 1] if args.warmup else stamps[-1] - stamps[0]
    timed = args.train_iters if args.warmup else args.train_iters - 1
    return timed * batch / seconds, mem.mb


@torch.no_grad()
def infer_throughput(parts: dict, device: torch.device, args: argparse.Namespace) -> tuple[float, float]:
    """(megapixels per second, peak memory MiB) of whole-image forward passes."""
    g = prepare(parts["network_def"], device, args.channels_last, args.compile).eval()
    x = torch.rand(1, parts["channels"], args.infer_size, args.infer_size, generator=torch.Generator().manual_seed(0))
    x = x.to(device, memory_format=torch.channels_last) if args.channels_last else x.to(device)
    dtype = AMP_DTYPES[args.amp]
    autocast = torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
    with PeakMemory(device) as mem, autocast:
        for _ in range(args.warmup):
            g(x)
        sync(device)
        start = time.perf_counter()
        for _ in range(args.infer_iters):
            g(x)
        sync(device)
        seconds = (time.perf_counter() - start) / args.infer_iters
    return args.infer_size**2 / 1e6 / seconds, mem.mb


def bm3d_seconds_per_mp(size: int, sigma: float = 25.0) -> float:
    """Seconds per megapixel of BM3D (``bm3d_rgb``, true sigma) on one ``size`` x ``size`` RGB image, CPU."""
    from skimage.data import astronaut
    from skimage.transform import resize

    from medical_denoise.evaluation.baselines import BM3DDenoiser

    clean = resize(astronaut() / 255.0, (size, size), anti_aliasing=True).transpose(2, 0, 1).astype(np.float32)
    noisy = clean + np.random.default_rng(0).normal(0, sigma / 255.0, clean.shape).astype(np.float32)
    denoise = BM3DDenoiser()
    start = time.perf_counter()
    denoise(noisy, sigma=sigma)
    return (time.perf_counter() - start) / (size * size / 1e6)


def machine_description() -> str:
    """Platform, CPUs, torch threads, GPU and current load of this machine."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs ({torch.get_num_threads()} torch threads{load}), {gpu}, "
        f"torch {torch.__version__}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config_file", type=Path, default=BUNDLE / "configs" / "train.yaml")
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="cuda is skipped when absent")
    p.add_argument("--patch", type=int, nargs=2, default=None, help="training patch (default: the config's)")
    p.add_argument("--batch", type=int, default=None, help="patches per iteration (default: the config's)")
    p.add_argument("--train_iters", type=int, default=5)
    p.add_argument("--infer_size", type=int, default=1024, help="side of the square RGB inference image")
    p.add_argument("--infer_iters", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations/passes first")
    p.add_argument("--amp", choices=sorted(AMP_DTYPES), default="none")
    p.add_argument("--channels_last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the generator")
    p.add_argument("--bm3d_size", type=int, default=512, help="0 skips the BM3D comparison")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--record", type=Path, default=None, help="markdown file to append the results to")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    cpu_s_per_mp = None
    for name in args.devices:
        if name == "cuda" and not torch.cuda.is_available():
            print("CUDA not available: skipping the GPU")
            continue
        device = torch.device(name)
        parts = bundle_components(args.config_file)
        train_ps, train_mb = train_throughput(parts, device, args)
        parts = bundle_components(args.config_file)  # fresh weights, no optimizer state held
        mp_s, infer_mb = infer_throughput(parts, device, args)
        if device.type == "cpu":
            cpu_s_per_mp = 1.0 / mp_s
        batch, patch = args.batch or parts["batch"], args.patch or parts["patch_size"]
        rows.append(
            f"| {name} | {args.amp} | {'yes' if args.channels_last else 'no'} | {'yes' if args.compile else 'no'} "
            f"| {patch[0]}x{patch[1]} x {batch} | {train_ps:.1f} | {train_mb:.0f} "
            f"| {args.infer_size}x{args.infer_size} | {mp_s:.3f} | {1 / mp_s:.2f} | {infer_mb:.0f} |"
        )
        print(rows[-1], flush=True)
    table = (
        "| device | AMP | channels_last | compile | train patch x batch | train patches/s | train peak MiB "
        "| inference image | inference MP/s | s/MP | inference peak MiB |\n"
        "|---|---|---|---|---|---:|---:|---|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    notes = ""
    if args.bm3d_size and cpu_s_per_mp is not None:
        bm3d = bm3d_seconds_per_mp(args.bm3d_size)
        verdict = "meets" if bm3d / cpu_s_per_mp >= 20 else "misses"
        notes = (
            f"\nBM3D (`bm3d_rgb`, true sigma 25, one {args.bm3d_size}x{args.bm3d_size} RGB image) on the same CPU: "
            f"{bm3d:.1f} s/MP. The generator denoises an RGB megapixel **{bm3d / cpu_s_per_mp:.0f}x** faster "
            f"on the CPU ({verdict} the 20x target).\n"
        )
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"\n## Throughput, {now}\n\n"
        f"- Machine: {machine_description()}\n"
        f"- Command: `python {shlex.join(sys.argv if argv is None else ['benchmarks/throughput.py', *argv])}`\n"
        f"- Networks: the bundle's `network_def` and `discriminator_def` ({args.config_file.name}); training = one "
        f"discriminator + one generator step (adversarial term on) on random patches in host memory; "
        f"{args.train_iters} timed iterations and {args.infer_iters} timed passes after {args.warmup} warm-up; "
        f"peak memory = CUDA allocator peak, or the process's peak RSS on the CPU\n\n" + table + notes
    )
    print(section)
    if args.record is not None:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        old = args.record.read_text(encoding="utf-8") if args.record.exists() else "# Benchmarks\n"
        atomic_write(args.record, lambda f: f.write(old.rstrip("\n") + "\n" + section))
        print(f"appended results to {args.record}")
    return section


if __name__ == "__main__":
    main()

"""Peak resident memory and wall time of denoising large RGB PNGs with the bundle's default `inference` command.

Each image is synthetic (smooth colour gradients plus Gaussian noise, sigma 20 on 0-255; 8-bit RGB PNG), written
into ``--work`` by a child process. Each run is the README's inference command in a fresh grandchild process,
started by a small wrapper process that reports its ``ru_maxrss`` (``os.wait4``): a child started directly by this
script would inherit this script's own high-water mark through ``vfork`` + ``exec`` (Linux records the old address
space's peak at ``exec``), and one size's peak would never carry over to the next anyway. Its peak resident memory and
wall time are reported next to the estimate the ``max_memory_gb`` budget is judged by
(:func:`medical_denoise.io.estimate_memory`). A 64 x 64 run first gives the fixed part (interpreter, torch, MONAI,
the model). Sizes whose predicted time (from the
last measured seconds per megapixel) would exceed ``--max_minutes`` are not run; their time and memory are then
extrapolated from the measured bytes per pixel and seconds per megapixel, and marked so.

    nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/photo_memory.py --sizes 2048 8192 12000 \
        --ensemble_sizes 2048 --work /tmp/photomem --max_minutes 25
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from medical_denoise.io import estimate_memory

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "gan_denoise"
BAND = 1024  # rows generated at a time: the generator itself never holds a float copy of the whole image
# a fresh, small process that runs argv[2:] and writes that child's own peak RSS (KiB) and exit status to argv[1]
WRAPPER = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}')\n"
)


def make_png(side: int, out: Path) -> Path:
    """:func:`write_png` in a child process, so that this process's peak memory stays small."""
    if not out.exists():
        subprocess.run([sys.executable, __file__, "--make", str(side), str(out)], check=True)
    return out


def write_png(side: int, out: Path, seed: int = 0) -> Path:
    """A ``side`` x ``side`` 8-bit RGB PNG: smooth gradients plus Gaussian noise (sigma 20), written with Pillow."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((side, side, 3), dtype=np.uint8)
    x = np.linspace(0.0, 1.0, side)[None, :]
    for top in range(0, side, BAND):
        y = np.linspace(0.0, 1.0, side)[top : top + BAND, None]
        base = np.stack([60 + 150 * x + 0 * y, 90 + 100 * y + 0 * x, 150 + 60 * np.sin(7 * x + 5 * y)], axis=-1)
        noisy = base + rng.normal(0.0, 20.0, base.shape)
        pixels[top : top + BAND] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    with Image.fromarray(pixels) as im:
        im.save(out.with_suffix(".tmp.png"), format="PNG", compress_level=1)
    out.with_suffix(".tmp.png").replace(out)
    return out


def run_inference(image: Path, out: Path, log: Path, self_ensemble: bool) -> tuple[float, float]:
    """(wall seconds, peak RSS GiB) of the bundle's `inference` on ``image``, in a fresh process (see WRAPPER)."""
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "inference",
        "--config_file", "['configs/train.yaml','configs/inference.yaml']", "--bundle_root", ".",
        "--input", str(image), "--output_dir", str(out), "--overwrite", "True",
        "--self_ensemble", str(self_ensemble),
    ]  # fmt: skip
    result = log.with_suffix(".rusage")
    result.unlink(missing_ok=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-c", WRAPPER, str(result), *cmd], cwd=BUNDLE, env={**os.environ}, stdout=f,
                       stderr=subprocess.STDOUT, check=False)  # fmt: skip
    wall = time.perf_counter() - start
    maxrss, code = result.read_text().split() if result.exists() else ("0", "-1")
    if int(code) != 0:
        sys.exit(f"inference of {image} failed:\n{log.read_text()[-3000:]}")
    return wall, int(maxrss) / 2**20  # KiB on Linux


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--make":
        write_png(int(sys.argv[2]), Path(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192, 12000], help="square RGB sides, single pass")
    ap.add_argument("--ensemble_sizes", type=int, nargs="*", default=[2048], help="sides also run with self-ensemble")
    ap.add_argument("--work", default="/tmp/photomem")
    ap.add_argument("--max_minutes", type=float, default=25.0, help="time budget of all runs; later sizes extrapolated")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    base_wall, base_rss = run_inference(make_png(64, work / "rgb_64.png"), work / "out", work / "log_64.txt", False)
    print(f"base: 64 x 64 RGB, {base_wall:.0f} s, peak RSS {base_rss:.2f} GiB", flush=True)
    rows = []
    plan = [(side, False) for side in args.sizes] + [(side, True) for side in args.ensemble_sizes]
    rate = None  # seconds per megapixel of the last single-pass run, startup excluded
    per_pixel = None  # bytes per pixel over the 64 x 64 base, of the last single-pass run
    for side, ensemble in plan:
        mp = side * side / 1e6
        estimate = estimate_memory(side * side, 3, 1, 4)
        left = args.max_minutes * 60 - (time.perf_counter() - began)
        if not ensemble and rate is not None and base_wall + rate * mp > left:
            wall, rss, how = base_wall + rate * mp, base_rss + per_pixel * side * side / 2**30, "extrapolated"
        else:
            image = make_png(side, work / f"rgb_{side}.png")
            log = work / f"log_{side}{'_ens' if ensemble else ''}.txt"
            wall, rss = run_inference(image, work / "out", log, ensemble)
            how = "measured"
            if not ensemble:
                rate = (wall - base_wall) / mp
                per_pixel = (rss - base_rss) * 2**30 / (side * side)
        rows.append((side, ensemble, mp, wall, rss, estimate, how))
        print(f"{side} x {side} self_ensemble={ensemble}: {wall:.0f} s, peak RSS {rss:.2f} GiB ({how}), "
              f"estimate {estimate:.2f} GiB", flush=True)  # fmt: skip
    print(
        "\n| image | self-ensemble | megapixels | wall time | s/MP | peak RSS | over 64 x 64 run | budget estimate | |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| 64 x 64 RGB PNG | off | 0.004 | {base_wall:.0f} s | - | {base_rss:.2f} GiB | - | - | measured |")
    for side, ensemble, mp, wall, rss, estimate, how in rows:
        extra = (rss - base_rss) * 2**30 / (side * side)
        print(f"| {side} x {side} RGB PNG | {'on' if ensemble else 'off'} | {mp:.3g} | {wall:.0f} s | "
              f"{(wall - base_wall) / mp:.2f} | {rss:.2f} GiB | {extra:.1f} B/pixel | {estimate:.2f} GiB | {how} |")  # fmt: skip


if __name__ == "__main__":
    main()

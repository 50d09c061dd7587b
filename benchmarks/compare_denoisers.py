"""Compare denoisers (classical baselines and, optionally, the GAN) on identical seeded noisy images.

Example::

    python benchmarks/compare_denoisers.py --dataset_dir ../shared/data/isic_dev --max_images 8 \\
        --sigmas 15 25 50 --methods noisy nlm tv wavelet bm3d --out_dir eval/compare --record docs/benchmarks.md

GAN hook: ``--gan_module some.module:factory`` imports ``factory`` and calls it (with ``--gan_kwargs`` as
keyword arguments); it must return a denoiser ``(noisy (C, H, W) float32) -> (C, H, W)``, optionally taking
``sigma``. The GAN is then scored as method ``--gan_name`` (default ``gan``) next to the baselines.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

try:
    import medical_denoise  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medical_denoise.atomic import atomic_write
from medical_denoise.evaluation.baselines import BM3D_LICENCE_NOTE, available_baselines, bm3d_available
from medical_denoise.evaluation.report import NOISY, ComparisonResult, run_comparison
from medical_denoise.evaluation.seeded_noise import SeededNoise

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
BASELINE_NAMES = ("nlm", "tv", "wavelet", "bm3d")


def list_images(dataset_dir: Path | None, images: Sequence[Path], max_images: int | None) -> list[Path]:
    """Image files to evaluate: the given files, then the folder's images sorted by name; first ``max_images``.

    Args:
        dataset_dir: folder whose image files (by suffix) are used, or None.
        images: explicitly listed image files.
        max_images: keep only the first this many.
    """
    paths = [Path(p) for p in images]
    if dataset_dir is not None:
        if not dataset_dir.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {dataset_dir}")
        paths += sorted(p for p in dataset_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
    if max_images is not None:
        paths = paths[:max_images]
    if not paths:
        raise ValueError("no images found: give --dataset_dir with image files or --images.")
    return paths


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as RGB float32 ``(3, H, W)`` in [0, 1].

    Args:
        path: image file (anything Pillow reads).
    """
    try:
        with Image.open(path) as img:
            img.load()  # decode now so a truncated file fails here, naming the file
            rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def load_factory_method(spec: str, kwargs: dict) -> Callable[..., np.ndarray]:
    """Import ``module:factory`` and return ``factory(**kwargs)``, which must be a denoiser callable.

    Args:
        spec: ``"package.module:factory"``.
        kwargs: keyword arguments for the factory.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--gan_module must look like 'package.module:factory', got {spec!r}.")
    factory = getattr(importlib.import_module(module_name), attr, None)
    if factory is None:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}.")
    method = factory(**kwargs)
    if not callable(method):
        raise TypeError(f"{spec}(...) returned {type(method).__name__}, expected a denoiser callable.")
    return method


def build_methods(names: Sequence[str], gan_module: str | None, gan_kwargs: dict, gan_name: str) -> dict:
    """Denoisers by name, in the requested order, with the GAN (if any) first.

    Args:
        names: baseline names (``noisy`` is always scored and is skipped here).
        gan_module: ``module:factory`` of the GAN, or None.
        gan_kwargs: keyword arguments for the GAN factory.
        gan_name: method name of the GAN in the report.
    """
    if "bm3d" in names and not bm3d_available():
        raise SystemExit(f"--methods bm3d requested but unavailable. {BM3D_LICENCE_NOTE}")
    baselines = available_baselines()
    methods = {}
    if gan_module is not None:
        if gan_name in BASELINE_NAMES or gan_name == NOISY:
            raise SystemExit(f"--gan_name {gan_name!r} clashes with a built-in method name.")
        # the GAN hook: the lead's factory plugs in here
        methods[gan_name] = load_factory_method(gan_module, gan_kwargs)
    for name in names:
        if name != NOISY:
            methods[name] = baselines[name]
    return methods


def machine_description() -> str:
    """Platform, CPU count and torch version of this machine."""
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    return f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, torch {torch_version}"


def record_section(
    result: ComparisonResult, args: argparse.Namespace, paths: Sequence[Path], argv: Sequence[str]
) -> str:
    """Markdown section appended to the ``--record`` file.

    Args:
        result: the comparison result.
        args: parsed command-line arguments.
        paths: evaluated image files.
        argv: the command line as typed (``sys.argv``).
    """
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    source = str(args.dataset_dir) if args.dataset_dir is not None else "listed files"
    return (
        f"\n## Denoiser comparison, {now}\n\n"
        f"- Machine: {machine_description()}\n"
        f"- Command: `python {shlex.join(argv)}`\n"
        f"- Data: {len(paths)} images from `{source}` ({', '.join(p.name for p in paths)}), "
        f"additive Gaussian noise seeded by (seed={args.seed}, image id, sigma), not clipped\n\n"
        f"{result.to_markdown()}"
    )


def append_record(record: Path, section: str) -> None:
    """Append ``section`` to ``record`` atomically (the old content plus the section replace the file).

    Args:
        record: markdown file, created with a title if missing.
        section: text to append.
    """
    record.parent.mkdir(parents=True, exist_ok=True)
    old = record.read_text(encoding="utf-8") if record.exists() else "# Benchmarks\n"
    atomic_write(record, lambda f: f.write(old.rstrip("\n") + "\n" + section))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_dir", type=Path, default=None, help="folder of images (sorted by name)")
    parser.add_argument("--images", type=Path, nargs="*", default=[], help="image files, used before the folder's")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[15.0, 25.0, 50.0], help="0-255 scale")
    parser.add_argument("--max_images", type=int, default=None)
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=(NOISY, *BASELINE_NAMES),
        default=None,
        help="baselines to run (default: all available); 'noisy' is always scored",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out_dir", type=Path, default=Path("eval/compare_denoisers"))
    parser.add_argument("--record", type=Path, default=None, help="markdown file to append the results to")
    parser.add_argument("--gan_module", default=None, help="'package.module:factory' returning a denoiser")
    parser.add_argument("--gan_kwargs", type=json.loads, default={}, help="JSON object of factory keyword arguments")
    parser.add_argument("--gan_name", default="gan")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    if args.dataset_dir is None and not args.images:
        parser.error("give --dataset_dir or --images")
    if args.max_images is not None and args.max_images < 1:
        parser.error("--max_images must be >= 1")
    if not isinstance(args.gan_kwargs, dict):
        parser.error("--gan_kwargs must be a JSON object")
    return args


def main(argv: Sequence[str] | None = None) -> ComparisonResult:
    """Run the comparison and write/record the report."""
    args = parse_args(argv)
    names = args.methods if args.methods is not None else [NOISY, *available_baselines()]
    methods = build_methods(names, args.gan_module, args.gan_kwargs, args.gan_name)
    paths = list_images(args.dataset_dir, args.images, args.max_images)
    images = [(p.stem, read_rgb(p)) for p in paths]
    result = run_comparison(
        images,
        args.sigmas,
        methods,
        add_noise=SeededNoise(seed=args.seed),
        out_dir=args.out_dir,
        progress=not args.no_progress,
    )
    print(result.to_markdown())
    print(f"wrote {len(result.files)} files to {args.out_dir}")
    if args.record is not None:
        typed = sys.argv if argv is None else ["benchmarks/compare_denoisers.py", *argv]
        append_record(args.record, record_section(result, args, paths, typed))
        print(f"appended results to {args.record}")
    return result


if __name__ == "__main__":
    main()

"""Run denoisers on identical seeded noisy images and report per-image scores, summaries and figures."""

from __future__ import annotations

import csv
import inspect
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from medical_denoise.atomic import atomic_write
from medical_denoise.evaluation.metrics import DATA_RANGE, check_image, mean_ci, score_image
from medical_denoise.evaluation.seeded_noise import SeededNoise

__all__ = [
    "NOISY",
    "ComparisonResult",
    "ImageResult",
    "SummaryRow",
    "accepts_sigma",
    "format_markdown",
    "run_comparison",
    "save_figure",
    "summarize",
    "write_csv",
]

NOISY = "noisy"
Denoiser = Callable[..., np.ndarray]
AddNoise = Callable[[np.ndarray, float, str], np.ndarray]


@dataclass(frozen=True)
class ImageResult:
    """Scores of one method on one noisy image (one row of ``per_image.csv``)."""

    image_id: str
    sigma: float
    method: str
    psnr: float
    ssim: float
    ms_ssim: float
    seconds: float
    megapixels: float
    seconds_per_mp: float


@dataclass(frozen=True)
class SummaryRow:
    """Mean and confidence interval of each metric for one (sigma, method) (one row of ``summary.csv``)."""

    sigma: float
    method: str
    n: int
    psnr_mean: float
    psnr_low: float
    psnr_high: float
    ssim_mean: float
    ssim_low: float
    ssim_high: float
    ms_ssim_mean: float
    ms_ssim_low: float
    ms_ssim_high: float
    seconds_per_mp: float


@dataclass
class ComparisonResult:
    """Everything ``run_comparison`` produced.

    Attributes:
        rows: per-image results, ordered by image, sigma, method.
        summary: per (sigma, method) summaries, ordered by sigma then method order.
        focus_method: method whose best/worst images were saved as triplets (None if only ``noisy``).
        true_sigma_methods: methods that were given the true sigma (their signature has ``sigma``).
        confidence: confidence level of the intervals.
        files: written files by name (empty when no ``out_dir``).
    """

    rows: list[ImageResult]
    summary: list[SummaryRow]
    focus_method: str | None
    true_sigma_methods: list[str]
    confidence: float = 0.95
    files: dict[str, Path] = field(default_factory=dict)

    def to_markdown(self) -> str:
        """The summary table plus notes on how it was measured."""
        return format_markdown(self.summary, self.confidence) + _notes(self)


def accepts_sigma(method: Denoiser) -> bool:
    """Whether ``method`` takes a ``sigma`` argument (it then receives the true sigma, 0-255 scale).

    Args:
        method: a denoiser callable.
    """
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    param = params.get("sigma")
    return param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)


def _check_clean(image_id: str, image: np.ndarray) -> None:
    check_image(image, f"image {image_id!r}")
    lo, hi = float(image.min()), float(image.max())
    if lo < 0.0 or hi > DATA_RANGE:
        raise ValueError(f"image {image_id!r}: clean values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}].")


def _choose_focus(methods: dict[str, Denoiser], focus_method: str | None) -> str | None:
    if focus_method is not None:
        if focus_method not in methods:
            raise ValueError(f"focus_method {focus_method!r} is not one of the methods {list(methods)}.")
        return focus_method
    if "gan" in methods:
        return "gan"
    return next(iter(methods), None)


@dataclass
class _Extreme:
    gain: float
    image_id: str
    noisy: np.ndarray
    output: np.ndarray
    clean: np.ndarray
    noisy_psnr: float
    output_psnr: float


def run_comparison(
    images: Sequence[tuple[str, np.ndarray]],
    sigmas: Sequence[float],
    methods: dict[str, Denoiser],
    add_noise: AddNoise | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    focus_method: str | None = None,
    confidence: float = 0.95,
) -> ComparisonResult:
    """Score every method on the same seeded noisy version of every image at every sigma.

    The noisy input itself is scored as method ``"noisy"`` (identity, 0 s). Each method gets its own float32
    copy of the one noisy array made per (image, sigma), so an in-place method cannot affect the next.
    Methods whose signature has ``sigma`` are called with the true sigma (0-255 scale).

    Args:
        images: ``(image_id, clean)`` pairs, clean ``(C, H, W)`` float in [0, 1]; ids must be unique.
        sigmas: noise levels on the 0-255 scale.
        methods: denoisers by name; ``"noisy"`` is reserved and always added.
        add_noise: ``(clean, sigma, image_id) -> noisy``; defaults to ``SeededNoise(seed=0)`` (Gaussian).
        out_dir: if given, write CSVs, the markdown table and figures there (created if missing).
        progress: show a tqdm progress bar.
        focus_method: method whose PSNR gain over noisy picks the best/worst triplets; default
            ``"gan"`` if present, else the first method.
        confidence: confidence level of the t-intervals.

    Returns:
        A ``ComparisonResult``.
    """
    if NOISY in methods:
        raise ValueError(f"method name {NOISY!r} is reserved for the unprocessed noisy input.")
    if not images:
        raise ValueError("no images to evaluate.")
    if not sigmas:
        raise ValueError("no sigmas given.")
    sigmas = [float(s) for s in sigmas]
    if any(s < 0 or not math.isfinite(s) for s in sigmas):
        raise ValueError(f"sigmas must be finite and >= 0, got {sigmas}.")
    ids = [image_id for image_id, _ in images]
    if len(set(ids)) != len(ids):
        raise ValueError("image ids must be unique.")
    for image_id, image in images:
        _check_clean(image_id, image)
    add_noise = SeededNoise(seed=0) if add_noise is None else add_noise
    focus = _choose_focus(methods, focus_method)
    with_sigma = {name for name, fn in methods.items() if accepts_sigma(fn)}

    rows: list[ImageResult] = []
    best: dict[float, _Extreme] = {}
    worst: dict[float, _Extreme] = {}
    total = len(images) * len(sigmas) * (len(methods) + 1)
    with tqdm(total=total, disable=not progress, desc="denoise+score", unit="run") as bar:
        for image_id, clean in images:
            megapixels = clean.shape[1] * clean.shape[2] / 1e6
            for sigma in sigmas:
                noisy = np.asarray(add_noise(clean, sigma, image_id))
                check_image(noisy, f"noisy image {image_id!r} at sigma {sigma:g}")
                if noisy.shape != clean.shape:
                    raise ValueError(f"add_noise changed the shape of {image_id!r}: {clean.shape} -> {noisy.shape}.")
                noisy = noisy.astype(np.float32, copy=False)  # the documented input type of every denoiser
                noisy_scores = score_image(clean, noisy)
                rows.append(
                    ImageResult(
                        image_id,
                        sigma,
                        NOISY,
                        noisy_scores.psnr,
                        noisy_scores.ssim,
                        noisy_scores.ms_ssim,
                        0.0,
                        megapixels,
                        0.0,
                    )
                )
                bar.update(1)
                for name, method in methods.items():
                    kwargs = {"sigma": sigma} if name in with_sigma else {}
                    start = time.perf_counter()
                    try:
                        output = np.asarray(method(noisy.copy(), **kwargs))
                    except Exception as err:
                        raise RuntimeError(f"method {name!r} failed on image {image_id!r} at sigma {sigma:g}.") from err
                    seconds = time.perf_counter() - start
                    where = f"output of method {name!r} on image {image_id!r} at sigma {sigma:g}"
                    if output.shape != clean.shape:
                        raise ValueError(f"{where}: shape {output.shape}, expected {clean.shape}.")
                    check_image(output, where)
                    scores = score_image(clean, output)
                    rows.append(
                        ImageResult(
                            image_id,
                            sigma,
                            name,
                            scores.psnr,
                            scores.ssim,
                            scores.ms_ssim,
                            seconds,
                            megapixels,
                            seconds / megapixels,
                        )
                    )
                    if name == focus:
                        gain = scores.psnr - noisy_scores.psnr
                        candidate = _Extreme(gain, image_id, noisy, output, clean, noisy_scores.psnr, scores.psnr)
                        if sigma not in best or gain > best[sigma].gain:
                            best[sigma] = candidate
                        if sigma not in worst or gain < worst[sigma].gain:
                            worst[sigma] = candidate
                    bar.update(1)

    result = ComparisonResult(
        rows=rows,
        summary=summarize(rows, confidence),
        focus_method=focus,
        true_sigma_methods=[name for name in methods if name in with_sigma],
        confidence=confidence,
    )
    if out_dir is not None:
        result.files = _write_outputs(result, Path(out_dir), best, worst)
    return result


def summarize(rows: Sequence[ImageResult], confidence: float = 0.95) -> list[SummaryRow]:
    """Mean and t-interval of each metric, and mean seconds per megapixel, per (sigma, method).

    Args:
        rows: per-image results.
        confidence: confidence level of the intervals.
    """
    groups: dict[tuple[float, str], list[ImageResult]] = {}
    for row in rows:
        groups.setdefault((row.sigma, row.method), []).append(row)
    order = {name: i for i, name in enumerate(dict.fromkeys(r.method for r in rows))}
    summary = []
    for (sigma, method), group in sorted(groups.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        stats = [mean_ci([getattr(r, metric) for r in group], confidence) for metric in ("psnr", "ssim", "ms_ssim")]
        summary.append(
            SummaryRow(
                sigma,
                method,
                len(group),
                *stats[0],
                *stats[1],
                *stats[2],
                float(np.mean([r.seconds_per_mp for r in group])),
            )
        )
    return summary


def _fmt(mean: float, low: float, high: float, digits: int, bold: bool) -> str:
    if math.isnan(mean):
        return "n/a"
    value = f"{mean:.{digits}f}"
    value = f"**{value}**" if bold else value
    ci = "CI n/a" if math.isnan(low) else f"{low:.{digits}f}–{high:.{digits}f}"
    return f"{value} ({ci})"


def format_markdown(summary: Sequence[SummaryRow], confidence: float = 0.95) -> str:
    """Markdown table ``sigma | method | PSNR | SSIM | MS-SSIM | s/MP``; the best mean per sigma is bold.

    Each metric cell is ``mean (low–high)`` with the t-interval of the mean; MS-SSIM is ``n/a`` when the
    images are too small for 5 scales.

    Args:
        summary: rows from ``summarize``.
        confidence: confidence level the rows were computed with (for the header).
    """
    pct = f"{confidence * 100:g}%"
    lines = [
        f"| sigma | method | PSNR dB ({pct} CI) | SSIM ({pct} CI) | MS-SSIM ({pct} CI) | s/MP |",
        "|---:|---|---|---|---|---:|",
    ]
    best: dict[tuple[float, str], float] = {}
    for row in summary:
        for metric in ("psnr", "ssim", "ms_ssim"):
            value = getattr(row, f"{metric}_mean")
            if not math.isnan(value):
                best[(row.sigma, metric)] = max(best.get((row.sigma, metric), -math.inf), value)
    for row in summary:
        cells = []
        for metric, digits in (("psnr", 2), ("ssim", 4), ("ms_ssim", 4)):
            mean = getattr(row, f"{metric}_mean")
            is_best = not math.isnan(mean) and round(mean, digits) == round(best[(row.sigma, metric)], digits)
            cells.append(_fmt(mean, getattr(row, f"{metric}_low"), getattr(row, f"{metric}_high"), digits, is_best))
        lines.append(f"| {row.sigma:g} | {row.method} | {' | '.join(cells)} | {row.seconds_per_mp:.3g} |")
    return "\n".join(lines) + "\n"


def _notes(result: ComparisonResult) -> str:
    n_images = len({r.image_id for r in result.rows})
    oracle = ", ".join(result.true_sigma_methods) or "none"
    return (
        f"\n{n_images} images per cell. Metrics on outputs clipped to [0, 1], data_range = {DATA_RANGE}; "
        f"intervals are two-sided {result.confidence * 100:g}% t-intervals of the mean over images. "
        f"s/MP = wall-clock seconds per megapixel (H x W) on this machine. "
        f"Methods given the true sigma: {oracle}; all others are blind.\n"
    )


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def write_csv(path: Path, rows: Sequence[Any], columns: Sequence[str]) -> Path:
    """Write dataclass ``rows`` to ``path`` atomically, floats as ``repr`` (exact round trip)."""

    def write(f: IO[Any]) -> None:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in asdict(row).items()})

    return atomic_write(path, write)


def save_figure(fig: Figure, path: Path) -> Path:
    """Save a matplotlib ``Figure`` as PNG atomically."""
    FigureCanvasAgg(fig)  # Agg canvas without pyplot: no global backend state is touched
    return atomic_write(path, lambda f: fig.savefig(f, format="png"), binary=True)


def _plot_psnr(summary: Sequence[SummaryRow], path: Path) -> Path:
    fig = Figure(figsize=(6, 4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for method in dict.fromkeys(r.method for r in summary):
        rows = [r for r in summary if r.method == method]
        x = [r.sigma for r in rows]
        y = np.array([r.psnr_mean for r in rows])
        err = np.array([[r.psnr_mean - r.psnr_low, r.psnr_high - r.psnr_mean] for r in rows]).T
        err = np.nan_to_num(err, nan=0.0)
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method, linestyle="--" if method == NOISY else "-")
    ax.set_xlabel("noise sigma (0-255 scale)")
    ax.set_ylabel("PSNR (dB), mean with CI")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def _to_display(image: np.ndarray) -> np.ndarray:
    image = np.clip(image, 0.0, 1.0)
    return image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)


def _plot_triplet(extreme: _Extreme, method: str, sigma: float, label: str, path: Path) -> Path:
    h, w = extreme.clean.shape[1:]
    fig = Figure(figsize=(3 * w / 100 + 0.5, h / 100 + 0.6), dpi=100, layout="constrained")
    titles = (
        f"noisy σ={sigma:g} ({extreme.noisy_psnr:.2f} dB)",
        f"{method} ({extreme.output_psnr:.2f} dB)",
        "clean",
    )
    for i, (image, title) in enumerate(zip((extreme.noisy, extreme.output, extreme.clean), titles)):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.imshow(_to_display(image), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"{label}: {extreme.image_id} (gain {extreme.gain:+.2f} dB)", fontsize=9)
    return save_figure(fig, path)


def _write_outputs(
    result: ComparisonResult, out_dir: Path, best: dict[float, _Extreme], worst: dict[float, _Extreme]
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "per_image.csv": write_csv(out_dir / "per_image.csv", result.rows, [f.name for f in fields(ImageResult)]),
        "summary.csv": write_csv(out_dir / "summary.csv", result.summary, [f.name for f in fields(SummaryRow)]),
        "summary.md": atomic_write(out_dir / "summary.md", lambda f: f.write(result.to_markdown())),
        "psnr_vs_sigma.png": _plot_psnr(result.summary, out_dir / "psnr_vs_sigma.png"),
    }
    if result.focus_method is not None:
        for label, extremes in (("best", best), ("worst", worst)):
            for sigma, extreme in extremes.items():
                name = f"triplet_sigma{sigma:g}_{label}_{_safe_name(extreme.image_id)}.png"
                files[name] = _plot_triplet(extreme, result.focus_method, sigma, label, out_dir / name)
    return files

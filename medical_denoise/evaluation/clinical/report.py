"""Summaries (mean and slice-level bootstrap interval), paired differences, markdown, CSVs and figures."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from medical_denoise.atomic import atomic_write
from medical_denoise.evaluation.clinical.conditions import NoiseKind
from medical_denoise.evaluation.clinical.runner import BASELINES, MODEL, NOISY, Example, SeriesSampling, SliceResult
from medical_denoise.evaluation.metrics import SSIM_WIN_SIZE, bootstrap_ci
from medical_denoise.evaluation.report import save_figure, write_csv
from medical_denoise.noise import is_ct, stable_seed

__all__ = [
    "ClinicalReport",
    "PairedRow",
    "SummaryRow",
    "display_window",
    "format_markdown",
    "paired_differences",
    "summarize",
    "write_report",
]

#: soft-tissue window (level 40 HU, width 400 HU) for CT pictures.
SOFT_TISSUE_HU = (-160.0, 240.0)
METRICS = ("psnr", "ssim", "rmse")


@dataclass(frozen=True)
class SummaryRow:
    """Mean and bootstrap interval of each metric for one (scope, group, condition, method) (``summary.csv``).

    ``scope`` is ``"modality"`` (all series of a modality pooled) or ``"series"``; ``noise_std`` is the mean measured
    noise std and ``rmse`` the error, both in ``unit``.
    """

    scope: str
    group: str
    modality: str
    condition: str
    kind: str
    level: float
    noise_std: float
    unit: str
    method: str
    n_series: int
    n_slices: int
    psnr_mean: float
    psnr_low: float
    psnr_high: float
    ssim_mean: float
    ssim_low: float
    ssim_high: float
    rmse_mean: float
    rmse_low: float
    rmse_high: float
    seconds_per_slice: float


@dataclass(frozen=True)
class PairedRow:
    """Per-slice difference ``method - reference`` (same noisy slices), mean and bootstrap interval (``paired.csv``)."""

    scope: str
    group: str
    modality: str
    condition: str
    method: str
    reference: str
    n_slices: int
    dpsnr_mean: float
    dpsnr_low: float
    dpsnr_high: float
    dssim_mean: float
    dssim_low: float
    dssim_high: float


@dataclass
class ClinicalReport:
    """Everything the clinical evaluation produced.

    Attributes:
        rows: per-slice results.
        samplings: the slices scored per series.
        summary: per modality and per series summaries.
        paired: the model against the reference method (``bm3d`` when evaluated, else ``noisy``).
        settings: what was run (checkpoint, context, seed, levels, bootstrap), for the report.
        files: written files by name.
    """

    rows: list[SliceResult]
    samplings: list[SeriesSampling]
    summary: list[SummaryRow]
    paired: list[PairedRow]
    settings: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def to_markdown(self) -> str:
        return format_markdown(self)


def _groups(rows: Sequence[SliceResult], scope: str) -> dict[tuple[str, str], list[SliceResult]]:
    """Rows by (group, condition): group = modality or series, in order of appearance."""
    out: dict[tuple[str, str], list[SliceResult]] = {}
    for r in rows:
        out.setdefault((r.modality if scope == "modality" else r.series, r.condition), []).append(r)
    return out


def _by_series(rows: Sequence[SliceResult], value: str) -> list[list[float]]:
    series: dict[str, list[float]] = {}
    for r in rows:
        series.setdefault(r.series, []).append(getattr(r, value))
    return list(series.values())


def summarize(
    rows: Sequence[SliceResult], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> list[SummaryRow]:
    """Per modality (series pooled, bootstrap stratified by series) and per series: mean and interval per method.

    Every method of a (group, condition) is resampled with the same draws (the seed depends on the group and the
    condition only), so their intervals describe the same resampled slices.

    Args:
        rows: per-slice results.
        confidence: interval level.
        resamples: bootstrap replicates.
        seed: bootstrap seed.
    """
    summary = []
    for scope in ("modality", "series"):
        for (group, condition), group_rows in _groups(rows, scope).items():
            boot_seed = stable_seed("clinical_bootstrap", seed, scope, group, condition)
            for method in dict.fromkeys(r.method for r in group_rows):
                mrows = [r for r in group_rows if r.method == method]
                stats = [bootstrap_ci(_by_series(mrows, m), confidence, resamples, boot_seed) for m in METRICS]
                first = mrows[0]
                summary.append(SummaryRow(
                    scope, group, first.modality, condition, first.kind, first.level,
                    float(np.nanmean([r.noise_std for r in mrows])) if any(np.isfinite(r.noise_std) for r in mrows)
                    else math.nan, first.unit, method, len({r.series for r in mrows}), len(mrows),
                    *stats[0], *stats[1], *stats[2], float(np.mean([r.seconds for r in mrows])),
                ))  # fmt: skip
    return summary


def paired_differences(
    rows: Sequence[SliceResult],
    method: str = MODEL,
    reference: str | None = None,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> list[PairedRow]:
    """Per-slice PSNR/SSIM differences ``method - reference`` with a bootstrap interval, per modality and series.

    Args:
        rows: per-slice results.
        method: the method compared.
        reference: the method compared against (default ``bm3d`` when present, else ``noisy``).
        confidence: interval level.
        resamples: bootstrap replicates.
        seed: bootstrap seed.
    """
    methods = {r.method for r in rows}
    reference = reference or ("bm3d" if "bm3d" in methods else NOISY)
    if method not in methods or reference not in methods or method == reference:
        return []
    out = []
    for scope in ("modality", "series"):
        for (group, condition), group_rows in _groups(rows, scope).items():
            ref = {(r.series, r.slice): r for r in group_rows if r.method == reference}
            pairs = [(r, ref[(r.series, r.slice)]) for r in group_rows if r.method == method]
            diffs: dict[str, dict[str, list[float]]] = {"psnr": {}, "ssim": {}}
            for a, b in pairs:
                for m, per_series in diffs.items():
                    per_series.setdefault(a.series, []).append(getattr(a, m) - getattr(b, m))
            boot_seed = stable_seed("clinical_bootstrap", seed, scope, group, condition)
            stats = [bootstrap_ci(list(diffs[m].values()), confidence, resamples, boot_seed) for m in ("psnr", "ssim")]
            out.append(PairedRow(scope, group, pairs[0][0].modality, condition, method, reference, len(pairs),
                                 *stats[0], *stats[1]))  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------------------- markdown


def _cell(mean: float, low: float, high: float, digits: int, bold: bool) -> str:
    if math.isnan(mean):
        return "n/a"
    value = f"**{mean:.{digits}f}**" if bold else f"{mean:.{digits}f}"
    return value if math.isnan(low) else f"{value} ({low:.{digits}f}–{high:.{digits}f})"


def _best(rows: Sequence[SummaryRow]) -> dict[tuple[str, str], float]:
    best: dict[tuple[str, str], float] = {}
    for r in rows:
        for m, better in (("psnr", max), ("ssim", max), ("rmse", min)):
            value = getattr(r, f"{m}_mean")
            if math.isfinite(value):
                key = (r.condition, m)
                best[key] = better(best.get(key, value), value)
    return best


def _table(rows: Sequence[SummaryRow], pct: str) -> list[str]:
    unit = rows[0].unit
    lines = [
        (
            f"| condition | noise std ({unit}) | method | PSNR dB ({pct} CI) | SSIM ({pct} CI) | RMSE {unit} ({pct} CI) "
            "| slices | s/slice |"
        ),
        "|---|---:|---|---|---|---|---:|---:|",
    ]
    best = _best(rows)
    digits = {"psnr": 2, "ssim": 4, "rmse": 2}
    for r in rows:
        cells = []
        for m in METRICS:
            mean = getattr(r, f"{m}_mean")
            bold = (r.condition, m) in best and round(mean, digits[m]) == round(best[(r.condition, m)], digits[m])
            cells.append(_cell(mean, getattr(r, f"{m}_low"), getattr(r, f"{m}_high"), digits[m], bold))
        std = "n/a" if math.isnan(r.noise_std) else f"{r.noise_std:.3g}"
        lines.append(f"| {r.condition} | {std} | {r.method} | {' | '.join(cells)} | {r.n_slices} | "
                     f"{r.seconds_per_slice:.3g} |")  # fmt: skip
    return lines


def _paired_table(rows: Sequence[PairedRow], pct: str) -> list[str]:
    lines = [
        f"| modality / series | condition | slices | ΔPSNR dB ({pct} CI) | ΔSSIM ({pct} CI) |",
        "|---|---|---:|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.group} | {r.condition} | {r.n_slices} | {_cell(r.dpsnr_mean, r.dpsnr_low, r.dpsnr_high, 2, False)}"
                     f" | {_cell(r.dssim_mean, r.dssim_low, r.dssim_high, 4, False)} |")  # fmt: skip
    return lines


def _mapping(sampling: SeriesSampling) -> str:
    low, high, kind = sampling.mapping
    unit = " HU" if is_ct(sampling.modality) else ""
    return f"{kind} [{low:g}, {high:g}]{unit} -> [0, 1]"


def format_markdown(report: ClinicalReport) -> str:
    """The report: settings, per-modality tables, the paired comparison, per-series tables and notes."""
    s = report.settings
    pct = f"{s.get('confidence', 0.95) * 100:g}%"
    baselines = [m for m in dict.fromkeys(r.method for r in report.rows) if m in BASELINES]
    k = int(s.get("context", 0))
    given = ", ".join(f"`{b}` = {BASELINES[b]}" for b in baselines) or "none"
    ct = s.get("ct_checkpoint", s.get("checkpoint"))
    ct_note = f" (CT and other non-MR series: `{ct}`)" if ct != s.get("checkpoint") else ""
    lines = [
        "# Clinical evaluation: denoising in physical units",
        "",
        (
            f"* Model: `{s.get('checkpoint', 'n/a')}`{ct_note}, 2.5D with {k} neighbour slice(s) on each side ({2 * k + 1} "
            "input slices, edge slices repeated); `model` is blind (never told the noise level; a noise-level-"
            "conditioned network estimates it from its input), `model_sigma` (when present) is the same network told "
            "the std the baselines get."
        ),
        f"* Data: split `{s.get('split', 'test')}` of `{s.get('datalist', 'n/a')}`; seed {s.get('seed', 0)}.",
        "* Series, their intensity map to the network range [0, 1], and the slices scored:",
        *[f"  * `{p.image_id}` ({p.modality}, {_mapping(p)}): {p.describe()}" for p in report.samplings],
        (
            "* Noise (the same noisy slices for every method; slice z's noise depends only on (seed, series, z, "
            "condition), neighbours get their own independent noise):"
        ),
        (
            "  * CT Gaussian: white noise with the given std in HU inside the field of view (pixels above -1500 HU; "
            "the scanner's padding outside the reconstruction circle stays exact and is not scored)."
        ),
        (
            "  * CT low dose: projection-domain simulation (`LowDoseCTNoise`, Poisson + electronic noise, FBP) at I0 "
            "photons per ray; its std is measured in the body (clean > -500 HU) of each slice (`noise std` column)."
        ),
        (
            "  * MR: Rician noise, per-channel std as a % of the series' robust range (0.5–99.5 percentile span); "
            "`noise std` is measured where the clean magnitude is >= 3 sigma."
        ),
        (
            "  * Other grayscale modalities (CR/DX, NM, ultrasound, ...): Gaussian noise, std as a % of the robust "
            "range (no Rician floor), scored with the model inference routes them to (the CT model when given)."
        ),
        (
            "* Metrics per slice in the network range of the series' intensity map (CT: the fixed HU map, the same "
            "for every scanner, so PSNR's peak is its width in HU; other modalities: the robust range), "
            "`data_range = 1`, no clipping; CT scored inside the field of view. SSIM: skimage, "
            f"{SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} uniform window. RMSE in HU for CT, in % of the robust range otherwise."
        ),
        (
            f"* Intervals: {pct} percentile bootstrap over slices ({s.get('resamples', 2000)} resamples; per modality "
            "stratified by series). They are slice-level: slices of one patient are not independent samples and the "
            "test set holds few patients, so they show slice-to-slice spread within these patients, not the spread "
            "over patients."
        ),
        (
            "* Baselines on the centre slice, given the noise std (true std; low dose: the measured body std of that "
            f"slice; Rician: the per-channel std): {given}."
        ),
        (
            "* Best mean per condition in bold (PSNR/SSIM highest, RMSE lowest). s/slice: wall-clock seconds per "
            "slice on this machine."
        ),
        "",
    ]
    modality_rows = [r for r in report.summary if r.scope == "modality"]
    for modality in dict.fromkeys(r.group for r in modality_rows):
        rows = [r for r in modality_rows if r.group == modality]
        n_series = max(r.n_series for r in rows)
        lines += [f"## {modality} ({n_series} series pooled)", "", *_table(rows, pct), ""]
    for method in dict.fromkeys(p.method for p in report.paired):
        paired = [p for p in report.paired if p.method == method]
        lines += [f"## {method} minus {paired[0].reference}, paired per slice", "",
                  *_paired_table(paired, pct), ""]  # fmt: skip
    series_rows = [r for r in report.summary if r.scope == "series"]
    for series in dict.fromkeys(r.group for r in series_rows):
        rows = [r for r in series_rows if r.group == series]
        lines += [f"### Series `{series}` ({rows[0].modality})", "", *_table(rows, pct), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------- figures


def _plot_psnr(summary: Sequence[SummaryRow], path: Path) -> Path:
    rows = [r for r in summary if r.scope == "modality"]
    panels = list(dict.fromkeys((r.modality, r.kind) for r in rows))
    fig = Figure(figsize=(4.2 * len(panels), 3.6), dpi=100, layout="constrained")
    for i, (modality, kind) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        prow = [r for r in rows if (r.modality, r.kind) == (modality, kind)]
        for method in dict.fromkeys(r.method for r in prow):
            mrows = sorted((r for r in prow if r.method == method), key=lambda r: r.noise_std)
            x = [r.level if kind != NoiseKind.LOWDOSE else r.noise_std for r in mrows]
            if NoiseKind(kind).of_range:
                x = [v * 100 for v in x]
            y = np.array([r.psnr_mean for r in mrows])
            err = np.nan_to_num(np.array([[r.psnr_mean - r.psnr_low, r.psnr_high - r.psnr_mean] for r in mrows]).T)
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method, linestyle="--" if method == NOISY else "-")
        xlabel = {
            NoiseKind.GAUSSIAN_HU: "Gaussian noise std (HU)",
            NoiseKind.LOWDOSE: "low-dose noise std in the body (HU, measured)",
            NoiseKind.RICIAN: "Rician std (% of robust range)",
            NoiseKind.GAUSSIAN_RANGE: "Gaussian std (% of robust range)",
        }[NoiseKind(kind)]
        ax.set_xlabel(xlabel)
        ax.set_ylabel("PSNR dB (network range), mean and CI")
        title = {
            NoiseKind.GAUSSIAN_HU: "Gaussian",
            NoiseKind.LOWDOSE: "low-dose simulation",
            NoiseKind.RICIAN: "Rician",
            NoiseKind.GAUSSIAN_RANGE: "Gaussian",
        }
        ax.set_title(f"{modality}: {title[NoiseKind(kind)]} noise", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def display_window(info: Mapping[str, Any], modality: str) -> tuple[float, float]:
    """Display range in the network range: CT's soft-tissue window, else the robust range [0, 1]."""
    if not is_ct(modality):
        return 0.0, 1.0
    low, span = float(info["low"]), float(info["high"]) - float(info["low"])
    return (SOFT_TISSUE_HU[0] - low) / span, (SOFT_TISSUE_HU[1] - low) / span


def _plot_example(example: Example, path: Path, max_side: int = 384) -> Path:
    panels = [(NOISY, "noisy")]
    if MODEL in example.outputs:
        panels.append((MODEL, MODEL))
    other = "bm3d" if "bm3d" in example.outputs else next((m for m in example.outputs if m in BASELINES), None)
    if other:
        panels.append((other, other))
    h, w = example.clean.shape
    scale = min(1.0, max_side / max(h, w))
    columns = len(panels) + 1  # + clean
    fig = Figure(figsize=(columns * w * scale / 100 + 0.3, h * scale / 100 + 0.7), dpi=100, layout="constrained")
    vmin, vmax = display_window(example.info, example.modality)
    images = [(example.outputs[key], f"{title} ({example.psnr[key]:.2f} dB)") for key, title in panels]
    for i, (image, title) in enumerate([*images, (example.clean, "clean")]):
        ax = fig.add_subplot(1, columns, i + 1)
        ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, interpolation="antialiased")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    window = "soft-tissue window W400/L40" if is_ct(example.modality) else "robust range"
    fig.suptitle(f"{example.series} slice {example.slice}, {example.condition.label} ({window})", fontsize=9)
    return save_figure(fig, path)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)


def write_report(report: ClinicalReport, examples: Sequence[Example], out_dir: str | Path) -> dict[str, Path]:
    """Write ``per_slice.csv``, ``summary.csv``, ``paired.csv``, ``summary.md``, ``psnr_vs_level.png`` and one
    ``example_<series>_<condition>_z<slice>.png`` per kept example (noisy | model | BM3D | clean), atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "per_slice.csv": write_csv(out / "per_slice.csv", report.rows, [f.name for f in fields(SliceResult)]),
        "summary.csv": write_csv(out / "summary.csv", report.summary, [f.name for f in fields(SummaryRow)]),
        "paired.csv": write_csv(out / "paired.csv", report.paired, [f.name for f in fields(PairedRow)]),
        "summary.md": atomic_write(out / "summary.md", lambda f: f.write(report.to_markdown())),
        "psnr_vs_level.png": _plot_psnr(report.summary, out / "psnr_vs_level.png"),
    }
    for e in examples:
        name = f"example_{_safe(e.series)}_{e.condition.name}_z{e.slice}.png"
        files[name] = _plot_example(e, out / name)
    report.files = files
    return files

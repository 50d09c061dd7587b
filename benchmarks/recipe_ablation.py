"""Dermoscopy recipe ablation at an equal wall-clock budget: which design to train on all the images (issue 20).

Each variant is the bundle's training (``configs/train.yaml`` + ``configs/gpu.yaml``, whose ``TimeBudget`` fits the
run's length, cosine schedule and adversarial start to the budget) with a few options changed, on the same training
images, seed and budget, run one after the other with every core. Each run's LAST generator is then scored in a
single pass on the datalist's ``validation`` split (the test sets are never used to choose), every variant on the
same seeded noise. Prints a markdown table (with the iterations each variant trained in the budget) and writes it to
``--work/ablation.md``.

    python benchmarks/recipe_ablation.py --work /tmp/ablation --minutes 20 \
        --datalist docs/isic_datalist.json [--variants base,wide,no_adv]   # from the repository root

A variant whose run folder already holds a finished evaluation is not run again, so an interrupted ablation goes on
where it stopped.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from _bundle_runs import bundle, last_checkpoint, model_rows, trained_iterations, wait


class Variant(NamedTuple):
    change: str  # what differs from "base", for the table
    options: Sequence[str] = ()  # bundle command-line overrides
    overlays: tuple[str, ...] = ()  # config files merged after train.yaml and gpu.yaml


# "base" is configs/train.yaml as committed
VARIANTS: dict[str, Variant] = {
    "base": Variant("train.yaml: U-Net 32-256, 3 levels, 64 px crops, L1 + 0.001 adv, lr 1e-3 cosine"),
    "wide": Variant("channels 48-384", ["--network_def#channels", "[48, 96, 192, 384]"]),
    "deep": Variant(
        "4 levels, channels 32-512",
        ["--network_def#channels", "[32, 64, 128, 256, 512]", "--network_def#strides", "[2, 2, 2, 2]"],
    ),  # fmt: skip
    "residual": Variant("residual output (noise predicted)", ["--network_def#residual", "True"]),
    "crop96": Variant("96 px crops", ["--patch_size", "[96, 96]"]),
    "l1_ssim": Variant("L1 + 0.2 (1 - SSIM)", ["--ssim_weight", "0.2"]),
    "no_adv": Variant("L1 only (adv_weight 0)", ["--adv_weight", "0"]),
    "adv_1e-2": Variant("adv_weight 0.01", ["--adv_weight", "0.01"]),
    "lr_3e-4": Variant("lr 3e-4 cosine", ["--g_learning_rate", "0.0003"]),
    "noise_map": Variant(
        "noise-level map input (true sigma in training, estimated at inference)",
        overlays=("configs/noise_level_map.yaml",),
    ),
}


def config_files(variant: Variant, *extra: str) -> str:
    """The ``--config_file`` value of a variant's run: train.yaml, gpu.yaml, its overlays, then ``extra``."""
    files = ["configs/train.yaml", "configs/gpu.yaml", *variant.overlays, *extra]
    return "[" + ",".join(f"'{f}'" for f in files) + "]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="output folder (one run folder per variant)")
    parser.add_argument("--minutes", type=float, default=20.0, help="training wall-clock budget per variant")
    parser.add_argument("--datalist", type=Path, required=True, help="datalist with training and validation splits")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    if not args.datalist.is_file():
        parser.error(f"{args.datalist}: no such datalist")
    work, datalist = args.work.resolve(), str(args.datalist.resolve())
    threads = os.cpu_count() or 1
    common = ["--datalist_file", datalist, "--seed", str(args.seed)]
    results = {}
    for name in names:
        variant = VARIANTS[name]
        run, out = work / name, work / name / "eval_validation"
        if not (out / "summary.csv").is_file():
            train = ["training", "--config_file", config_files(variant), "--time_budget_minutes", str(args.minutes)]
            print(f"{name}: training {args.minutes:g} min ...", flush=True)
            wait([bundle(*train, *common, "--output_dir", str(run), "--overwrite_run", "True", *variant.options,
                         threads=threads)])  # fmt: skip
            evaluate = ["evaluating", "--config_file", config_files(variant, "configs/evaluate.yaml")]
            wait([bundle(*evaluate, *common, "--output_dir", str(run), "--checkpoint", str(last_checkpoint(run)),
                         "--eval_split", "validation", "--self_ensemble", "False", "--eval_dir", str(out),
                         *variant.options, threads=threads)])  # fmt: skip
        results[name] = model_rows(out / "summary.csv")
        print(f"{name}: {results[name]}", flush=True)
    sigmas = sorted(next(iter(results.values())))
    lines = [
        f"| variant | change | iterations | {' | '.join(f'PSNR / SSIM at sigma {s:g}' for s in sigmas)} |",
        "|---|---|---:|" + "---|" * len(sigmas),
    ]
    best = {s: max(r[s][0] for r in results.values()) for s in sigmas}
    for name, rows in results.items():
        cells = [f"{'**' if rows[s][0] == best[s] else ''}{rows[s][0]:.2f}{'**' if rows[s][0] == best[s] else ''}"
                 f" / {rows[s][1]:.4f}" for s in sigmas]  # fmt: skip
        iterations = trained_iterations(work / name)
        lines.append(f"| {name} | {VARIANTS[name].change} | {iterations:,} | {' | '.join(cells)} |")
    table = "\n".join(lines)
    (work / "ablation.md").write_text(f"{args.minutes:g} min per variant, validation split, single pass\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()

"""What the adversarial term does to PSNR/SSIM in the README's main job: the same run with and without it.

Trains the default recipe (configs/train.yaml on the embedded default images, seed 0) twice, as the main command
does, once as is and once with ``--adv_weight 0`` (a plain L1 denoiser with the same schedule, data and noise), and
scores each run's LAST generator (the best-validation ``model.pt`` could predate the adversarial phase) on the
embedded test split and, with ``--isic_dir``, on the lesion-grouped test split of an ISIC folder (never trained on:
the main job trains on the embedded images). Every method sees the same seeded noise. Prints a markdown table.

    python benchmarks/adversarial_effect.py --work /tmp/adv --isic_dir ../shared/data/isic_dev

The two trainings run side by side, one thread each (``--threads``); each is the main command's training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _bundle_runs import bundle, last_checkpoint, model_rows, wait

VARIANTS = {"GAN (adv_weight 0.001, default)": [], "L1 only (adv_weight 0)": ["--adv_weight", "0"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="output folder (runs, evaluations)")
    parser.add_argument("--isic_dir", type=Path, help="an ISIC folder whose test split is scored as well")
    parser.add_argument("--threads", type=int, default=1, help="threads per training (two run side by side)")
    args = parser.parse_args()
    work = args.work.resolve()
    runs = {name: work / f"run{i}" for i, name in enumerate(VARIANTS)}
    train = ["training", "--config_file", "configs/train.yaml", "--seed", "0"]
    wait([bundle(*train, "--output_dir", str(runs[n]), *VARIANTS[n], threads=args.threads) for n in VARIANTS])
    sets = {"embedded test split": []}
    if args.isic_dir:
        sets[f"{args.isic_dir.name} test split"] = ["--dataset_dir", str(args.isic_dir.resolve()),
                                                     "--datalist_path", str(work / "isic_datalist.json")]  # fmt: skip
    evaluate = ["evaluating", "--config_file", "['configs/train.yaml','configs/evaluate.yaml']"]
    results = {}
    for name, run in runs.items():
        last = last_checkpoint(run)
        for k, (label, extra) in enumerate(sets.items()):
            out = run / f"eval{k}"
            wait([bundle(*evaluate, "--output_dir", str(run), "--checkpoint", str(last), "--eval_dir", str(out),
                         *extra, threads=2)])  # fmt: skip
            results[name, label] = model_rows(out / "summary.csv")
    sigmas = sorted(next(iter(results.values())))
    print("| test set | run | " + " | ".join(f"PSNR / SSIM at sigma {s:g}" for s in sigmas) + " |")
    print("|---|---|" + "---|" * len(sigmas))
    for (name, label), rows in results.items():
        cells = " | ".join(f"{rows[s][0]:.2f} / {rows[s][1]:.4f}" for s in sigmas)
        print(f"| {label} | {name} | {cells} |")


if __name__ == "__main__":
    main()

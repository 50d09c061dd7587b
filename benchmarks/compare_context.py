"""2D against 2.5D for the clinical generator: PSNR on held-out test patients at one noise level per modality.

Each checkpoint is loaded into ``clinical_network_def`` with its ``context_slices``; every sampled slice of every test
series gets the same seeded noise (CT: Gaussian in HU, MR: Rician as a fraction of the robust range) on itself and its
neighbours (interior slices, so every neighbour is a real one), and the centre slice is scored in the network range (PSNR, data range 1).

    python benchmarks/compare_context.py --datalist docs/clinical_datalist.json \
        --run 0=bundles/gan_denoise/runs/cmp_ctx0/checkpoints/model.pt \
        --run 1=bundles/gan_denoise/runs/cmp_ctx1/checkpoints/model.pt --slices 10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser

from medical_denoise.data import ClinicalSlabd, LoadClinicald, datalist_root
from medical_denoise.networks.generator import load_generator
from medical_denoise.noise import AddClinicalNoised

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "gan_denoise"


def generator(context: int, checkpoint: str) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.yaml"))
    parser.update({"bundle_root": str(BUNDLE), "context_slices": context})
    return load_generator(parser.get_parsed_content("clinical_network_def"), checkpoint).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datalist", required=True)
    ap.add_argument("--run", action="append", required=True, help="CONTEXT=CHECKPOINT, e.g. 1=runs/x/model.pt")
    ap.add_argument("--slices", type=int, default=10, help="evenly spaced slices per test series")
    ap.add_argument("--ct_sigma_hu", type=float, default=25.0)
    ap.add_argument("--mr_sigma", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    runs = {int(c): generator(int(c), p) for c, p in (r.split("=", 1) for r in args.run)}
    root = datalist_root(args.datalist)
    items = json.loads(Path(args.datalist).read_text())["test"]
    load = LoadClinicald("image", clip=False)
    noise = AddClinicalNoised(
        "image", clean_prob=0.0, ct_sigma_hu=args.ct_sigma_hu, lowdose_prob=0.0, mr_sigma=args.mr_sigma,
        seed=args.seed, seed_key="id",
    )  # fmt: skip
    scores: dict[str, dict[int, list[float]]] = {}
    for item in items:
        d = load({**item, "image": str(Path(root) / item["image"])})
        depth = d["image"].shape[-1]
        for z in np.linspace(2, depth - 3, args.slices).round().astype(int):  # interior: every neighbour exists
            window = {**d, "image": d["image"][..., z - 2 : z + 3]}
            # one noisy 5-slice slab per slice: each model sees the same noisy slices (its centre and neighbours)
            noisy = noise({**ClinicalSlabd("image", context=2, random=False)(window), "id": f"{item['id']}/{z}"})
            centre = noisy["image"][2:3]
            noisy_mse = float(((centre - noisy["label"]) ** 2).mean())
            scores.setdefault(item["id"], {}).setdefault(-1, []).append(10 * np.log10(1.0 / noisy_mse))
            for context, net in runs.items():
                with torch.no_grad():
                    out = net(noisy["image"][None, 2 - context : 3 + context].float())[0]
                mse = float(((out - noisy["label"]) ** 2).mean())
                scores.setdefault(item["id"], {}).setdefault(context, []).append(10 * np.log10(1.0 / mse))
    print("| series | noisy | " + " | ".join(f"context {c} ({2 * c + 1} slices)" for c in runs) + " |")
    print("|---|---:|" + "---:|" * len(runs))
    for series, by_context in scores.items():
        print(f"| {series} | " + " | ".join(f"{np.mean(by_context[c]):.2f}" for c in [-1, *runs]) + " |")


if __name__ == "__main__":
    main()

"""Write docs/isic_datalist.json: the dermoscopy split over ../shared/data's isic_dev and isic_train, by lesion.

* ``test``: isic_dev's lesion-grouped test split exactly as ``prepare_datalist`` makes it (seed 0, 10 % validation,
  20 % test: the 7 lesions every earlier dermoscopy table used), so new numbers stay comparable;
* ``test_isic_train``: a fixed, class-stratified 60 of isic_train's 282 lesions (largest-remainder allocation over
  the ``dx`` classes, shuffled with the seed within each class), the second, larger test set;
* ``validation``: isic_dev's validation split; ``training``: isic_dev's training split + the other 222 of isic_train.

No lesion is in two splits (checked). Paths are relative to ``dataset_dir``, stored relative to the JSON's folder.

    python benchmarks/isic_datalist.py --data ../shared/data --out docs/isic_datalist.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from medical_denoise.data import find_images, prepare_datalist
from medical_denoise.data.splits import write_json_atomic


def stratified(records: list, n: int, seed: int) -> set[str]:
    """Ids of ``n`` records (one per lesion) allocated over ``dx`` by largest remainder, random within each class."""
    by_dx: dict[str, list] = defaultdict(list)
    for r in sorted(records, key=lambda r: r.id):
        by_dx[r.dx].append(r)
    exact = {dx: n * len(v) / len(records) for dx, v in by_dx.items()}
    take = {dx: int(q) for dx, q in exact.items()}
    for dx in sorted(exact, key=lambda d: (take[d] - exact[d], d))[: n - sum(take.values())]:
        take[dx] += 1
    rng = np.random.default_rng(seed)
    chosen = set()
    for dx in sorted(by_dx):
        order = rng.permutation(len(by_dx[dx]))
        chosen |= {by_dx[dx][i].id for i in order[: take[dx]]}
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the folder holding isic_dev/ and isic_train/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--holdout", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = args.data.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        dev = json.loads(Path(prepare_datalist(data / "isic_dev", Path(tmp) / "dev.json", 0.1, 0.2, 0)).read_text())
    _, records = find_images(data / "isic_train")
    if len({r.group for r in records}) != len(records):
        raise SystemExit("isic_train holds several images of one lesion; the allocation assumes one per lesion")
    held = stratified(records, args.holdout, args.seed)

    def entry(folder: str, item: dict) -> dict:
        return {**item, "image": f"{folder}/{item['image']}"}

    split = {
        "training": [entry("isic_dev", e) for e in dev["training"]]
        + [entry("isic_train", r.to_dict()) for r in records if r.id not in held],
        "validation": [entry("isic_dev", e) for e in dev["validation"]],
        "test": [entry("isic_dev", e) for e in dev["test"]],
        "test_isic_train": [entry("isic_train", r.to_dict()) for r in records if r.id in held],
    }
    lesions = {k: {e["group"] for e in v} for k, v in split.items()}
    names = list(lesions)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if lesions[a] & lesions[b]:
                raise SystemExit(f"lesions in both {a} and {b}: {sorted(lesions[a] & lesions[b])[:5]}")
    out = args.out.resolve()
    counts = {k: len(v) for k, v in split.items()}
    doc = (
        f"Lesion-level dermoscopy split written by benchmarks/isic_datalist.py (seed {args.seed}): {counts}. test = "
        "isic_dev's test split (comparable with earlier tables); test_isic_train = a class-stratified "
        f"{args.holdout} of isic_train. Never train on either."
    )
    write_json_atomic({"description": doc, "dataset_dir": os.path.relpath(data, out.parent), **split}, out)
    print(doc)


if __name__ == "__main__":
    main()

"""The README's main command trains a GAN: the adversarial term is on for most of the default schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.bundle import ConfigParser

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "gan_denoise"


@pytest.mark.parametrize("overlays", [[], ["clinical.yaml"]], ids=["default", "clinical"])
def test_adversarial_term_is_on_for_most_of_the_schedule(overlays, tmp_path):
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / f) for f in ["train.yaml", *overlays]])
    parser.update({"bundle_root": str(BUNDLE), "output_dir": str(tmp_path)})
    num_epochs = parser.get_parsed_content("num_epochs")
    # the schedule arithmetic only: iterations per epoch of the default data, without building the cache
    per_epoch = (
        parser.get_parsed_content("draws_per_epoch") // parser.get_parsed_content("images_per_batch")
        if overlays
        else None
    )
    if per_epoch is None:
        datalist = parser.get_parsed_content("datalist")  # embedded default images, split into tmp_path
        from monai.data import load_decathlon_datalist

        n_train = len(load_decathlon_datalist(datalist, False, "training", parser.get_parsed_content("data_root")))
        per_epoch = -(-n_train // parser.get_parsed_content("images_per_batch"))
    parser.update({"train#dataloader": {"_target_": "monai.data.DataLoader", "dataset": list(range(per_epoch))}})
    total = num_epochs * per_epoch
    start = parser.get_parsed_content("adv_start_iteration")
    assert parser.get_parsed_content("adv_weight") > 0
    assert 0 < start <= 0.2 * total  # adversarial for at least 80% of the iterations

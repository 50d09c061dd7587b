from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from monai.utils import OptionalImportError
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage import data, img_as_float
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medical_denoise.atomic import atomic_write
from medical_denoise.evaluation import (
    BM3DDenoiser,
    NLMeansDenoiser,
    SeededNoise,
    TVDenoiser,
    WaveletDenoiser,
    accepts_sigma,
    available_baselines,
    bm3d_available,
    format_markdown,
    mean_ci,
    ms_ssim,
    run_comparison,
)
from medical_denoise.evaluation.metrics import ms_ssim_min_size

ROOT = Path(__file__).resolve().parents[1]


def astronaut_crop(size: int = 48, top: int = 80, left: int = 180) -> np.ndarray:
    rgb = img_as_float(data.astronaut()).astype(np.float32)
    return np.ascontiguousarray(rgb[top : top + size, left : left + size].transpose(2, 0, 1))


def camera_crop(size: int = 48, top: int = 100, left: int = 200) -> np.ndarray:
    gray = img_as_float(data.camera()).astype(np.float32)
    return np.ascontiguousarray(gray[None, top : top + size, left : left + size])


def blur(noisy: np.ndarray) -> np.ndarray:
    return gaussian_filter(noisy, sigma=(0, 1, 1)).astype(np.float32)


class Recorder:
    """Fake denoiser that records exactly what it was given."""

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []

    def __call__(self, noisy: np.ndarray) -> np.ndarray:
        self.inputs.append(noisy.copy())
        return noisy


class SigmaRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.sigmas: list[float | None] = []

    def __call__(self, noisy: np.ndarray, sigma: float | None = None) -> np.ndarray:
        self.sigmas.append(sigma)
        return super().__call__(noisy)


def in_place_vandal(noisy: np.ndarray) -> np.ndarray:
    noisy += 0.5  # a badly behaved method must not change what later methods see
    return noisy


def load_cli():
    spec = importlib.util.spec_from_file_location("compare_denoisers", ROOT / "benchmarks" / "compare_denoisers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- metrics


def test_mean_ci_matches_hand_computed_t_interval():
    values = [1.0, 2.0, 3.0, 4.0, 6.0]
    # mean 3.2, sample sd sqrt(14.8 / 4), t_{0.975, df=4} = 2.7764451051977987
    half = 2.7764451051977987 * math.sqrt(14.8 / 4) / math.sqrt(5)
    mean, low, high = mean_ci(values)
    assert mean == pytest.approx(3.2)
    assert low == pytest.approx(3.2 - half, rel=1e-9)
    assert high == pytest.approx(3.2 + half, rel=1e-9)
    # NaN (e.g. MS-SSIM n/a) is dropped, one value has no interval, none gives NaN
    assert mean_ci([*values, float("nan")]) == pytest.approx((mean, low, high))
    m1, l1, h1 = mean_ci([2.5])
    assert m1 == 2.5 and math.isnan(l1) and math.isnan(h1)
    assert all(math.isnan(v) for v in mean_ci([float("nan")]))
    with pytest.raises(ValueError):
        mean_ci(values, confidence=1.5)


def test_ms_ssim_only_when_large_enough_for_five_scales():
    assert ms_ssim_min_size() == 176  # MONAI: side // 16 > kernel_size - 1
    rng = np.random.default_rng(0)
    big = rng.random((1, 176, 176)).astype(np.float32)
    noisy = np.clip(big + rng.normal(0, 0.1, big.shape), 0, 1).astype(np.float32)
    value = ms_ssim(big, noisy)
    assert 0.0 < value < 1.0
    assert ms_ssim(big, big) == pytest.approx(1.0, abs=1e-5)
    assert math.isnan(ms_ssim(big[:, :175, :175], noisy[:, :175, :175]))


# ---------------------------------------------------------------- noise


def test_seeded_noise_is_reproducible_unclipped_and_keyed():
    clean = astronaut_crop(32)
    noise = SeededNoise(seed=3)
    a = noise(clean, 25, "img")
    assert a.dtype == np.float32 and a.shape == clean.shape
    np.testing.assert_array_equal(a, SeededNoise(seed=3)(clean, 25.0, "img"))
    assert not np.array_equal(a, noise(clean, 25, "other"))
    assert not np.array_equal(a, SeededNoise(seed=4)(clean, 25, "img"))
    assert a.min() < 0.0 or a.max() > 1.0  # not clipped
    assert float(np.std(a - clean)) == pytest.approx(25 / 255, rel=0.1)
    with pytest.raises(ValueError, match="'bad'"):
        noise(np.full((1, 8, 8), np.nan, np.float32), 25, "bad")


# ---------------------------------------------------------------- report


def test_report_numbers_equal_direct_computation():
    images = [("rgb", astronaut_crop(48)), ("gray", camera_crop(40))]
    noise = SeededNoise(seed=1)
    result = run_comparison(images, [25], {"blur": blur}, add_noise=noise, progress=False)
    rows = {(r.image_id, r.method): r for r in result.rows}
    for image_id, clean in images:
        noisy = noise(clean, 25, image_id)
        for method, output in (("noisy", noisy), ("blur", blur(noisy))):
            shown = np.clip(output, 0, 1).astype(np.float64)
            row = rows[(image_id, method)]
            assert row.psnr == pytest.approx(peak_signal_noise_ratio(clean.astype(np.float64), shown, data_range=1.0))
            expected_ssim = structural_similarity(
                np.moveaxis(clean, 0, -1).astype(np.float64), np.moveaxis(shown, 0, -1), data_range=1.0, channel_axis=-1
            )
            assert row.ssim == pytest.approx(expected_ssim)
            assert math.isnan(row.ms_ssim)
            assert row.megapixels == pytest.approx(clean.shape[1] * clean.shape[2] / 1e6)
    assert rows[("rgb", "noisy")].seconds == 0.0
    blur_psnr = [rows[(i, "blur")].psnr for i, _ in images]
    summary = {(s.sigma, s.method): s for s in result.summary}
    assert summary[(25.0, "blur")].psnr_mean == pytest.approx(np.mean(blur_psnr))
    assert summary[(25.0, "blur")].n == 2
    assert result.focus_method == "blur"


def test_every_method_sees_the_same_noisy_array():
    images = [("a", astronaut_crop(32)), ("b", camera_crop(32))]
    sigmas = [15, 50]
    first, second, with_sigma = Recorder(), Recorder(), SigmaRecorder()
    methods = {"first": first, "vandal": in_place_vandal, "second": second, "with_sigma": with_sigma}
    noise = SeededNoise(seed=7)
    run_comparison(images, sigmas, methods, add_noise=noise, progress=False)
    expected = [noise(clean, s, image_id) for image_id, clean in images for s in sigmas]
    for recorder in (first, second, with_sigma):
        assert len(recorder.inputs) == len(expected)
        for got, want in zip(recorder.inputs, expected):
            np.testing.assert_array_equal(got, want)
    assert with_sigma.sigmas == [15.0, 50.0, 15.0, 50.0]
    assert accepts_sigma(with_sigma) and not accepts_sigma(first)


def test_files_written_and_row_count(tmp_path):
    images = [("a", astronaut_crop(40)), ("b", astronaut_crop(40, top=200)), ("c", camera_crop(40))]
    sigmas = [15, 25]
    methods = {"blur": blur, "tv": TVDenoiser()}
    out = tmp_path / "report"
    result = run_comparison(images, sigmas, methods, out_dir=out, progress=False)
    with open(out / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(images) * len(sigmas) * (len(methods) + 1)
    assert {r["method"] for r in rows} == {"noisy", "blur", "tv"}
    with open(out / "summary.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(sigmas) * (len(methods) + 1)
    md = (out / "summary.md").read_text()
    assert "| sigma | method | PSNR dB (95% CI)" in md
    assert md.count("**") >= 2 * 2 * len(sigmas)  # best PSNR and SSIM bold per sigma
    assert "n/a" in md  # 40 px images are too small for MS-SSIM
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "psnr_vs_sigma.png" in pngs
    assert sum(p.startswith("triplet_sigma15_") for p in pngs) == 2  # best and worst
    assert sum(p.startswith("triplet_sigma25_") for p in pngs) == 2
    for png in out.glob("*.png"):
        with Image.open(png) as img:
            assert img.format == "PNG" and img.width > 0
    assert not list(out.glob(".*.tmp"))
    assert set(result.files) == {p.name for p in out.iterdir()}


def test_format_markdown_bolds_best_per_sigma():
    images = [("a", camera_crop(32)), ("b", camera_crop(32, top=300))]
    result = run_comparison(images, [25, 50], {"blur": blur}, progress=False)
    md = format_markdown(result.summary)
    lines = [line for line in md.splitlines() if line.startswith(("| 25 ", "| 50 "))]
    assert len(lines) == 4
    for line in lines:
        is_blur = "| blur |" in line
        # blurring beats the raw noise at these levels, so only blur rows carry bold
        assert ("**" in line) == is_blur


def test_bad_inputs_raise_clear_errors():
    clean = camera_crop(32)
    bad = clean.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="'broken'"):
        run_comparison([("broken", bad)], [25], {}, progress=False)
    with pytest.raises(ValueError, match="reserved"):
        run_comparison([("x", clean)], [25], {"noisy": blur}, progress=False)
    with pytest.raises(ValueError, match="'crop'.*'x'"):
        run_comparison([("x", clean)], [25], {"crop": lambda n: n[:, :-1]}, progress=False)
    with pytest.raises(RuntimeError, match="'boom'.*'x'"):
        run_comparison([("x", clean)], [25], {"boom": lambda n: 1 / 0}, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        run_comparison([("x", clean * 2)], [25], {}, progress=False)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def fail(f):
        f.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


# ---------------------------------------------------------------- baselines


@pytest.mark.parametrize("make_clean", [astronaut_crop, camera_crop], ids=["rgb", "gray"])
def test_baselines_improve_psnr_at_sigma_25(make_clean):
    clean = make_clean(64)
    result = run_comparison([("img", clean)], [25], available_baselines(), progress=False)
    psnr = {r.method: r.psnr for r in result.rows}
    for name in ("nlm", "tv", "wavelet", *(["bm3d"] if bm3d_available() else [])):
        assert psnr[name] > psnr["noisy"] + 3.0, (name, psnr)
    for denoiser in (NLMeansDenoiser(), TVDenoiser(), WaveletDenoiser()):
        output = denoiser(SeededNoise()(clean, 25, "img"))
        assert output.shape == clean.shape and output.dtype == np.float32


def test_bm3d_skipped_cleanly_when_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # makes `import bm3d` fail
    assert not bm3d_available()
    assert set(available_baselines()) == {"nlm", "tv", "wavelet"}
    with pytest.raises(OptionalImportError, match="non-commercial"):
        BM3DDenoiser()


@pytest.mark.skipif(not bm3d_available(), reason="optional bm3d package not installed")
def test_bm3d_listed_and_given_true_sigma():
    methods = available_baselines()
    assert "bm3d" in methods and accepts_sigma(methods["bm3d"])


# ---------------------------------------------------------------- CLI


def test_cli_with_factory_hook_and_record(tmp_path, monkeypatch):
    cli = load_cli()
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, crop in enumerate((astronaut_crop(40), astronaut_crop(40, top=250))):
        Image.fromarray((np.moveaxis(crop, 0, -1) * 255).round().astype(np.uint8)).save(folder / f"im{i}.png")
    (folder / "notes.csv").write_text("not an image")
    (tmp_path / "fake_gan.py").write_text(
        "from scipy.ndimage import gaussian_filter\n"
        "def make(width=1.0):\n"
        "    return lambda noisy: gaussian_filter(noisy, sigma=(0, width, width))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    record = tmp_path / "docs" / "benchmarks.md"
    argv = [
        "--dataset_dir", str(folder), "--sigmas", "25", "--methods", "noisy", "wavelet", "--max_images", "2",
        "--out_dir", str(tmp_path / "out"), "--record", str(record), "--gan_module", "fake_gan:make",
        "--gan_kwargs", '{"width": 1.0}', "--no_progress",
    ]  # fmt: skip
    result = cli.main(argv)
    assert {r.method for r in result.rows} == {"noisy", "gan", "wavelet"}
    assert result.focus_method == "gan"
    assert len(result.rows) == 2 * 1 * 3
    text = record.read_text()
    assert text.startswith("# Benchmarks") and "--gan_module fake_gan:make" in text
    assert "| 25 | gan |" in text and "CPUs, torch" in text
    cli.main(argv)  # a second run appends, keeping the first
    assert record.read_text().count("## Denoiser comparison") == 2


def test_cli_reports_unreadable_image(tmp_path):
    cli = load_cli()
    broken = tmp_path / "broken.jpg"
    good = tmp_path / "good.jpg"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(good)
    broken.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ValueError, match="broken.jpg"):
        cli.read_rgb(broken)
    with pytest.raises(FileNotFoundError, match="missing"):
        cli.list_images(tmp_path / "missing", [], None)
    with pytest.raises(ValueError, match="module:factory"):
        cli.load_factory_method("no_colon", {})


@pytest.mark.parametrize("channels", [1, 3])
def test_validation_ssim_is_the_evaluation_ssim(channels):
    """train.yaml's val_ssim (MONAI, ssim_metric) and the reports' SSIM (skimage) are one definition."""
    import torch
    from monai.bundle import ConfigParser

    from medical_denoise.evaluation.metrics import masked_ssim, ssim, ssim_metric
    from tests.utils import BUNDLE

    rng = np.random.default_rng(0)
    clean = rng.random((channels, 48, 56)).astype(np.float32)
    output = np.clip(clean + rng.normal(0.0, 0.1, clean.shape), 0.0, 1.0).astype(np.float32)
    monai_value = float(ssim_metric()(torch.from_numpy(output)[None], torch.from_numpy(clean)[None]).mean())
    assert monai_value == pytest.approx(ssim(clean, output), abs=1e-4)
    if channels == 1:
        assert monai_value == pytest.approx(masked_ssim(clean[0], output[0]), abs=1e-4)
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.yaml"))
    parser.update({"bundle_root": str(BUNDLE)})
    configured = parser.get_parsed_content("validate#additional_metrics#val_ssim#metric_fn")
    assert configured.kernel_type == "uniform" and tuple(configured.kernel_size) == (7, 7)

"""Score a 2.5D predictor and classical baselines on held-out CT/MR volumes under seeded physical-unit noise.

Per test volume (read by the bundle's :class:`~medical_denoise.data.LoadClinicald`, not clipped): choose the slices
(every slice, or a seeded random sample of ``max_slices``), and for every slice and noise condition of its modality
(see :mod:`.conditions`: CT, Rician for MR, Gaussian for the other grayscale modalities) build the noisy slab of
``2k + 1`` slices once. Every method then gets its own copy of it:

* ``noisy``: the noisy centre slice itself;
* ``model``: the predictor on the slab (2.5D in, centre slice out), blind: it is never told the noise level (a
  noise-level-conditioned network estimates it from the slab);
* ``model_sigma``: the same network told the noise std the baselines get (for networks with a noise-level input);
* baselines (``bm3d``, ``nlm``, ``tv``, ``wavelet``) on the centre slice, given the noise std in network units: the
  true std for Gaussian and Rician noise (Rician: the per-channel std), and for the low-dose simulation the std of
  the simulated noise measured in the body of that slice (low-dose noise is neither white nor stationary, so no
  single sigma is "true").

Scores per slice, in the network range of the volume's mapping (``data_range = 1``, no clipping): PSNR and SSIM
(skimage's 7x7 window) over the scored pixels (CT: the field of view; MR: all), and the RMSE in HU for CT and in % of
the robust range otherwise.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import load_decathlon_datalist
from tqdm.auto import tqdm

from medical_denoise.evaluation.baselines import BM3DDenoiser, NLMeansDenoiser, TVDenoiser, bm3d_available
from medical_denoise.evaluation.clinical.conditions import (
    NoiseCondition,
    NoiseKind,
    NoisyVolume,
    clinical_conditions,
)
from medical_denoise.evaluation.metrics import masked_psnr, masked_ssim
from medical_denoise.noise import ModalityNoise, is_ct, modality_noise, stable_seed

__all__ = [
    "BASELINES",
    "ClinicalVolume",
    "Example",
    "SeriesSampling",
    "SliceMethod",
    "SliceResult",
    "baseline_methods",
    "choose_slices",
    "evaluate_volume",
    "load_volume",
    "model_method",
    "MODEL",
    "MODEL_TOLD",
]

logger = logging.getLogger(__name__)

NOISY = "noisy"
MODEL = "model"
MODEL_TOLD = "model_sigma"
#: ``(slab (2k + 1, H, W), sigma in network units) -> denoised centre slice (H, W)``, all in the network range.
SliceMethod = Callable[[np.ndarray, float], np.ndarray]


@dataclass(frozen=True)
class ClinicalVolume:
    """A test volume in the network range of its intensity mapping.

    Attributes:
        image_id: the datalist id.
        modality: ``"CT"``, ``"MR"``, ...
        clean: ``(H, W, D)`` float32, slices last, not clipped.
        info: the intensity mapping (``low``, ``high``, ``kind``, ``pixel_spacing``) from ``LoadClinicald``.
    """

    image_id: str
    modality: str
    clean: np.ndarray
    info: Mapping[str, Any]

    @property
    def unit(self) -> str:
        """Unit of errors and noise levels in the report: HU for CT, % of the robust range otherwise (MR intensities
        have no physical scale, and a percentage compares series)."""
        return "HU" if is_ct(self.modality) else "% range"

    def to_unit(self, value: float) -> float:
        """A std or error in network units, in :attr:`unit`."""
        span = float(self.info["high"]) - float(self.info["low"])
        return value * span if is_ct(self.modality) else value * 100.0


@dataclass(frozen=True)
class SeriesSampling:
    """Which slices of a series were scored, and why (stated in the report)."""

    image_id: str
    modality: str
    depth: int
    slices: tuple[int, ...]
    seed: int
    mapping: tuple[float, float, str] = (0.0, 1.0, "fixed")  # the intensity map's (low, high, kind)

    def describe(self) -> str:
        if len(self.slices) == self.depth:
            return f"every slice ({self.depth})"
        return f"a random sample of {len(self.slices)} of {self.depth} slices (seed {self.seed}): {list(self.slices)}"


@dataclass(frozen=True)
class SliceResult:
    """One method on one noisy slice (one row of ``per_slice.csv``).

    ``noise_std`` is the measured std of the added noise (CT Gaussian: field of view; low dose: the body; Rician:
    pixels at least 3 sigma above 0) and ``rmse`` the error over the scored pixels, both in ``unit`` (HU for CT, % of
    the robust range otherwise); ``sigma_given`` is the std handed to the method in network units (NaN: blind).
    """

    series: str
    modality: str
    slice: int
    condition: str
    kind: str
    level: float
    noise_std: float
    method: str
    sigma_given: float
    psnr: float
    ssim: float
    rmse: float
    unit: str
    seconds: float


@dataclass
class Example:
    """Arrays of one (series, condition, slice) kept for a picture: clean, noisy and every method's output."""

    series: str
    modality: str
    condition: NoiseCondition
    slice: int
    info: Mapping[str, Any]
    clean: np.ndarray
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    psnr: dict[str, float] = field(default_factory=dict)


def choose_slices(depth: int, max_slices: int | None, seed: int, image_id: str) -> list[int]:
    """Slice indices to score: all when ``max_slices`` is None or not below ``depth``, else a seeded random sample.

    The sample depends only on ``(seed, image_id, depth, max_slices)``, drawn without replacement and sorted.

    Args:
        depth: slices in the series.
        max_slices: sample size per series (None: every slice).
        seed: evaluation seed.
        image_id: the series id.
    """
    if depth < 1:
        raise ValueError(f"{image_id}: no slices.")
    if max_slices is None or max_slices >= depth:
        return list(range(depth))
    if max_slices < 1:
        raise ValueError(f"max_slices must be >= 1 or None, got {max_slices}.")
    rng = np.random.default_rng(stable_seed("clinical_eval_slices", seed, image_id, depth, max_slices))
    return sorted(int(z) for z in rng.choice(depth, size=max_slices, replace=False))


def model_method(predictor: Callable[[np.ndarray], np.ndarray], told_level: bool = False) -> SliceMethod:
    """The 2.5D predictor ``(2k + 1, H, W) -> (1, H, W)`` (e.g. ``GeneratorPredictor.numpy``) as a method.

    Args:
        predictor: the network's numpy predictor.
        told_level: append the noise std as a constant last channel (a network built with
            ``noise_level_input=True`` then removes that much noise); otherwise the method is blind.
    """

    def run(slab: np.ndarray, sigma: float) -> np.ndarray:
        if told_level:
            slab = np.concatenate([slab, np.full_like(slab[:1], sigma)], axis=0)
        out = np.asarray(predictor(slab), dtype=np.float32)
        return out[0] if out.ndim == 3 and out.shape[0] == 1 else out

    run.sigma_aware = told_level  # type: ignore[attr-defined]
    return run


def _on_centre(denoise: Callable[[np.ndarray, float], np.ndarray]) -> SliceMethod:
    def run(slab: np.ndarray, sigma: float) -> np.ndarray:
        centre = slab[slab.shape[0] // 2][None]
        return np.asarray(denoise(centre, sigma), dtype=np.float32)[0]

    run.sigma_aware = True  # type: ignore[attr-defined]
    return run


def _wavelet(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    out = denoise_wavelet(
        noisy[0].astype(np.float64), sigma=sigma, method="BayesShrink", mode="soft", rescale_sigma=True
    )
    return out[None]


def _bm3d() -> Callable[[np.ndarray, float], np.ndarray]:
    bm3d = BM3DDenoiser()
    return lambda noisy, sigma: bm3d(noisy, sigma=sigma * 255.0)  # BM3DDenoiser takes sigma on the 0-255 scale


#: baseline names and what they are, for the report.
BASELINES = {
    "bm3d": "BM3D (bm3d package, profile 'np') on the centre slice",
    "nlm": "non-local means (skimage, fast mode, patch 5, distance 6, h = 0.8 sigma, sigma given)",
    "tv": "total variation (skimage Chambolle, weight = 1.0 sigma, 200 iterations)",
    "wavelet": "wavelet shrinkage (skimage BayesShrink, soft, db1, sigma given)",
}


def baseline_methods(names: Sequence[str]) -> dict[str, SliceMethod]:
    """Sigma-aware baselines on the centre slice, by name (``bm3d``, ``nlm``, ``tv``, ``wavelet``).

    Raises:
        ValueError: an unknown name, or ``bm3d`` without the optional ``bm3d`` package.
    """
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; the clinical evaluation knows {sorted(BASELINES)}.")
    if "bm3d" in names and not bm3d_available():
        raise ValueError("baseline 'bm3d' needs the optional bm3d package (pip install 'medical-denoise[bm3d]').")
    factories: dict[str, Callable[[], Callable[[np.ndarray, float], np.ndarray]]] = {
        "bm3d": _bm3d,
        "nlm": lambda: NLMeansDenoiser().denoise,
        "tv": lambda: TVDenoiser().denoise,
        "wavelet": lambda: _wavelet,
    }
    return {name: _on_centre(factories[name]()) for name in names}


def load_volume(item: Mapping[str, Any], load_transform: Callable) -> ClinicalVolume:
    """Load one datalist entry with the bundle's loading (``LoadClinicald(clip=False)``) as a :class:`ClinicalVolume`.

    Raises:
        ValueError: the loading gave no intensity mapping (not ``LoadClinicald``), or not a grayscale image.
    """
    source = item.get("image")
    d = load_transform(dict(item))
    info = d.get("image_intensity")
    if info is None:
        raise ValueError(
            f"{source}: the clinical evaluation needs images loaded by medical_denoise.data.LoadClinicald "
            "(configs/clinical.yaml's load_transforms); got no 'image_intensity'."
        )
    image = np.asarray(d["image"], dtype=np.float32)
    if image.ndim == 3:
        image = image[..., None]  # a 2D image is a volume of one slice
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"{source}: expected a grayscale (1, H, W[, D]) image, got shape {image.shape}.")
    image_id = str(item.get("id") or source)
    return ClinicalVolume(image_id, str(info["modality"]), np.ascontiguousarray(image[0]), dict(info))


def _sigma_given(condition: NoiseCondition, measured: float, span: float) -> float:
    """Noise std for the sigma-aware methods, network units: the true one, or the measured one for low dose."""
    if condition.kind == NoiseKind.GAUSSIAN_HU:
        return condition.level / span
    if condition.kind == NoiseKind.LOWDOSE:
        return measured
    return condition.level


def _example_keys(conditions: Sequence[NoiseCondition], slices: Sequence[int], depth: int) -> set[tuple[str, int]]:
    """Pictures: the scored slice nearest the middle, at the middle level of each noise model."""
    z = min(slices, key=lambda s: (abs(s - depth // 2), s))
    keys = set()
    for kind in dict.fromkeys(c.kind for c in conditions):
        of_kind = [c for c in conditions if c.kind == kind]
        keys.add((of_kind[len(of_kind) // 2 if kind != NoiseKind.LOWDOSE else 0].name, z))
    return keys


def evaluate_volume(
    volume: ClinicalVolume,
    methods: Mapping[str, SliceMethod],
    conditions: Sequence[NoiseCondition],
    context: int = 1,
    seed: int = 0,
    max_slices: int | None = 20,
    progress: bool = True,
) -> tuple[list[SliceResult], SeriesSampling, list[Example]]:
    """Score every method on every chosen slice of one volume under every condition.

    Args:
        volume: the clean volume.
        methods: ``name -> SliceMethod`` (``"noisy"`` is reserved and always scored first).
        conditions: noise conditions for this volume's modality.
        context: ``k``: the slab holds ``2k + 1`` slices (the model's ``context_slices``).
        seed: evaluation seed (slices, noise).
        max_slices: slices per series (None: every slice).
        progress: show a tqdm bar.

    Returns:
        ``(rows, sampling, examples)``.
    """
    if NOISY in methods:
        raise ValueError(f"method name {NOISY!r} is reserved for the noisy input.")
    if not conditions:
        raise ValueError(f"{volume.image_id}: no noise conditions.")
    depth = volume.clean.shape[-1]
    slices = choose_slices(depth, max_slices, seed, volume.image_id)
    mapping = (float(volume.info["low"]), float(volume.info["high"]), str(volume.info.get("kind", "fixed")))
    sampling = SeriesSampling(volume.image_id, volume.modality, depth, tuple(slices), seed, mapping)
    noisy_volumes = {c.name: NoisyVolume(volume.clean, volume.info, c, seed, volume.image_id) for c in conditions}
    span = float(volume.info["high"]) - float(volume.info["low"])
    wanted = _example_keys(conditions, slices, depth)
    rows: list[SliceResult] = []
    examples: list[Example] = []
    bar = tqdm(total=len(slices) * len(conditions), disable=not progress, desc=volume.image_id, unit="slice")
    with bar:
        for z in slices:
            clean = volume.clean[..., z]
            for condition in conditions:
                noisy = noisy_volumes[condition.name]
                slab = noisy.slab(z, context)
                mask = condition.score_mask(clean, volume.info)
                measured = noisy.noise_std(z)
                sigma = _sigma_given(condition, measured, span)
                example = None
                if (condition.name, z) in wanted:
                    example = Example(volume.image_id, volume.modality, condition, z, volume.info, clean.copy())
                    examples.append(example)
                for name, method in {NOISY: None, **methods}.items():
                    start = time.perf_counter()
                    if method is None:
                        output = slab[context]
                    else:
                        try:
                            output = np.asarray(method(slab.copy(), sigma), dtype=np.float32)
                        except Exception as err:
                            raise RuntimeError(
                                f"{volume.image_id}: method {name!r} failed on slice {z} ({condition.name})."
                            ) from err
                    seconds = time.perf_counter() - start if method is not None else 0.0
                    if output.shape != clean.shape or not np.all(np.isfinite(output)):
                        raise ValueError(
                            f"{volume.image_id}: method {name!r} on slice {z} ({condition.name}) returned shape "
                            f"{output.shape} (expected {clean.shape}) or non-finite values."
                        )
                    psnr = masked_psnr(clean, output, 1.0, mask)
                    rmse = float(np.sqrt(np.mean((output[mask] - clean[mask]).astype(np.float64) ** 2)))
                    aware = method is not None and getattr(method, "sigma_aware", False)
                    rows.append(SliceResult(
                        volume.image_id, volume.modality, z, condition.name, str(condition.kind), condition.level,
                        volume.to_unit(measured), name, sigma if aware else math.nan, psnr,
                        masked_ssim(clean, output, 1.0, mask), volume.to_unit(rmse), volume.unit, seconds,
                    ))  # fmt: skip
                    if example is not None:
                        example.outputs[name] = output
                        example.psnr[name] = psnr
                bar.update(1)
    return rows, sampling, examples


def evaluate_items(
    items: Sequence[Mapping[str, Any]],
    load_transform: Callable,
    methods: Mapping[str, SliceMethod],
    context: int = 1,
    ct_sigma_hu: Sequence[float] = (10.0, 25.0, 50.0),
    ct_lowdose_i0: Sequence[float] = (1e6, 3e5),
    mr_sigma: Sequence[float] = (0.02, 0.05, 0.10),
    seed: int = 0,
    max_slices: int | None = 20,
    progress: bool = True,
    ct_methods: Mapping[str, SliceMethod] | None = None,
    gaussian_sigma: Sequence[float] = (0.02, 0.05, 0.10),
) -> tuple[list[SliceResult], list[SeriesSampling], list[Example]]:
    """Load and score each datalist entry in turn (one volume in memory at a time); see :func:`evaluate_volume`.

    Volumes without a Rician floor (CT and every non-MR grayscale modality) are scored with ``ct_methods`` when given
    (the same names, the CT model in place of the shared one): the model inference routes them to.
    """
    rows: list[SliceResult] = []
    samplings: list[SeriesSampling] = []
    examples: list[Example] = []
    for i, item in enumerate(items):
        start = time.perf_counter()
        volume = load_volume(item, load_transform)
        conditions = clinical_conditions(volume.modality, ct_sigma_hu, ct_lowdose_i0, mr_sigma, gaussian_sigma)
        logger.info(
            "[%d/%d] %s: %s %s, %s; conditions %s", i + 1, len(items), volume.image_id, volume.modality,
            "x".join(map(str, volume.clean.shape)), volume.info.get("kind"), [c.name for c in conditions],
        )  # fmt: skip
        rician = modality_noise(volume.modality) is ModalityNoise.RICIAN
        chosen = ct_methods if ct_methods is not None and not rician else methods
        r, s, e = evaluate_volume(volume, chosen, conditions, context, seed, max_slices, progress)
        rows += r
        samplings.append(s)
        examples += e
        logger.info("[%d/%d] %s: %s scored in %.0f s", i + 1, len(items), volume.image_id, s.describe(),
                    time.perf_counter() - start)  # fmt: skip
    return rows, samplings, examples


def split_items(
    datalist: str | Path, split: str, data_root: str | Path, max_images: int | None = None
) -> list[dict[str, Any]]:
    """Entries of one split of a datalist, paths made absolute (the first ``max_images`` when given)."""
    items = load_decathlon_datalist(str(datalist), False, split, str(data_root))
    if not items:
        raise ValueError(f"{datalist}: the '{split}' split is empty.")
    return list(items[:max_images] if max_images else items)

"""Training and evaluation on clinical files: list DICOM/NIfTI datasets, load them in the network range, slice volumes.

* :func:`find_clinical_images` lists a plain folder's NIfTI files, DICOM files and DICOM series folders as
  :class:`~medical_denoise.data.records.ImageRecord` s (used by the ``folder`` layout of ``find_images``).
* :class:`LoadClinicald` reads them with :func:`medical_denoise.io.read_image` and maps them to [0, 1] with the
  image's invertible intensity mapping, the same one :func:`medical_denoise.io.denoise_path` uses at inference.
* :class:`RandSliced` / :class:`CenterSliced` cut one slice out of a volume for a 2D network.

See ``docs/clinical_formats.md`` ("Training and evaluating on DICOM / NIfTI").
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from medical_denoise.data.records import ImageRecord
from medical_denoise.data.transforms import EnsureChannelsd
from medical_denoise.io import read_image
from medical_denoise.io.formats import FORMATS, ImageFormat, file_suffix, format_of_suffix
from medical_denoise.io.readers import (
    DICOM_NAMED_SUFFIXES,
    is_dicom_file,
    is_ignored_name,
    read_dicom_header,
)

__all__ = [
    "CenterSliced",
    "ClinicalSlabd",
    "LoadClinicald",
    "RandSliced",
    "clinical_format",
    "check_clinical_overlay",
    "find_clinical_images",
]

# suffixes that are certainly not DICOM: skip the magic-number check for them
_NOT_DICOM = (
    *(suffix for fmt, spec in FORMATS.items() if fmt != ImageFormat.DICOM for suffix in spec.suffixes),
    *(".bmp", ".gif", ".csv", ".txt", ".md", ".json", ".gz"),
)


def _nifti_suffix(name: str) -> str | None:
    return file_suffix(name) if format_of_suffix(name) == ImageFormat.NIFTI else None


def _is_dicom_candidate(path: Path) -> bool:
    if is_ignored_name(path):
        return False
    suffix = path.suffix.lower()
    if suffix in DICOM_NAMED_SUFFIXES:
        return True
    return suffix not in _NOT_DICOM and is_dicom_file(path)


def clinical_format(path: str | Path) -> str | None:
    """``"nifti"`` or ``"dicom"`` when ``path`` is a NIfTI file, a DICOM file or a folder holding DICOM files, else None.

    Args:
        path: a dataset entry.
    """
    path = Path(path)
    if path.is_dir():
        return ImageFormat.DICOM if any(p.is_file() and _is_dicom_candidate(p) for p in path.iterdir()) else None
    if _nifti_suffix(path.name):
        return ImageFormat.NIFTI
    return ImageFormat.DICOM if path.is_file() and _is_dicom_candidate(path) else None


def _dicom_header(path: Path) -> Any | None:
    """The few header tags the listing needs, or None when the header does not parse (check_readable reports it)."""
    try:
        return read_dicom_header(path, specific_tags=["SeriesInstanceUID", "PatientID", "NumberOfFrames"])
    except Exception:  # pydicom raises many types on damaged files
        return None


def _patient(headers: Sequence[Any]) -> str:
    return next((str(h.get("PatientID", "")).strip() for h in headers if str(h.get("PatientID", "")).strip()), "")


def find_clinical_images(root: str | Path) -> list[ImageRecord]:
    """List the NIfTI files, DICOM files and DICOM series folders under ``root`` (recursively, hidden entries skipped).

    Rules: every ``.nii``/``.nii.gz`` is one record. A folder whose DICOM files (by suffix or by the ``DICM`` magic)
    are two or more single-frame files of one ``SeriesInstanceUID`` is one record: a series, read as a volume.
    Otherwise each DICOM file of the folder is its own record (2D images, multi-frame files, or a folder mixing
    series). The group is the DICOM ``PatientID`` when the header has one, so a patient never spans two splits;
    otherwise the record itself. Ids are the path relative to ``root`` without the NIfTI/DICOM suffix.

    Args:
        root: dataset folder.
    """
    root = Path(root)
    records: list[ImageRecord] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        folder_path = Path(folder)
        dicoms: list[Path] = []
        for name in sorted(names):
            path = folder_path / name
            if name.startswith(".") or not path.is_file():
                continue
            if suffix := _nifti_suffix(name):
                rel = path.relative_to(root).as_posix()
                records.append(ImageRecord(rel, rel[: -len(suffix)], rel))
            elif _is_dicom_candidate(path):
                dicoms.append(path)
        if dicoms:
            records.extend(_dicom_records(root, folder_path, dicoms))
    return records


def _dicom_records(root: Path, folder: Path, files: list[Path]) -> list[ImageRecord]:
    headers = {f: _dicom_header(f) for f in files}
    parsed = [h for h in headers.values() if h is not None]
    series = {str(h.get("SeriesInstanceUID", "")) for h in parsed}
    multi_frame = any(int(h.get("NumberOfFrames", 1) or 1) > 1 for h in parsed)
    if len(files) > 1 and len(series) <= 1 and not multi_frame:
        rel = folder.relative_to(root).as_posix()
        image_id = root.resolve().name if rel == "." else rel
        return [ImageRecord(rel, image_id, _patient(parsed) or rel)]
    out = []
    for f in files:
        rel = f.relative_to(root).as_posix()
        suffix = f.suffix if f.suffix.lower() in DICOM_NAMED_SUFFIXES else ""
        header = headers[f]
        out.append(ImageRecord(rel, rel[: len(rel) - len(suffix)], _patient([header] if header else []) or rel))
    return out


class LoadClinicald(MapTransform):
    """Read a clinical file or DICOM series folder into a float32 channel-first tensor in [0, 1].

    The image is read with :func:`medical_denoise.io.read_image` and mapped with its own invertible intensity mapping
    (``image.intensity``: CT HU window, MR/unknown percentiles of the whole volume, or bit depth for photos), the
    mapping :func:`medical_denoise.io.denoise_path` applies at inference. Shapes: ``(C, H, W)`` for 2D images,
    ``(C, H, W, D)`` for volumes (slices last). The mapping is stored in ``d[f"{key}_{intensity_postfix}"]`` as
    ``IntensityMapping.to_dict()`` plus ``data_range`` (``high - low``, in original units: PSNR on [0, 1] equals PSNR
    in original units with this peak, and an error ``e`` on [0, 1] is ``e * data_range`` units), ``modality`` and
    ``outside_fraction`` (share of values the map put outside [0, 1], clipped when ``clip``) and ``pixel_spacing``
    (in-plane pixel size in mm, 1.0 when the file has none; the low-dose CT simulation needs it).

    Args:
        keys: keys holding file or folder paths.
        channels: channels the network takes (1 or 3); RGB is converted to luminance for 1, grey replicated for 3.
        modality: overrides the modality of every image (e.g. ``"CT"`` for NIfTI in HU, which has no modality tag);
            None keeps each file's own (DICOM Modality; NIfTI "unknown" -> percentiles).
        modality_key: a datalist entry key that may name the item's modality (used when ``modality`` is None), so
            a curated datalist can mark a NIfTI as CT.
        clip: clip to [0, 1]; evaluation requires clean images inside [0, 1].
        intensity_postfix: the mapping goes to ``d[f"{key}_{intensity_postfix}"]``.
        allow_missing_keys: don't fail on missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        channels: int = 1,
        modality: str | None = None,
        clip: bool = True,
        intensity_postfix: str = "intensity",
        modality_key: str | None = "modality",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.to_channels = EnsureChannelsd(keys, channels, allow_missing_keys)
        self.modality = modality
        self.modality_key = modality_key
        self.clip = clip
        self.intensity_postfix = intensity_postfix

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            modality = self.modality or (d.get(self.modality_key) if self.modality_key else None) or None
            image = read_image(d[key], modality=modality)
            if image.channels not in (1, 3):
                raise ValueError(f"{image.source}: image has {image.channels} channels; expected 1 or 3.")
            mapping = image.intensity
            mapped = mapping.forward(image.array)
            outside = float(np.mean((mapped < 0.0) | (mapped > 1.0)))
            if self.clip:
                mapped = np.clip(mapped, 0.0, 1.0)
            d[key] = self.to_channels({key: torch.from_numpy(np.ascontiguousarray(mapped))})[key]
            d[f"{key}_{self.intensity_postfix}"] = {
                **mapping.to_dict(),
                "data_range": mapping.high - mapping.low,
                "modality": image.modality,
                "outside_fraction": outside,
                "pixel_spacing": _pixel_spacing(image),
            }
        return d


def _pixel_spacing(image: Any) -> float:
    """Mean in-plane pixel size in mm of a read image (DICOM PixelSpacing, NIfTI zooms), 1.0 when unknown."""
    try:
        if image.datasets and "PixelSpacing" in image.datasets[0]:
            return float(np.mean([float(v) for v in image.datasets[0].PixelSpacing]))
        if image.header is not None:
            return float(np.mean(image.header.get_zooms()[:2]))
    except (TypeError, ValueError, IndexError):
        pass
    return 1.0


def _array_axis(img: Any, axis: int, key: Hashable) -> int | None:
    """Array axis of spatial ``axis`` for a volume ``(C, X, Y, Z)``; None for a 2D image ``(C, H, W)``."""
    if img.ndim == 3:
        return None
    if img.ndim != 4:
        raise ValueError(f"'{key}': expected (C, H, W) or (C, H, W, D), got shape {tuple(img.shape)}.")
    if not -3 <= axis <= 2:
        raise ValueError(f"slice axis must be a spatial axis in [-3, 2], got {axis}.")
    return axis % 3 + 1


class _Sliced(MapTransform):
    """Shared part of the slicing transforms: one index for every key, a copy of that slice."""

    def __init__(
        self,
        keys: KeysCollection,
        axis: int = -1,
        slice_key: str | None = "slice_index",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.axis = axis
        self.slice_key = slice_key

    def _slice_count(self, d: dict) -> int | None:
        sizes = set()
        volumes = 0
        for key in self.key_iterator(d):
            ax = _array_axis(d[key], self.axis, key)
            if ax is not None:
                volumes += 1
                sizes.add(int(d[key].shape[ax]))
        if volumes and (len(sizes) != 1 or volumes != len(list(self.key_iterator(d)))):
            raise ValueError(f"keys {list(self.keys)} need volumes with the same number of slices on axis {self.axis}.")
        return sizes.pop() if sizes else None

    def _take(self, d: dict, index: int | None) -> dict:
        if index is not None:
            for key in self.key_iterator(d):
                img = d[key]
                ax = _array_axis(img, self.axis, key)
                piece = img[(slice(None),) * ax + (index,)]
                # a copy: the volume may be a dataset's cache entry
                d[key] = piece.clone() if isinstance(piece, torch.Tensor) else np.array(piece)
        if self.slice_key is not None:
            d[self.slice_key] = -1 if index is None else int(index)  # -1: 2D image passed through
        return d


class RandSliced(Randomizable, _Sliced):
    """Pick one random slice of a volume ``(C, H, W, D)`` -> ``(C, H, W)``, the same slice for every key.

    Trains a 2D network on volumes: each time a volume is drawn, another slice. 2D images ``(C, H, W)`` pass through.
    The slice index goes to ``d[slice_key]`` (-1 for 2D images). Randomness comes from ``self.R``, so
    ``set_random_state`` / ``monai.utils.set_determinism`` make it reproducible.

    Args:
        keys: keys to slice (volumes with the same number of slices along ``axis``).
        axis: spatial axis to cut across (-1: the last, the slice axis of ``read_image`` volumes).
        slice_key: where to record the index; None records nothing.
        allow_missing_keys: don't fail on missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        axis: int = -1,
        slice_key: str | None = "slice_index",
        allow_missing_keys: bool = False,
    ) -> None:
        _Sliced.__init__(self, keys, axis, slice_key, allow_missing_keys)
        self._index = 0

    def randomize(self, data: int) -> None:
        self._index = int(self.R.randint(data))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        count = self._slice_count(d)
        if count is None:
            return self._take(d, None)
        self.randomize(count)
        return self._take(d, self._index)


class CenterSliced(_Sliced):
    """The middle slice (index ``D // 2``) of a volume ``(C, H, W, D)``; 2D images pass through.

    Deterministic, for validation and evaluation: the image id then fixes the seeded noise of the same pixels in
    every run. The index goes to ``d[slice_key]`` (-1 for 2D images).

    Args:
        keys: keys to slice.
        axis: spatial axis to cut across (-1: the last).
        slice_key: where to record the index; None records nothing.
        allow_missing_keys: don't fail on missing keys.
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        count = self._slice_count(d)
        return self._take(d, None if count is None else count // 2)


class ClinicalSlabd(Randomizable, MapTransform):
    """A 2.5D pair from a volume: the slab of ``2k + 1`` neighbouring slices and a copy of its centre slice.

    The volume ``(1, H, W, D)`` (slices last, as :class:`LoadClinicald` gives them) becomes ``(2k + 1, H, W)``: slices
    ``z - k .. z + k`` clamped to ``[0, D - 1]``, so the first and last slices repeat themselves, as at inference. A 2D
    image ``(1, H, W)`` is every one of its own neighbours. The clean centre slice goes to ``label_key`` (the target)
    and the slice indices to ``index_key`` (a noise bank adds each slice's own noise). Outputs are new tensors: a
    cached volume is never changed.

    Args:
        keys: the volume key (one key).
        context: ``k``, neighbours on each side.
        label_key: where the clean centre slice goes.
        index_key: where the ``2k + 1`` slice indices go.
        random: draw ``z`` uniformly (training); False takes the middle slice ``D // 2`` (validation).
        max_stride: when random, neighbours are ``s`` slices apart with ``s`` drawn from ``1 .. max_stride``, so a
            thin-slice series also teaches thicker spacing (neighbours that differ more).
        flat_prob: when random, the share of samples whose neighbours are all the centre slice: the single 2D image
            of inference (its noise then repeats on every channel, see ``AddClinicalNoised``).
        allow_missing_keys: don't fail on missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        context: int = 1,
        label_key: str = "label",
        index_key: str = "slab_indices",
        random: bool = True,
        max_stride: int = 1,
        flat_prob: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if context < 0:
            raise ValueError(f"context must be >= 0 slices, got {context}.")
        if max_stride < 1:
            raise ValueError(f"max_stride must be >= 1 slice, got {max_stride}.")
        if not 0.0 <= flat_prob <= 1.0:
            raise ValueError(f"flat_prob must be in [0, 1], got {flat_prob}.")
        self.context = context
        self.label_key = label_key
        self.index_key = index_key
        self.random = random
        self.max_stride = max_stride
        self.flat_prob = flat_prob
        self._z, self._stride = 0, 1

    def randomize(self, data: int) -> None:
        self._z = int(self.R.randint(data))
        self._stride = int(self.R.randint(1, self.max_stride + 1))
        if self.R.rand() < self.flat_prob:
            self._stride = 0

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            volume = torch.as_tensor(d[key])
            if volume.ndim == 3:
                volume = volume[..., None]
            if volume.ndim != 4 or volume.shape[0] != 1:
                raise ValueError(
                    f"'{key}': expected a grayscale (1, H, W[, D]) image, got shape {tuple(volume.shape)}."
                )
            depth = int(volume.shape[-1])
            if self.random:
                self.randomize(depth)
            z, stride = (self._z, self._stride) if self.random else (depth // 2, 1)
            indices = [min(max(z + o * stride, 0), depth - 1) for o in range(-self.context, self.context + 1)]
            d[key] = volume[0, ..., indices].permute(2, 0, 1).contiguous()  # advanced indexing copies
            d[self.label_key] = volume[..., z].clone()
            d[self.index_key] = indices
        return d


def check_clinical_overlay(scale: int, degradations: Sequence[Any]) -> None:
    """Refuse configs that merge clinical.yaml with an overlay whose degradations its training chain would ignore.

    clinical.yaml builds its own chain (noise bank, slab, physical-unit noise, level map) and trains a same-size
    2.5D denoiser (with its own level map); sr.yaml, deblur.yaml and noise_level_map.yaml change
    ``train#degradations`` or ``scale``, which that chain never reads.

    Args:
        scale: the merged config's ``scale``.
        degradations: the merged config's ``train#degradations``.

    Raises:
        UsageError: ``scale`` is not 1, or the degradations are not train.yaml's noise.
    """
    from medical_denoise.errors import UsageError
    from medical_denoise.noise import AddNoised

    if int(scale) != 1 or not all(isinstance(t, AddNoised) for t in degradations):
        raise UsageError(
            "configs/clinical.yaml trains the 2.5D CT/MR denoiser with its own noise chain (and noise-level map) and "
            "cannot be merged with sr.yaml, deblur.yaml or noise_level_map.yaml (their degradations would be "
            "ignored): train those on their own."
        )

"""Tests for medical_denoise.io readers and intensity mappings (pydicom/nibabel test data + files made here)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from nibabel.testing import data_path as NIB_DATA
from PIL import Image
from pydicom.uid import generate_uid

from medical_denoise.io import CT_WINDOW, IntensityMapping, LoadedImage, default_intensity_mapping, read_image
from tests.utils import dicom_file, make_series

# ------------------------------------------------------------------------------------------------ DICOM


def test_ct_single_file_in_hu():
    path = dicom_file("CT_small.dcm")
    image = read_image(path)
    ds = pydicom.dcmread(path)
    assert isinstance(image, LoadedImage)
    assert image.format == "dicom" and image.modality == "CT" and image.source == path
    assert image.array.dtype == np.float32 and image.array.shape == (1, 128, 128)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(image.array[0], expected)
    assert float(ds.RescaleIntercept) == -1024 and image.array.min() < 0  # really HU, not stored values
    assert image.intensity == IntensityMapping(*CT_WINDOW, "ct_window")
    assert len(image.datasets) == 1 and "PixelData" not in image.datasets[0]
    assert image.files == (path,)


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_implicit.dcm"]
)
def test_lossless_compressed_equals_uncompressed(name):
    reference = read_image(dicom_file("MR_small.dcm"))
    image = read_image(dicom_file(name))
    assert image.modality == "MR" and image.intensity.kind == "percentile"
    np.testing.assert_array_equal(image.array, reference.array)


def test_lossy_jpeg_colour_dicom():
    image = read_image(dicom_file("SC_rgb_jpeg_dcmtk.dcm"))
    assert image.array.shape == (3, 100, 100)
    assert image.intensity == IntensityMapping(0.0, 255.0, "bit_depth")


def test_multiframe_enhanced_mr():
    image = read_image(dicom_file("emri_small.dcm"))
    ds = pydicom.dcmread(dicom_file("emri_small.dcm"))
    assert image.array.shape == (1, 64, 64, 10)
    np.testing.assert_array_equal(image.array[0], ds.pixel_array.transpose(1, 2, 0))
    compressed = read_image(dicom_file("emri_small_jpeg_2k_lossless.dcm"))
    np.testing.assert_array_equal(compressed.array, image.array)


def test_multiframe_rgb_rle():
    image = read_image(dicom_file("SC_rgb_rle_2frame.dcm"))
    ds = pydicom.dcmread(dicom_file("SC_rgb_rle_2frame.dcm"))
    assert image.array.shape == (3, 100, 100, 2)
    np.testing.assert_array_equal(image.array[..., 1], ds.pixel_array[1].transpose(2, 0, 1))


def test_series_read_in_position_order_not_name_order(tmp_path):
    files = make_series(tmp_path / "series", n=5)
    image = read_image(tmp_path / "series")
    assert image.source == tmp_path / "series" and image.is_series
    assert image.array.shape == (1, 128, 128, 5)
    assert list(image.files) == files
    assert sorted(image.files) != files  # the names alone would give another order
    base = read_image(dicom_file("CT_small.dcm")).array[0]
    for k in range(5):
        np.testing.assert_array_equal(image.array[0, ..., k], base + 10 * k)
    positions = [float(ds.ImagePositionPatient[2]) for ds in image.datasets]
    assert positions == sorted(positions)


def test_oblique_series_sorted_along_normal(tmp_path):
    iop = (0, 1, 0, 0, 0, -1)  # sagittal: normal is -x
    files = make_series(tmp_path / "sag", base="MR_small.dcm", n=4, iop=iop, seed=3)
    image = read_image(tmp_path / "sag")
    assert list(image.files) == files
    normal = np.cross(iop[:3], iop[3:])
    proj = [np.dot([float(v) for v in ds.ImagePositionPatient], normal) for ds in image.datasets]
    assert proj == sorted(proj)


def test_series_falls_back_to_instance_number(tmp_path):
    files = make_series(tmp_path / "s", n=3)
    for f in files:
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient
        ds.save_as(f, enforce_file_format=True)
    image = read_image(tmp_path / "s")
    assert list(image.files) == files[::-1]  # InstanceNumber was reversed


def set_instance_number(ds: pydicom.Dataset, value: bytes) -> None:
    """Store ``value`` as InstanceNumber as it is (pydicom refuses to assign a value that is not a number)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds._dict[Tag(0x00200013)] = RawDataElement(Tag(0x00200013), "IS", len(value), value, 0, False, True)


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS")
@pytest.mark.parametrize("value", [b"", b"1A"])  # empty (a legal type 2 value), or not a number
def test_empty_or_invalid_instance_number_is_not_an_error(tmp_path, value):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    set_instance_number(ds, value)
    ds.save_as(tmp_path / "one.dcm")
    assert read_image(tmp_path / "one.dcm").array.shape == (1, 128, 128)
    files = make_series(tmp_path / "s", n=3)
    for f in files:  # no geometry: the order falls back to InstanceNumber, then to file names
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient
        if f == files[1]:
            set_instance_number(ds, value)
        ds.save_as(f, enforce_file_format=True)
    assert list(read_image(tmp_path / "s").files) == sorted(files)


# ------------------------------------------------------------------------------------------------ NIfTI


def test_nifti_3d():
    path = Path(NIB_DATA) / "anatomical.nii"
    image = read_image(path)
    img = nib.load(path)
    assert image.format == "nifti" and image.array.shape == (1, *img.shape)
    np.testing.assert_allclose(image.array[0], img.get_fdata())
    np.testing.assert_array_equal(image.affine, img.affine)
    assert image.intensity.kind == "percentile"
    assert read_image(path, modality="CT").intensity.kind == "ct_window"


def test_nifti_4d_needs_volume_index_and_scale_factors_are_applied():
    path = Path(NIB_DATA) / "functional.nii"  # int16 with scl_slope / scl_inter
    with pytest.raises(ValueError, match="volume_index") as err:
        read_image(path)
    assert str(path) in str(err.value)
    image = read_image(path, volume_index=3)
    img = nib.load(path)
    assert img.dataobj.slope != 1.0
    np.testing.assert_allclose(image.array[0], img.get_fdata()[..., 3], rtol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        read_image(path, volume_index=99)


# ---------------------------------------------------------------------------------------------- bitmaps


def test_png_8_and_16_bit_and_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    g8 = rng.integers(0, 256, (12, 17), dtype=np.uint8)
    g16 = rng.integers(0, 65536, (12, 17), dtype=np.uint16)
    rgb = rng.integers(0, 256, (12, 17, 3), dtype=np.uint8)
    Image.fromarray(g8).save(tmp_path / "g8.png")
    Image.fromarray(g16).save(tmp_path / "g16.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=95)
    a = read_image(tmp_path / "g8.png")
    assert a.array.shape == (1, 12, 17) and a.bit_depth == 8 and a.modality == "photo"
    np.testing.assert_array_equal(a.array[0], g8)
    assert a.intensity == IntensityMapping(0.0, 255.0, "bit_depth")
    b = read_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(b.array[0], g16)
    assert b.bit_depth == 16 and b.intensity.high == 65535.0
    c = read_image(tmp_path / "rgb.png")
    np.testing.assert_array_equal(c.array, rgb.transpose(2, 0, 1))
    d = read_image(tmp_path / "rgb.jpg")
    assert d.format == "jpeg" and d.array.shape == (3, 12, 17)


def test_tiff_16_bit_and_stack(tmp_path):
    rng = np.random.default_rng(1)
    plane = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    stack = rng.integers(0, 65536, (4, 9, 11), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", plane)
    tifffile.imwrite(tmp_path / "s.tiff", stack, photometric="minisblack")
    a = read_image(tmp_path / "a.tif")
    assert a.format == "tiff" and a.array.shape == (1, 9, 11) and a.bit_depth == 16
    np.testing.assert_array_equal(a.array[0], plane)
    s = read_image(tmp_path / "s.tiff")
    assert s.array.shape == (1, 9, 11, 4)
    np.testing.assert_array_equal(s.array[0], stack.transpose(1, 2, 0))


# ----------------------------------------------------------------------------------------------- errors


def _write_mixed_series(folder: Path) -> None:
    folder.mkdir()
    for i in range(2):
        ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
        ds.SeriesInstanceUID = generate_uid()
        ds.save_as(folder / f"{i}.dcm", enforce_file_format=True)


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, type]]:
    """Each bad input of the brief: the path, and the exception type it must raise."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "fake.dcm").write_text("not a DICOM file at all")
    nib.Nifti1Image(np.full((4, 4, 3), np.nan, np.float32), np.eye(4)).to_filename(tmp_path / "nan.nii.gz")
    _write_mixed_series(tmp_path / "mixed")
    return {
        "missing": (tmp_path / "nope.dcm", FileNotFoundError),
        "empty folder": (tmp_path / "empty", ValueError),
        "truncated dicom": (dicom_file("MR_truncated.dcm"), ValueError),
        "undecodable jpeg dicom": (dicom_file("JPEG-lossy.dcm"), ValueError),
        "zero-byte png": (tmp_path / "zero.png", ValueError),
        "corrupt png": (tmp_path / "corrupt.png", ValueError),
        "non-image": (tmp_path / "notes.txt", ValueError),
        "fake dicom": (tmp_path / "fake.dcm", ValueError),
        "nan nifti": (tmp_path / "nan.nii.gz", ValueError),
        "mixed series": (tmp_path / "mixed", ValueError),
    }


def test_bad_inputs_raise_naming_the_file(tmp_path):
    for label, (path, exc) in bad_inputs(tmp_path).items():
        with pytest.raises(exc) as err:
            read_image(path)
        assert str(path) in str(err.value), label
    assert "NaN" in str(pytest.raises(ValueError, read_image, tmp_path / "nan.nii.gz").value)
    assert "series" in str(pytest.raises(ValueError, read_image, tmp_path / "mixed").value)


def package_dicom_files(max_bytes: float = 8e6) -> list[Path]:
    """Every DICOM file shipped with pydicom (and pydicom-data when installed), never downloaded."""
    import pydicom.data

    folders = [Path(pydicom.data.__file__).parent / "test_files"]
    big = pydicom.data.get_testdata_file("693_UNCR.dcm", download=False)  # a pydicom-data file, if installed
    folders += [Path(big).parent] if big else []
    return [f for d in folders for f in sorted(d.rglob("*.dcm")) if f.stat().st_size <= max_bytes]


@pytest.mark.filterwarnings("ignore")  # these files exercise pydicom's warnings on purpose
def test_every_package_dicom_file_round_trips_or_is_refused_by_name(tmp_path):
    """pydicom's own test files are a zoo of odd headers (empty or non-numeric IS values, big endian, palettes, no
    pixels): each is read and written back, or refused with a ValueError naming it, never a TypeError or a bare
    message (an empty InstanceNumber and a NumberOfFrames of '1A' were)."""
    from medical_denoise.io import write_like

    files = package_dicom_files()
    assert len(files) > 50
    written = 0
    for f in files:
        try:
            image = read_image(f)
            out = write_like(image, image.array, tmp_path / f"{f.parent.name}_{f.name}", description="round trip")
            assert read_image(out[0]).array.shape == image.array.shape, f
            written += 1
        except ValueError as e:
            assert str(f) in str(e) or str(tmp_path) in str(e), f"{f}: {e}"
    assert written > len(files) // 2


def test_one_format_table_names_reads_and_writes_every_format(tmp_path):
    from medical_denoise.io import FORMATS, ImageFormat, guess_format, output_name, output_suffix

    cases = {"a.nii.gz": "nifti", "A.NII": "nifti", "b.dcm": "dicom", "c.IMA": "dicom", "IM0001": "dicom",
             "d.png": "png", "e.JPG": "jpeg", "f.jpeg": "jpeg", "g.tiff": "tiff"}  # fmt: skip
    for name, fmt in cases.items():
        got = guess_format(tmp_path / name)
        assert got is ImageFormat(fmt) and got == fmt and f"{got}" == fmt, name
    assert guess_format(tmp_path) is ImageFormat.DICOM  # a folder is a series
    with pytest.raises(ValueError, match=r"notes\.txt.*unsupported"):
        guess_format(tmp_path / "notes.txt")
    assert set(FORMATS) == set(ImageFormat)  # every format has its suffixes and outputs
    # outputs keep the input's name unless its format is written as another (lossy JPEG as PNG)
    assert output_name("jpeg", "scan.v2.JPG") == "scan.v2.png" and output_suffix("jpeg", "x.jpg") == ".png"
    assert output_name("nifti", "vol.nii") == "vol.nii" and output_suffix("nifti", "vol.nii") == ".nii"
    assert output_name("dicom", "series.1") == "series.1" and output_suffix("dicom", "IM0001") == ".dcm"
    assert output_suffix(ImageFormat.TIFF, "x.tiff") == ".tiff" and output_suffix("png", "x.png") == ".png"


# -------------------------------------------------------------------------------------------- intensity


def test_intensity_is_invertible_and_does_not_clip():
    ct = IntensityMapping.ct_window()
    hu = np.array([-3000.0, CT_WINDOW[0], 0.0, CT_WINDOW[1], 5000.0])
    y = ct.forward(hu)
    assert y.dtype == np.float32 and y[1] == 0.0 and y[3] == 1.0
    assert y[0] < 0 and y[-1] > 1  # not clipped
    np.testing.assert_allclose(ct.inverse(y), hu, atol=1e-3)
    assert IntensityMapping.from_dict(ct.to_dict()) == ct
    assert IntensityMapping.bit_depth(16).high == 65535.0


def test_percentile_mapping_and_validation():
    rng = np.random.default_rng(0)
    vol = rng.normal(100, 20, (5, 6, 7))
    m = default_intensity_mapping(vol, "MR")
    assert m.kind == "percentile"
    assert m.low == pytest.approx(np.percentile(vol, 0.5)) and m.high == pytest.approx(np.percentile(vol, 99.5))
    np.testing.assert_allclose(m.inverse(m.forward(vol)), vol, rtol=1e-5)
    assert IntensityMapping.percentile(np.full((3, 3), 7.0)).high == 8.0  # constant image stays invertible
    with pytest.raises(ValueError):
        IntensityMapping(1.0, 1.0)
    with pytest.raises(ValueError):
        IntensityMapping(0.0, 1.0, "nonsense")
    assert default_intensity_mapping(vol, "photo", bit_depth=8, photo=True).high == 255.0
    assert default_intensity_mapping(vol, "ct", bit_depth=12).kind == "ct_window"

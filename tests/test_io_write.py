"""Tests for medical_denoise.io.write_like: derived DICOM, NIfTI geometry, bitmaps, atomic and safe writes."""

from __future__ import annotations

import os
from pathlib import Path

import itk
import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path as NIB_DATA
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import medical_denoise.io.writers as writers
from medical_denoise.io import default_output_name, read_image, write_like
from tests.utils import dicom_file, make_series

pytestmark = pytest.mark.filterwarnings("ignore:builtin type:DeprecationWarning")  # ITK's SWIG bindings


def test_derived_ct_dicom_keeps_patient_study_geometry(tmp_path):
    src = dicom_file("CT_small.dcm")
    image = read_image(src)
    out = write_like(image, image.array, tmp_path / "ct.dcm", description="cGAN v1")
    assert out == [tmp_path / "ct.dcm"]
    a, b = pydicom.dcmread(src), pydicom.dcmread(out[0])
    for keyword in (
        "PatientName",
        "PatientID",
        "StudyInstanceUID",
        "StudyDate",
        "PatientBirthDate",
        "Modality",
        "PixelSpacing",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "SliceThickness",
        "RescaleSlope",
        "RescaleIntercept",
        "SOPClassUID",
    ):
        assert b.get(keyword) == a.get(keyword), keyword
    assert b.SeriesInstanceUID != a.SeriesInstanceUID and b.SOPInstanceUID != a.SOPInstanceUID
    assert b.file_meta.MediaStorageSOPInstanceUID == b.SOPInstanceUID
    assert b.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert list(b.ImageType[:2]) == ["DERIVED", "SECONDARY"]
    assert b.DerivationDescription == "cGAN v1"
    assert b.SeriesDescription.endswith("denoised")
    assert b.SourceImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    np.testing.assert_array_equal(b.pixel_array, a.pixel_array)
    assert b.pixel_array.dtype == a.pixel_array.dtype
    # ITK (GDCM) reads it too, with the same geometry
    itk_image = itk.imread(str(out[0]))
    np.testing.assert_array_equal(itk.array_from_image(itk_image).reshape(128, 128), image.array[0])
    np.testing.assert_allclose(np.array(itk_image.GetOrigin()), [float(v) for v in a.ImagePositionPatient])
    np.testing.assert_allclose(np.array(itk_image.GetSpacing())[:2], [float(v) for v in a.PixelSpacing][::-1])


def test_dicom_requantized_through_rescale_and_clipped(tmp_path):
    image = read_image(dicom_file("CT_small.dcm"))
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.49, 0.49, image.array.shape)  # below half a quantization step (slope 1)
    new = image.array + jitter
    new[0, 0, 0], new[0, 0, 1] = 1e6, -1e6
    out = write_like(image, new, tmp_path / "q.dcm", description="t")
    stored = pydicom.dcmread(out[0]).pixel_array
    expected = pydicom.dcmread(dicom_file("CT_small.dcm")).pixel_array.copy()
    expected[0, 0], expected[0, 1] = 32767, -32768  # clipped to int16 (BitsStored 16)
    np.testing.assert_array_equal(stored, expected)


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_implicit.dcm"])
def test_compressed_in_uncompressed_out(tmp_path, name):
    image = read_image(dicom_file(name))
    out = write_like(image, image.array, tmp_path / name, description="t")
    b = pydicom.dcmread(out[0])
    assert b.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(b.pixel_array, pydicom.dcmread(dicom_file("MR_small.dcm")).pixel_array)
    itk.imread(str(out[0]))


def test_lossy_source_flagged(tmp_path):
    image = read_image(dicom_file("SC_rgb_jpeg_dcmtk.dcm"))
    out = write_like(image, image.array, tmp_path / "rgb.dcm", description="t")
    b = pydicom.dcmread(out[0])
    assert b.PhotometricInterpretation == "RGB" and b.LossyImageCompression == "01"
    np.testing.assert_array_equal(b.pixel_array.transpose(2, 0, 1), image.array)


def test_multiframe_stays_multiframe(tmp_path):
    image = read_image(dicom_file("emri_small.dcm"))
    out = write_like(image, image.array, tmp_path / "emri.dcm", description="t")
    b = pydicom.dcmread(out[0])
    assert int(b.NumberOfFrames) == 10 and b.SOPClassUID == pydicom.dcmread(dicom_file("emri_small.dcm")).SOPClassUID
    np.testing.assert_array_equal(b.pixel_array.transpose(1, 2, 0), image.array[0])
    assert itk.array_from_image(itk.imread(str(out[0]))).shape == (10, 64, 64)
    rgb = read_image(dicom_file("SC_rgb_rle_2frame.dcm"))
    out = write_like(rgb, rgb.array, tmp_path / "rgb2.dcm", description="t")
    assert read_image(out[0]).array.shape == (3, 100, 100, 2)


def test_series_folder_written_as_one_new_series(tmp_path):
    files = make_series(tmp_path / "in", n=3)
    image = read_image(tmp_path / "in")
    out = write_like(image, image.array, tmp_path / "out" / "in", description="t")
    assert sorted(p.name for p in out) == sorted(f.name for f in files)
    derived = [pydicom.dcmread(p) for p in out]
    assert len({ds.SeriesInstanceUID for ds in derived}) == 1
    assert derived[0].SeriesInstanceUID != image.datasets[0].SeriesInstanceUID
    assert len({ds.SOPInstanceUID for ds in derived}) == 3
    for f in files:  # each output file carries its own input slice
        np.testing.assert_array_equal(
            pydicom.dcmread(tmp_path / "out" / "in" / f.name).ImagePositionPatient,
            pydicom.dcmread(f).ImagePositionPatient,
        )


def test_nifti_keeps_affine_header_dtype_and_scaling(tmp_path):
    path = Path(NIB_DATA) / "functional.nii"
    image = read_image(path, volume_index=3)
    src = nib.load(path)
    step = float(src.dataobj.slope)
    jitter = np.random.default_rng(0).uniform(-0.45, 0.45, image.array.shape) * step
    out = write_like(image, image.array + jitter, tmp_path / "f.nii", description="t")
    b = nib.load(out[0])
    np.testing.assert_array_equal(b.affine, src.affine)
    assert b.get_data_dtype() == src.get_data_dtype()
    assert b.dataobj.slope == pytest.approx(step) and b.dataobj.inter == pytest.approx(src.dataobj.inter)
    for key in ("qform_code", "sform_code"):
        assert b.header[key] == src.header[key]
    np.testing.assert_allclose(b.header["pixdim"][1:4], src.header["pixdim"][1:4])
    # identical stored integers: the jitter stayed below half a step
    np.testing.assert_array_equal(np.asarray(b.dataobj.get_unscaled()), src.dataobj.get_unscaled()[..., 3])
    gz = read_image(Path(NIB_DATA) / "anatomical.nii")
    out = write_like(gz, gz.array, tmp_path / "a.nii.gz", description="t")
    assert nib.load(out[0]).shape == (33, 41, 25)
    np.testing.assert_array_equal(nib.load(out[0]).affine, nib.load(Path(NIB_DATA) / "anatomical.nii").affine)


def test_png_8_16_bit_and_jpeg_as_png(tmp_path):
    rng = np.random.default_rng(0)
    g16 = rng.integers(0, 65536, (10, 13), dtype=np.uint16)
    rgba = rng.integers(0, 256, (10, 13, 4), dtype=np.uint8)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(rgba[..., :3]).save(tmp_path / "photo.jpg")
    (tmp_path / "out").mkdir()
    for name in ("g16.png", "rgba.png", "photo.jpg"):
        image = read_image(tmp_path / name)
        target = tmp_path / "out" / default_output_name(image)
        out = write_like(image, image.array + 0.4, target, description="t")
        back = read_image(out[0])
        assert back.format == "png" and back.bit_depth == image.bit_depth
        np.testing.assert_array_equal(back.array, image.array)
    assert (tmp_path / "out" / "photo.png").exists()
    assert np.asarray(Image.open(tmp_path / "out" / "g16.png")).dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "rgba.png")), rgba)  # alpha kept
    with pytest.raises(ValueError, match="written as .png"):
        write_like(read_image(tmp_path / "photo.jpg"), image.array, tmp_path / "out" / "x.jpg", description="t")


def test_camera_multi_picture_jpeg_is_read_and_written_as_a_jpeg(tmp_path):
    """Pillow reports a multi-picture JPEG (MPO, common from cameras) as its own format; it is still a JPEG."""
    rgb = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "cam.jpg", format="MPO", save_all=True, append_images=[Image.fromarray(rgb)])
    assert Image.open(tmp_path / "cam.jpg").format == "MPO"
    image = read_image(tmp_path / "cam.jpg")
    assert image.format == "jpeg" and default_output_name(image) == "cam.png"
    out = write_like(image, image.array, tmp_path / default_output_name(image), description="t")
    np.testing.assert_array_equal(read_image(out[0]).array, image.array)


def test_refusals(tmp_path):
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    with pytest.raises(ValueError, match="input"):
        write_like(image, image.array, tmp_path / "a.png", description="t", overwrite=True)
    out = write_like(image, image.array + 7, tmp_path / "b.png", description="t")
    with pytest.raises(ValueError, match="already exists"):
        write_like(image, image.array, out[0], description="t")
    write_like(image, image.array + 9, out[0], description="t", overwrite=True)
    assert np.asarray(Image.open(out[0])).max() == 9
    with pytest.raises(ValueError, match="shape"):
        write_like(image, image.array[..., :2], tmp_path / "c.png", description="t")
    with pytest.raises(ValueError, match="NaN"):
        write_like(image, image.array * np.nan, tmp_path / "c.png", description="t")
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png"]


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    make_series(tmp_path / "in", n=3)
    image = read_image(tmp_path / "in")
    real = writers._derived_dataset
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(writers, "_derived_dataset", flaky)
    with pytest.raises(OSError, match="disk full"):
        write_like(image, image.array, tmp_path / "out" / "series", description="t")
    assert len(calls) == 3
    assert not (tmp_path / "out").exists()  # no temp files, no half series, no created folder


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "MR_small_implicit.dcm", "SC_rgb_jpeg_dcmtk.dcm", "emri_small.dcm", "SC_rgb_rle_2frame.dcm"],
)
def test_pydicom2_path_writes_what_set_pixel_data_writes(tmp_path, monkeypatch, name):
    """MONAI Label's environment pins pydicom 2, which has no ``Dataset.set_pixel_data``: hide it and compare."""
    image = read_image(dicom_file(name))
    new = image.array + np.random.default_rng(0).normal(0, 20, image.array.shape)
    series_uid = generate_uid()

    def write(target: Path) -> pydicom.Dataset:
        ds = writers._derived_dataset(image.datasets[0], new, series_uid, "t", "")
        writers._save_dicom(ds, target)
        return pydicom.dcmread(target)

    a = write(tmp_path / "v3.dcm")
    monkeypatch.delattr(pydicom.Dataset, "set_pixel_data")
    calls = []
    real = writers._set_pixel_data_pydicom2
    monkeypatch.setattr(writers, "_set_pixel_data_pydicom2", lambda *args: calls.append(1) or real(*args))
    b = write(tmp_path / "v2.dcm")
    monkeypatch.undo()
    assert calls == [1]  # the pydicom-2 branch ran
    assert b.original_encoding == (False, True)  # explicit VR little endian, also from implicit-VR sources
    assert b.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian == a.file_meta.TransferSyntaxUID
    assert b.file_meta.MediaStorageSOPInstanceUID == b.SOPInstanceUID != a.SOPInstanceUID
    assert b.SOPInstanceUID != image.datasets[0].SOPInstanceUID and b.SeriesInstanceUID == series_uid
    assert b["PixelData"].VR == a["PixelData"].VR == ("OB" if a.BitsAllocated == 8 else "OW")
    assert ("NumberOfFrames" in b) == ("NumberOfFrames" in a)
    skip = {"SOPInstanceUID"}  # every other element, Image Pixel module included, is the same
    assert [e.keyword for e in b if e.keyword not in skip] == [e.keyword for e in a if e.keyword not in skip]
    for elem in a:
        if elem.keyword not in skip:
            assert b[elem.tag].value == elem.value, elem.keyword
    np.testing.assert_array_equal(b.pixel_array, a.pixel_array)
    assert read_image(tmp_path / "v2.dcm").array.shape == image.array.shape

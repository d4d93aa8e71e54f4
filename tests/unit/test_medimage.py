"""load_image turns every supported format into 8-bit RGB; the window math is checked by hand.

Window mapping (DICOM LINEAR_EXACT): ``y = ((x - center) / width + 0.5) * 255``, clipped to
0..255 and rounded. Example, brain window (40, 80): HU 60 -> (20/80 + 0.5) * 255 = 191.25 -> 191.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from medvl.data.images import image_header
from medvl.data.medimage import (
    WINDOW_PRESETS,
    ImageError,
    apply_window,
    image_kind,
    load_image,
)

IDENTITY = (127.5, 255.0)  # maps 0..255 onto itself, so expected pixels read off the data


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def write_dicom(
    path: Path,
    stored: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    syntax: str = ExplicitVRLittleEndian,
    **attrs: object,
) -> Path:
    """A minimal CT DICOM; ``stored`` is int16 (frames, rows, cols) / (rows, cols), or None."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName = "CT", "Phantom^Test"
    if stored is not None:
        ds.Rows, ds.Columns = stored.shape[-2:]
        if stored.ndim == 3 and photometric != "RGB":
            ds.NumberOfFrames = stored.shape[0]
        ds.PhotometricInterpretation = photometric
        ds.SamplesPerPixel = 3 if photometric == "RGB" else 1
        if photometric == "RGB":
            ds.Rows, ds.Columns = stored.shape[:2]
            ds.PlanarConfiguration = 0
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        else:
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = stored.tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


# ---------------------------------------------------------------- rasters


def test_8bit_png_passes_through(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = pixels(load_image(tmp_path / "g.png"))
    assert (out[..., 0] == gray).all() and (out[..., 2] == gray).all()


def test_16bit_gradient_uses_full_range_without_clipping(tmp_path):
    ramp = np.tile(np.linspace(0, 4000, 200).astype(np.uint16), (30, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    assert Image.open(tmp_path / "ramp.png").mode == "I;16"
    row = pixels(load_image(tmp_path / "ramp.png"))[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert (np.diff(row) >= 0).all()
    assert len(np.unique(row)) > 150  # a real gradient, not a clipped step at 255
    assert abs(int(row[100]) - round(ramp[0, 100] / 4000 * 255)) <= 1


def test_16bit_big_endian_tiff_and_explicit_window(tmp_path):
    values = np.array([[0, 1000, 2000, 3000]], dtype=">u2").repeat(4, axis=0)
    Image.fromarray(values).save(tmp_path / "be.tif")
    row = pixels(load_image(tmp_path / "be.tif"))[0, :, 0]
    assert row.tolist() == [0, 85, 170, 255]
    # window (1000, 2000): 0 -> 0, 1000 -> 127.5 -> 128, 2000 -> 255, 3000 clipped to 255
    row = pixels(load_image(tmp_path / "be.tif", window=(1000, 2000)))[0, :, 0]
    assert row.tolist() == [0, 128, 255, 255]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(tmp_path / "red.jpg")
    r, g, b = pixels(load_image(tmp_path / "red.jpg"))[16, 16].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_rgba_composited_on_black(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:, :2] = (255, 0, 0, 0)  # fully transparent red -> black background
    rgba[:, 2:] = (0, 255, 0, 255)  # opaque green stays green
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = pixels(load_image(tmp_path / "a.png"))
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 3].tolist() == [0, 255, 0]


def test_palette_with_transparency_la_and_1bit(tmp_path):
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30, 200, 100, 50] + [0] * 759)
    pal.putpixel((0, 0), 2)
    pal.save(tmp_path / "p.png")
    out = pixels(load_image(tmp_path / "p.png"))
    assert out[0, 0].tolist() == [200, 100, 50] and out[1, 1].tolist() == [10, 20, 30]
    pal.save(tmp_path / "t.gif", transparency=2)
    assert pixels(load_image(tmp_path / "t.gif"))[0, 0].tolist() == [0, 0, 0]
    Image.new("LA", (4, 4), (200, 255)).save(tmp_path / "la.png")
    assert pixels(load_image(tmp_path / "la.png"))[0, 0].tolist() == [200, 200, 200]
    Image.new("1", (4, 4), 1).save(tmp_path / "one.bmp")
    assert pixels(load_image(tmp_path / "one.bmp"))[0, 0].tolist() == [255, 255, 255]
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "x.webp", lossless=True)
    assert pixels(load_image(tmp_path / "x.webp"))[0, 0].tolist() == [1, 2, 3]


def test_apply_window_hand_computed():
    values = np.array([-1000.0, 0.0, 40.0, 60.0, 80.0, 500.0])
    assert apply_window(values, WINDOW_PRESETS["brain"]).tolist() == [0, 0, 128, 191, 255, 255]
    assert apply_window(np.full(3, 7.0)).tolist() == [0, 0, 0]  # constant image, no window


# ---------------------------------------------------------------- DICOM


def _hu_ramp() -> np.ndarray:
    # stored values; with slope 2 and intercept -1024: HU = 2 * stored - 1024
    return np.array([[12, 512, 532, 542, 552, 1000]], dtype=np.int16).repeat(2, axis=0)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_dicom_rescale_then_named_window(tmp_path, syntax):
    path = write_dicom(
        tmp_path / "ct.dcm", _hu_ramp(), syntax=syntax, RescaleSlope=2, RescaleIntercept=-1024
    )
    # HU: -1000, 0, 40, 60, 80, 976 ; brain window (40, 80) -> 0, 0, 128, 191, 255, 255
    row = pixels(load_image(path, window="brain"))[0, :, 0]
    assert row.tolist() == [0, 0, 128, 191, 255, 255]
    # lung window (-600, 1500): HU 0 -> (600/1500 + .5) * 255 = 229.5 -> 230 (round half even)
    assert pixels(load_image(path, window="LUNG"))[0, 1, 0] == 230


def test_dicom_file_window_first_value_and_minmax(tmp_path):
    path = write_dicom(
        tmp_path / "ct.dcm",
        _hu_ramp(),
        RescaleSlope=2,
        RescaleIntercept=-1024,
        WindowCenter=[40, 400],
        WindowWidth=[80, 2000],
    )
    assert pixels(load_image(path))[0, :, 0].tolist() == [0, 0, 128, 191, 255, 255]
    # minmax over HU -1000..976: HU 0 -> 1000/1976 * 255 = 129.05 -> 129
    assert pixels(load_image(path, window="minmax"))[0, 1, 0] == 129


def test_dicom_monochrome1_is_inverted(tmp_path):
    path = write_dicom(
        tmp_path / "cr.dcm",
        _hu_ramp(),
        photometric="MONOCHROME1",
        RescaleSlope=2,
        RescaleIntercept=-1024,
    )
    row = pixels(load_image(path, window=(40, 80)))[0, :, 0]
    assert row.tolist() == [255, 255, 127, 64, 0, 0]


def test_dicom_multiframe_middle_or_named_frame_and_magic(tmp_path):
    frames = np.stack([np.full((4, 4), v, dtype=np.int16) for v in (0, 100, 200)])
    path = write_dicom(tmp_path / "series.bin", frames, WindowCenter=127.5, WindowWidth=255)
    assert image_kind(path) == "dicom"  # found by the DICM magic, not the suffix
    assert pixels(load_image(path))[0, 0, 0] == 100
    assert pixels(load_image(path, slice_index=0))[0, 0, 0] == 0
    with pytest.raises(ImageError) as info:
        load_image(path, slice_index=3)
    assert info.value.code == "bad_slice" and "0..2" in str(info.value)


def test_dicom_rgb_passes_through(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 2] = 250, 7
    path = write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB")
    assert pixels(load_image(path))[1, 1].tolist() == [250, 0, 7]
    assert image_header(path).width == 5


def test_dicom_without_pixel_data_names_the_file(tmp_path):
    path = write_dicom(tmp_path / "sr.dcm", None)
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert info.value.code == "no_pixel_data"
    assert str(info.value).startswith(f"{path}: DICOM file has no pixel data")
    assert image_header(path).has_pixels is False


def test_dicom_header_reads_rows_and_columns(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", np.zeros((30, 40), dtype=np.int16))
    header = image_header(path)
    assert (header.width, header.height, header.mode, header.format) == (
        40,
        30,
        "MONOCHROME2",
        "DICOM",
    )


# ---------------------------------------------------------------- NIfTI


def _volume() -> np.ndarray:
    x, y, z = np.meshgrid(np.arange(3), np.arange(4), np.arange(5), indexing="ij")
    return (100 * x + 10 * y + z).astype(np.int16)  # value encodes its own RAS voxel position


def test_nifti_middle_axial_slice_in_radiological_orientation(tmp_path):
    volume = _volume()
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii.gz")
    out = pixels(load_image(tmp_path / "v.nii.gz", window=IDENTITY))[..., 0]
    # middle axial slice z=2; top row = most anterior (y=3), left column = patient right (x=2)
    assert out.shape == (4, 3)
    assert out[0, 0] == 100 * 2 + 10 * 3 + 2 and out[-1, -1] == 2
    header = image_header(tmp_path / "v.nii.gz")
    assert (header.width, header.height, header.format) == (3, 4, "NIFTI")


def test_nifti_named_slice_and_axis(tmp_path):
    nib.save(nib.Nifti1Image(_volume(), np.eye(4)), tmp_path / "v.nii")
    axial0 = pixels(load_image(tmp_path / "v.nii", slice_index=0, window=IDENTITY))[..., 0]
    assert axial0[0, 0] == 230 and axial0[-1, -1] == 0
    sagittal = pixels(load_image(tmp_path / "v.nii", axis=0, slice_index=1, window=IDENTITY))
    # sagittal x=1: top = superior (z=4), left = anterior (y=3)
    assert sagittal.shape[:2] == (5, 4) and sagittal[0, 0, 0] == 100 + 30 + 4


def test_nifti_orientation_does_not_depend_on_voxel_order(tmp_path):
    volume = _volume()
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "ras.nii")
    lps = np.flip(np.flip(volume, 0), 1)  # stored running towards L and P
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[:3, 3] = [2, 3, 0]
    nib.save(nib.Nifti1Image(np.ascontiguousarray(lps), affine), tmp_path / "lps.nii")
    for axis in (0, 1, 2):
        ras = pixels(load_image(tmp_path / "ras.nii", axis=axis, window=IDENTITY))
        other = pixels(load_image(tmp_path / "lps.nii", axis=axis, window=IDENTITY))
        assert (ras == other).all(), axis


def test_unknown_window_and_bad_axis_are_clear(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(ImageError, match="unknown window preset 'soft'; use one of lung"):
        load_image(tmp_path / "a.png", window="soft")
    nib.save(nib.Nifti1Image(_volume(), np.eye(4)), tmp_path / "v.nii")
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "v.nii", axis=3)
    assert info.value.code == "bad_slice"

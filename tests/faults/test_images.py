"""Image checks: each bad input yields its stable code and a one-line message with the fix."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medvl.data.images import (
    CHECK_CODES,
    ImageCheck,
    check_image,
    check_record_images,
    image_header,
    image_problem,
    iter_record_image_checks,
    resolve_inside_root,
)
from medvl.data.medimage import ImageError, load_image
from medvl.data.record import Record


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose IHDR claims ``width`` x ``height`` (a decompression-bomb header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def noise_png(path: Path, size: int = 256) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def assert_check(check: ImageCheck | None, code: str, *fragments: str) -> None:
    assert check is not None and check.code == code, check
    assert code in CHECK_CODES
    assert "\n" not in check.message and "; " in check.message  # one line: reason; fix
    for fragment in fragments:
        assert fragment in check.message


def test_good_image_has_no_problem(tmp_path):
    path = noise_png(tmp_path / "ok.png", 64)
    assert check_image(path) is None and image_problem(path, decode=False) is None


def test_missing_file(tmp_path):
    assert_check(check_image(tmp_path / "gone.png"), "missing", "not found")


def test_corrupt_bytes(tmp_path):
    path = tmp_path / "junk.png"
    path.write_bytes(b"this is not an image at all" * 20)
    for decode in (False, True):
        assert_check(check_image(path, decode=decode), "undecodable", "re-export it")


def test_truncated_png_is_caught_without_decoding(tmp_path):
    path = noise_png(tmp_path / "full.png")
    cut = tmp_path / "cut.png"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_check(check_image(cut, decode=False), "truncated", "IEND", "re-copy")
    check = check_image(cut, decode=True)
    assert check is not None and check.code == "truncated"
    with pytest.raises(ImageError) as info:
        load_image(cut)
    assert str(info.value).startswith(f"{cut}: ") and "Traceback" not in str(info.value)


@pytest.mark.parametrize(
    ("size", "code", "text"),
    [
        ((10, 10), "too_small", "image is 10x10 px; each side must be at least 28 px"),
        ((1, 5000), "too_small", "image is 1x5000 px"),
        ((28, 6000), "aspect_ratio", "aspect ratio above 200 is refused"),
    ],
)
def test_size_limits(tmp_path, size, code, text):
    Image.new("L", size).save(tmp_path / "x.png")
    for decode in (False, True):
        assert_check(check_image(tmp_path / "x.png", decode=decode), code, text)


def test_100_megapixel_header_is_refused_without_decoding(tmp_path):
    path = png_claiming(tmp_path / "bomb.png", 10_000, 10_000)
    assert image_header(path).pixels == 100_000_000
    for decode in (False, True):
        assert_check(check_image(path, decode=decode), "too_large", "10000x10000", "downscale")
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert info.value.code == "too_large"


def test_pil_bomb_error_becomes_image_error(tmp_path):
    path = png_claiming(tmp_path / "huge.png", 20_000, 20_000)  # over PIL's 2x hard limit
    assert_check(check_image(path, decode=False), "too_large", "decompression")


def _dicom(path: Path, *, with_pixels: bool) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.Modality, ds.Rows, ds.Columns = CTImageStorage, "CT", 64, 64
    if with_pixels:
        ds.PhotometricInterpretation, ds.SamplesPerPixel = "MONOCHROME2", 1
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.arange(64 * 64, dtype=np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_without_pixel_data(tmp_path):
    path = _dicom(tmp_path / "hdr.dcm", with_pixels=False)
    for decode in (False, True):
        assert_check(check_image(path, decode=decode), "no_pixel_data", "no pixel data")


def test_truncated_dicom_is_caught_by_the_header_check(tmp_path):
    path = _dicom(tmp_path / "ct.dcm", with_pixels=True)
    assert check_image(path) is None
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    assert_check(check_image(path, decode=False), "truncated", "stated length")
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert info.value.code == "truncated"


def test_junk_with_dicom_suffix_is_undecodable(tmp_path):
    (tmp_path / "junk.dcm").write_bytes(b"abc" * 100)
    assert_check(check_image(tmp_path / "junk.dcm"), "undecodable", "DICOM file cannot be read")


def test_truncated_nifti(tmp_path):
    volume = np.arange(40 * 40 * 40, dtype=np.int16).reshape(40, 40, 40)
    for name in ("v.nii", "v.nii.gz"):
        nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / name)
        assert check_image(tmp_path / name) is None
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 3])
    assert_check(check_image(tmp_path / "v.nii", decode=False), "truncated", "bytes it declares")
    assert check_image(tmp_path / "v.nii.gz", decode=False) is None  # only decoding can tell
    assert_check(check_image(tmp_path / "v.nii.gz"), "truncated", "re-copy")


@pytest.mark.parametrize(
    "relative", ["../secret.png", "a/../../x.png", "..\\..\\x.png", "/etc/passwd", "C:\\x.png"]
)
def test_paths_escaping_the_root_are_refused(tmp_path, relative):
    with pytest.raises(ImageError) as info:
        resolve_inside_root(tmp_path, relative)
    assert info.value.code == "outside_root" and "without '..'" in str(info.value)


def test_paths_inside_the_root_are_normalised(tmp_path):
    assert resolve_inside_root(tmp_path, "imgs\\a\\b.png") == tmp_path / "imgs" / "a" / "b.png"
    assert resolve_inside_root(tmp_path, "imgs/../c.png") == tmp_path / "c.png"
    assert resolve_inside_root(tmp_path, str(tmp_path / "d.png")) == tmp_path / "d.png"


def _record(rid: str, *images: str) -> Record:
    content = "<image>" * len(images) + " what is shown?"
    return Record(
        id=rid,
        dataset="d",
        split="test",
        lang="en",
        images=list(images),
        messages=[{"role": "user", "content": content}],
    )


def test_record_checks_keep_the_cli_message_style(tmp_path):
    noise_png(tmp_path / "ok.png", 64)
    Image.new("RGB", (20, 60)).save(tmp_path / "small.png")
    records = [_record("a", "ok.png", "small.png"), _record("b", "gone.png")]
    jsonl = tmp_path / "data.jsonl"
    problems = check_record_images(records, jsonl)
    assert problems == [
        f"{jsonl} (id 'a'): field 'images[1]' ({tmp_path / 'small.png'}): image is 20x60 px; "
        "each side must be at least 28 px",
        f"{jsonl} (id 'b'): field 'images[0]' ({tmp_path / 'gone.png'}): image file not found; "
        "check the path (relative to the JSONL file's folder)",
    ]


def test_record_checks_with_root_refuse_escapes(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    noise_png(root / "ok.png", 64)
    records = [_record("a", "ok.png", "../outside.png"), _record("b", "ok.png")]
    found = list(iter_record_image_checks(records, root / "d.jsonl", root=root))
    assert [(r.id, i, c.code) for r, i, _, c in found] == [("a", 1, "outside_root")]

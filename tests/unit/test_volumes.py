"""NIfTI volumes read as videos, and slice sampling, checked against hand-built expectations.

The volumes are built in RAS+ index order first (``world[x, y, z]``: x towards the patient's
right, y anterior, z superior), then stored on disk in another voxel order with the affine that
undoes it. Whatever the disk order, axial frames must run inferior to superior and show the
patient's right on the image's left and anterior at the top (radiological convention).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medvl.data.medimage import apply_window
from medvl.data.video import VideoSpec
from medvl.data.volumes import (
    AXIS_ORDER,
    describe_video,
    load_frames,
    read_video,
    sample_indices,
    video_shape,
)
from medvl.errors import MedvlError

SHAPE = (4, 5, 6)  # x, y, z: all different, so a wrong axis shows as a wrong frame shape


def world() -> np.ndarray:
    """Zeros, with a 1000 marker at the right-anterior-superior corner and a 500 marker at the
    left-posterior-inferior one."""
    data = np.zeros(SHAPE, dtype=np.float32)
    data[3, 4, 5] = 1000.0
    data[0, 0, 0] = 500.0
    return data


def save_scrambled(path, data: np.ndarray) -> None:
    """Store ``data`` as voxels (z reversed, x reversed, y): disk[a, b, c] = data[3-b, c, 5-a],
    so the affine maps (a, b, c) to x = 3 - b, y = c, z = 5 - a."""
    disk = np.flip(np.flip(data.transpose(2, 0, 1), axis=0), axis=1)
    affine = np.array([[0, -1, 0, 3], [0, 0, 1, 0], [-1, 0, 0, 5], [0, 0, 0, 1]], dtype=np.float64)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(disk), affine), str(path))


def gray(frame) -> np.ndarray:
    return np.asarray(frame)[:, :, 0]


def expected(plane: np.ndarray) -> np.ndarray:
    """Radiological display of a plane indexed (lower RAS axis, higher RAS axis): transpose so
    the higher axis runs down the rows, then reverse both (anterior/superior top, right left);
    values 0..1000 through the min..max window (500, 1000)."""
    return apply_window(plane.T[::-1, ::-1], (500.0, 1000.0))


@pytest.fixture
def volume(tmp_path):
    save_scrambled(tmp_path / "ct.nii.gz", world())
    return tmp_path


def spec(**entry) -> VideoSpec:
    return VideoSpec.from_dict({"volume": "ct.nii.gz", **entry})


def test_axial_frames_run_inferior_to_superior_in_radiological_view(volume):
    frames = load_frames(spec(), volume)
    data = world()
    assert len(frames) == 6 and frames[0].size == (4, 5)  # width x (4), height y (5)
    for z, frame in enumerate(frames):
        np.testing.assert_array_equal(gray(frame), expected(data[:, :, z]))
    assert gray(frames[5])[0, 0] == 255  # superior frame; anterior top row; right on the left
    assert gray(frames[0])[4, 3] == 128  # inferior frame; posterior bottom; left on the right
    assert AXIS_ORDER["axial"] == "inferior to superior"


def test_coronal_and_sagittal_frames(volume):
    data = world()
    coronal = load_frames(spec(axis="coronal"), volume)
    assert len(coronal) == 5 and coronal[0].size == (4, 6)
    for y, frame in enumerate(coronal):  # posterior to anterior; superior on top
        np.testing.assert_array_equal(gray(frame), expected(data[:, y, :]))
    sagittal = load_frames(spec(axis="sagittal"), volume)
    assert len(sagittal) == 4 and sagittal[0].size == (5, 6)
    for x, frame in enumerate(sagittal):  # left to right; superior on top, anterior on the left
        np.testing.assert_array_equal(gray(frame), expected(data[x, :, :]))
    assert gray(sagittal[3])[0, 0] == 255


def test_ras_stored_volume_gives_the_same_frames(tmp_path):
    nib.save(nib.Nifti1Image(world(), np.eye(4)), str(tmp_path / "ras.nii"))
    save_scrambled(tmp_path / "ct.nii.gz", world())
    ras = load_frames(VideoSpec.from_dict({"volume": "ras.nii"}), tmp_path)
    scrambled = load_frames(spec(), tmp_path)
    for a, b in zip(ras, scrambled, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_window_and_sampling_with_zooms(tmp_path):
    """z spacing 2.5 mm: every 5 mm is every other slice; values are HU-like."""
    data = np.zeros((2, 2, 8), dtype=np.float32) + np.arange(8, dtype=np.float32) * 100 - 400
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "ct.nii.gz"))
    result = read_video(spec(sample={"every_mm": 5}, window=[0, 400]), tmp_path)
    assert (result.count, result.spacing_mm, result.indices) == (8, 2.5, [0, 2, 4, 6])
    # values -400, -200, 0, 200 through (0, 400): 0, 0, 127.5 -> 128, 255
    assert [int(gray(f)[0, 0]) for f in result.frames] == [0, 0, 128, 255]
    assert result.meta == {} and result.order_rule is None


def test_thick_slices_are_resized_to_square_pixels(tmp_path):
    affine = np.diag([1.0, 1.0, 4.0, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 3), np.float32), affine), str(tmp_path / "ct.nii"))
    coronal = load_frames(VideoSpec.from_dict({"volume": "ct.nii", "axis": "coronal"}), tmp_path)
    assert coronal[0].size == (6, 12)  # 3 slices of 4 mm shown as 12 rows of 1 mm
    axial = load_frames(VideoSpec.from_dict({"volume": "ct.nii"}), tmp_path)
    assert axial[0].size == (6, 6)


def test_describe_reads_no_pixels_and_bad_paths_are_named(volume):
    facts = describe_video(spec(sample={"n": 3}), volume)
    assert (facts.count, facts.indices, facts.frames, facts.spacing_mm) == (
        6,
        [0, 3, 5],
        [],
        1.0,
    )  # 2.5 -> 3
    with pytest.raises(MedvlError, match="volume file not found"):
        load_frames(VideoSpec.from_dict({"volume": "absent.nii"}), volume)
    (volume / "scan.png").write_bytes(b"png")
    with pytest.raises(MedvlError, match="must be a NIfTI file"):
        load_frames(VideoSpec.from_dict({"volume": "scan.png"}), volume)


# ---------------------------------------------------------------- sample_indices, by hand


def test_sample_n_evenly_with_first_and_last():
    assert sample_indices(10, None, {"n": 4}) == [0, 3, 6, 9]
    # 6 over 0..10: j * 10 / 5 = 0, 2, 4, 6, 8, 10
    assert sample_indices(11, None, {"n": 6}) == [0, 2, 4, 6, 8, 10]
    # 3 over 0..9: 0, 4.5 -> 5 (half up), 9
    assert sample_indices(10, None, {"n": 3}) == [0, 5, 9]
    # 4 over 0..4: 0, 1.33 -> 1, 2.67 -> 3, 4
    assert sample_indices(5, None, {"n": 4}) == [0, 1, 3, 4]
    assert sample_indices(3, None, {"n": 16}) == [0, 1, 2]
    assert sample_indices(7, None, {"n": 1}) == [3]
    assert sample_indices(8, None, {"n": 1}) == [3]
    assert sample_indices(4, None, {}) == [0, 1, 2, 3]


def test_sample_every_mm_nearest_slice():
    assert sample_indices(10, 2.5, {"every_mm": 5}) == [0, 2, 4, 6, 8]
    # 3 mm slices, every 5 mm: 0, 1.67 -> 2, 3.33 -> 3, 5, 6.67 -> 7, 8.33 -> 8 (of 0..9)
    assert sample_indices(10, 3.0, {"every_mm": 5}) == [0, 2, 3, 5, 7, 8]
    assert sample_indices(4, 2.0, {"every_mm": 1}) == [0, 1, 2, 3]  # finer than the slices
    assert sample_indices(4, 2.0, {"every_mm": 100}) == [0]
    with pytest.raises(MedvlError, match="needs the slice spacing"):
        sample_indices(4, None, {"every_mm": 5})


def test_sample_slab_alone_and_with_n_or_every_mm():
    assert sample_indices(20, 1.0, {"slab": [5, 8]}) == [5, 6, 7, 8]
    assert sample_indices(20, 1.0, {"slab": [5, 15], "n": 3}) == [5, 10, 15]
    assert sample_indices(20, 2.0, {"slab": [4, 12], "every_mm": 4}) == [4, 6, 8, 10, 12]
    assert sample_indices(20, 1.0, {"slab": [19, 19]}) == [19]
    with pytest.raises(MedvlError, match=r"outside the 20 slices"):
        sample_indices(20, 1.0, {"slab": [10, 20]})


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_nifti_planes_stream_in_blocks_equal_whole_volume_slices(tmp_path, monkeypatch, axis):
    """Planes read in one streamed pass (blocks of 3 stored slices, a short last block, a 4-D
    file's first volume, positions repeated and unordered) equal slices of the whole volume."""
    from medvl.data import nifti

    data = np.random.default_rng(0).integers(-1000, 1000, (5, 6, 7, 2)).astype(np.int16)
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    monkeypatch.setattr(nifti, "STREAM_VOXELS", 5 * 6 * 3)
    image = nifti.open_nifti(path, keep_open=True)
    positions = [4, 0, 2, 4]
    read = nifti.nifti_planes(image, axis, positions, path)
    assert sorted(read) == [0, 2, 4]
    for p in positions:
        np.testing.assert_array_equal(read[p], np.take(data[..., 0], p, axis=axis))


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_gz_volume_is_decompressed_in_one_forward_pass(tmp_path, monkeypatch, axis):
    """Sampling n slices of a .nii.gz never seeks backwards in the compressed stream (a
    backward seek restarts decompression from the file's start: n planes would cost n full
    decompressions), whatever the axis and even when the axis is stored reversed."""
    import gzip

    data = np.random.default_rng(1).integers(0, 1000, (6, 7, 8)).astype(np.int16)
    affine = np.diag([-1.0, -1.0, -2.0, 1.0])  # every axis stored towards L/P/I
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "v.nii.gz"))
    seeks: list[tuple[int, int]] = []  # (position before, offset sought)
    seek = gzip.GzipFile.seek

    def recording_seek(self, offset, whence=0):
        if whence == 0:
            seeks.append((self.tell(), offset))
        return seek(self, offset, whence)

    monkeypatch.setattr(gzip.GzipFile, "seek", recording_seek)
    spec = VideoSpec.from_dict({"volume": "v.nii.gz", "axis": axis, "sample": {"n": 4}})
    frames = read_video(spec, tmp_path).frames
    assert len(frames) == 4
    assert seeks, "the reader no longer seeks through gzip.GzipFile: update this test"
    assert all(offset >= before for before, offset in seeks), seeks


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_video_shape_from_headers_equals_the_decoded_frames(tmp_path, axis):
    """Token counting takes (frames, width, height) from headers: it must be exactly what the
    decoded frames measure, square-pixel resize (4 mm slices, 0.7 mm rows) and a scrambled voxel
    order included."""
    data = np.zeros((5, 9, 4), np.int16)
    affine = np.array(
        [[0, -0.7, 0, 3], [0, 0, 4.0, 0], [-1.0, 0, 0, 5], [0, 0, 0, 1]], dtype=np.float64
    )
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "v.nii.gz"))
    entry = VideoSpec.from_dict({"volume": "v.nii.gz", "axis": axis, "sample": {"n": 3}})
    frames = load_frames(entry, tmp_path)
    assert video_shape(entry, tmp_path) == (len(frames), *frames[0].size)

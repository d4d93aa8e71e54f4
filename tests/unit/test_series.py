"""DICOM series read as videos: grouping, ordering, spacing, gaps, rescale and window.

Every series is written here with pydicom, one file per slice (or one multi-frame file). Each
slice holds one constant stored value that encodes its true anatomical rank, so the order of
the frames can be read back off their grey levels. Window arithmetic (LINEAR_EXACT):
``y = ((x - c) / w + 0.5) * 255`` clipped and rounded half to even.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medvl.data.series import read_series
from medvl.data.video import VideoSpec
from medvl.data.volumes import (
    describe_video,
    load_frames,
    read_video,
    video_meta,
    video_shape,
)
from medvl.errors import MedvlError

AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def write_slice(path: Path, value: int | np.ndarray, **attrs: object) -> Path:
    """One CT slice (4x4, int16) whose stored pixels are ``value``; ``attrs`` set tags."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.StudyInstanceUID = "CT", "PAT-1", "1.2.3.4"
    stored = np.asarray(value, dtype=np.int16)
    if stored.ndim == 0:
        stored = np.full((4, 4), stored, dtype=np.int16)
    ds.Rows, ds.Columns = stored.shape[-2:]
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    ds.PhotometricInterpretation, ds.SamplesPerPixel = "MONOCHROME2", 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelSpacing = [0.5, 0.5]
    ds.PixelData = stored.tobytes()
    for key, item in attrs.items():
        setattr(ds, key, item)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(
    folder: Path,
    positions: list[list[float]],
    *,
    uid: str = "1.2.3.4.5",
    orientation: list[float] = AXIAL,
    instances: list[int] | None = None,
    names: list[str] | None = None,
    **attrs: object,
) -> list[Path]:
    """Slice ``k`` has stored value ``100 * (k + 1)`` and position ``positions[k]``; files are
    named ``names[k]`` (default: shuffled) and numbered ``instances[k]`` (default: shuffled)."""
    count = len(positions)
    rng = random.Random(count)
    order = list(range(count))
    rng.shuffle(order)
    names = names or [f"IM{order[k]:04d}.dcm" for k in range(count)]
    instances = instances or [order[-1 - k] + 1 for k in range(count)]
    return [
        write_slice(
            folder / names[k],
            100 * (k + 1),
            SeriesInstanceUID=uid,
            ImagePositionPatient=positions[k],
            ImageOrientationPatient=orientation,
            InstanceNumber=instances[k],
            **attrs,
        )
        for k in range(count)
    ]


def grey(frames) -> list[int]:
    """The grey level of each (constant) frame."""
    return [int(np.asarray(f)[0, 0, 0]) for f in frames]


def ranks(frames) -> list[int]:
    """Frames back to slice ranks: with the min..max window over values 100..100n, grey rises
    strictly with rank, so the rank order of the grey levels is the slice order."""
    levels = grey(frames)
    return [sorted(set(levels)).index(g) for g in levels]


def series(path: Path, **spec: object) -> VideoSpec:
    return VideoSpec.from_dict({"series": str(path), **spec})


def axial_positions(count: int, spacing: float = 2.5) -> list[list[float]]:
    return [[-10.0, -10.0, -50.0 + spacing * k] for k in range(count)]


# ---------------------------------------------------------------- ordering


def test_shuffled_files_are_ordered_by_position_inferior_to_superior(tmp_path):
    write_series(tmp_path / "s", axial_positions(5))  # names and InstanceNumber both shuffled
    result = read_video(series(tmp_path / "s", window="minmax"), tmp_path)
    assert result.order_rule == "ImagePositionPatient"
    assert ranks(result.frames) == [0, 1, 2, 3, 4]
    assert grey(result.frames) == [0, 64, 128, 191, 255]  # 100..500 stretched: 25% -> 63.75
    assert (result.count, result.spacing_mm, result.warnings) == (5, 2.5, [])
    assert result.frames[0].size == (4, 4) and result.frames[0].mode == "RGB"


def test_reversed_row_cosine_still_gives_inferior_to_superior(tmp_path):
    """Row cosine -x makes the normal point inferior; frames still run feet to head."""
    write_series(tmp_path / "s", axial_positions(4), orientation=[-1, 0, 0, 0, 1, 0])
    names = [r.path.name for r in read_series(tmp_path / "s").slices]
    frames = load_frames(series(tmp_path / "s"), tmp_path)
    assert ranks(frames) == [0, 1, 2, 3]
    assert len(names) == 4  # slices are sorted along the normal: superior first here


def test_oblique_series_is_ordered_along_the_normal_not_by_z(tmp_path):
    """Tilted 30 degrees about x, with in-plane offsets along the column direction, which has
    a z component: z order differs from the order along the normal (checked below)."""
    tilt = math.radians(30)
    row, col = np.array([1.0, 0, 0]), np.array([0.0, math.cos(tilt), math.sin(tilt)])
    normal = np.cross(row, col)
    offsets = [0.0, 9.0, -6.0, 12.0, -3.0]
    positions = [(3.0 * k * normal + offsets[k] * col).tolist() for k in range(5)]
    assert sorted(range(5), key=lambda k: positions[k][2]) != list(range(5))
    write_series(tmp_path / "s", positions, orientation=[*row, *col])
    result = read_video(series(tmp_path / "s"), tmp_path)
    assert result.order_rule == "ImagePositionPatient"
    assert ranks(result.frames) == [0, 1, 2, 3, 4]
    assert result.spacing_mm == pytest.approx(3.0)


def test_instance_number_orders_slices_without_positions(tmp_path):
    folder = tmp_path / "s"
    for rank, (name, number) in enumerate([("c.dcm", 1), ("a.dcm", 2), ("b.dcm", 3)]):
        write_slice(folder / name, 100 * (rank + 1), SeriesInstanceUID="9.9", InstanceNumber=number)
    found = read_series(folder)
    assert found.order_rule == "InstanceNumber"
    assert [r.path.name for r in found.slices] == ["c.dcm", "a.dcm", "b.dcm"]
    assert ranks(load_frames(series(folder), tmp_path)) == [0, 1, 2]
    assert found.spacing_mm is None


def test_file_name_order_is_the_last_resort_and_says_so(tmp_path):
    for rank, name in enumerate(["b.dcm", "c.dcm"]):
        write_slice(tmp_path / "s" / name, 100 * (rank + 1), SeriesInstanceUID="9.9")
    result = describe_video(series(tmp_path / "s"), tmp_path)
    assert result.order_rule == "file name"
    assert "ordered by file name" in result.warnings[0]


# ---------------------------------------------------------------- grouping


def test_mixed_series_need_a_uid_and_the_error_lists_them(tmp_path):
    folder = tmp_path / "study"
    write_series(folder / "a", axial_positions(3), uid="1.1")
    write_series(folder / "b", axial_positions(2), uid="2.2")
    with pytest.raises(MedvlError) as error:
        load_frames(series(folder), tmp_path)
    assert "1.1 (3 slices)" in str(error.value) and "2.2 (2 slices)" in str(error.value)
    assert "series_uid" in str(error.value)
    frames = load_frames(series(folder, series_uid="2.2"), tmp_path)
    assert len(frames) == 2
    with pytest.raises(MedvlError, match=r"no series '3\.3'"):
        load_frames(series(folder, series_uid="3.3"), tmp_path)


def test_non_dicom_files_and_empty_folders(tmp_path):
    write_series(tmp_path / "s", axial_positions(2))
    (tmp_path / "s" / "notes.txt").write_text("not an image")
    (tmp_path / "s" / ".DS_Store").write_bytes(b"\0" * 10)
    assert len(load_frames(series(tmp_path / "s"), tmp_path)) == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedvlError, match="no DICOM image files"):
        load_frames(series(tmp_path / "empty"), tmp_path)
    with pytest.raises(MedvlError, match="no such DICOM series"):
        load_frames(series(tmp_path / "absent"), tmp_path)


# ---------------------------------------------------------------- gaps, single, multi-frame


def test_missing_slice_is_a_warning_not_an_error(tmp_path):
    positions = axial_positions(6)
    del positions[3]  # -42.5 missing: a 5.0 mm gap between -45.0 and -40.0
    write_series(tmp_path / "s", positions)
    result = read_video(series(tmp_path / "s"), tmp_path)
    assert len(result.frames) == 5 and result.spacing_mm == 2.5
    assert len(result.warnings) == 1
    assert (
        "gap of 5.00 mm" in result.warnings[0]
        and "about 1 slice(s) missing" in (result.warnings[0])
    )


def test_single_frame_series(tmp_path):
    write_series(tmp_path / "s", axial_positions(1))
    result = read_video(series(tmp_path / "s", sample={"n": 8}), tmp_path)
    assert (len(result.frames), result.indices, result.count) == (1, [0], 1)
    assert result.spacing_mm is None and result.warnings == []
    with pytest.raises(MedvlError, match="needs the slice spacing"):
        read_video(series(tmp_path / "s", sample={"every_mm": 5}), tmp_path)


def test_multiframe_file_is_a_series_in_frame_order(tmp_path):
    stored = np.stack([np.full((4, 4), 100 * (k + 1), np.int16) for k in range(4)])
    path = write_slice(
        tmp_path / "mf.dcm", stored, SeriesInstanceUID="7.7", SpacingBetweenSlices=3.0
    )
    result = read_video(series(path, sample={"every_mm": 6}), tmp_path)
    assert result.order_rule == "frame order" and result.spacing_mm == 3.0
    assert result.indices == [0, 2]
    assert grey(result.frames) == [0, 255]  # min..max over the sampled slices: 100, 300
    as_volume = VideoSpec.from_dict({"volume": str(path), "sample": {"every_mm": 6}})
    assert read_video(as_volume, tmp_path).indices == [0, 2]  # a DICOM 'volume': same reader


def test_enhanced_multiframe_uses_per_frame_positions(tmp_path):
    stored = np.stack([np.full((4, 4), 100 * (k + 1), np.int16) for k in range(3)])
    heights = [4.0, 0.0, 8.0]  # frame 1 is the most inferior, then frame 0, then frame 2
    per_frame = []
    for z in heights:
        plane, group = Dataset(), Dataset()
        plane.ImagePositionPatient = [0.0, 0.0, z]
        group.PlanePositionSequence = [plane]
        per_frame.append(group)
    orientation, shared = Dataset(), Dataset()
    orientation.ImageOrientationPatient = AXIAL
    shared.PlaneOrientationSequence = [orientation]
    path = write_slice(
        tmp_path / "enh.dcm",
        stored,
        SeriesInstanceUID="8.8",
        PerFrameFunctionalGroupsSequence=per_frame,
        SharedFunctionalGroupsSequence=[shared],
    )
    result = read_video(series(path, window="minmax"), tmp_path)
    assert result.order_rule == "ImagePositionPatient" and result.spacing_mm == 4.0
    assert grey(result.frames) == [128, 0, 255]  # values 200, 100, 300


# ---------------------------------------------------------------- values, window, meta


def test_rescale_then_window_preset_pair_and_file_window(tmp_path):
    write_series(
        tmp_path / "s",
        axial_positions(2),
        RescaleSlope=2,
        RescaleIntercept=-1024,
        WindowCenter=-624,
        WindowWidth=400,
    )
    # stored 100, 200 -> HU -824, -624
    assert grey(load_frames(series(tmp_path / "s", window=[-624, 400]), tmp_path)) == [0, 128]
    assert grey(load_frames(series(tmp_path / "s"), tmp_path)) == [0, 128]  # the file's own
    # lung (-600, 1500): -824 -> (-224/1500 + .5) * 255 = 89.42; -624 -> 123.42
    assert grey(load_frames(series(tmp_path / "s", window="lung"), tmp_path)) == [89, 123]
    assert grey(load_frames(series(tmp_path / "s", window="minmax"), tmp_path)) == [0, 255]


def test_slices_of_another_size_are_refused_by_name(tmp_path):
    write_series(tmp_path / "s", axial_positions(2))
    write_slice(
        tmp_path / "s" / "big.dcm",
        np.zeros((6, 6)),
        SeriesInstanceUID="1.2.3.4.5",
        ImagePositionPatient=[-10.0, -10.0, 0.0],
        ImageOrientationPatient=AXIAL,
        InstanceNumber=9,
    )
    with pytest.raises(MedvlError, match=r"big\.dcm.*6x6"):
        load_frames(series(tmp_path / "s"), tmp_path)


def test_patient_study_series_ids_for_meta(tmp_path):
    write_series(tmp_path / "s", axial_positions(2), uid="5.6.7")
    meta = video_meta(series("s"), tmp_path)
    assert meta == {
        "patient_id": "PAT-1",
        "study_uid": "1.2.3.4",
        "series_uid": "5.6.7",
        "modality": "CT",
    }
    assert video_meta(VideoSpec.from_dict({"frames": ["a.png"]}), tmp_path) == {}


def test_sampling_reports_the_indices_used(tmp_path):
    write_series(tmp_path / "s", axial_positions(10, spacing=2.0))
    result = read_video(series(tmp_path / "s", sample={"n": 4}), tmp_path)
    assert result.indices == [0, 3, 6, 9]  # 9/3 = 3 exactly
    assert ranks(result.frames) == [0, 1, 2, 3]
    slab = describe_video(series(tmp_path / "s", sample={"slab": [2, 8], "every_mm": 4}), ".")
    assert slab.indices == [2, 4, 6, 8] and slab.frames == []
    with pytest.raises(MedvlError, match=r"outside the 10 slices \(0\.\.9\)"):
        describe_video(series(tmp_path / "s", sample={"slab": [5, 10]}), ".")


def test_coronal_cut_of_an_axial_series(tmp_path):
    """5 axial slices 2.5 mm apart, 4x4 pixels of 0.5 mm: coronal frames are 4 columns wide and
    5 slices x 2.5 mm / 0.5 mm = 25 rows tall, superior (the last slice, 500) on top."""
    write_series(tmp_path / "s", axial_positions(5))
    result = read_video(series(tmp_path / "s", axis="coronal", window="minmax"), tmp_path)
    assert (result.count, len(result.frames), result.spacing_mm) == (4, 4, 0.5)
    column = np.asarray(result.frames[0])[:, 0, 0]
    assert result.frames[0].size == (4, 25)
    assert column[0] == 255 and column[-1] == 0 and all(np.diff(column.astype(int)) <= 0)


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_series_video_shape_from_headers_equals_the_decoded_frames(tmp_path, axis):
    """(frames, width, height) from the headers only is what the decoded frames measure
    (0.5 mm pixels, 2.5 mm slices: coronal and sagittal frames are resized)."""
    write_series(tmp_path / "s", axial_positions(6))
    entry = series(tmp_path / "s", axis=axis, sample={"n": 4})
    frames = load_frames(entry, tmp_path)
    assert video_shape(entry, tmp_path) == (len(frames), *frames[0].size)

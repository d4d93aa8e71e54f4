"""Splits and leakage with videos: volumes, frame lists and DICOM series group by their files and
by patient/study, so slices or volumes of one patient never sit on both sides of a split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medvl.data.grouping import group_records
from medvl.data.jsonl import read_records
from medvl.data.leakage import find_leakage
from medvl.data.media_hashes import ImageHasher, video_files
from medvl.data.paths import rebase_images
from medvl.data.phantom_volumes import generate_phantom_volumes
from medvl.data.record import Message, Record
from medvl.data.split import check_split_leakage, split_dataset


def video_record(rid: str, video: dict, **meta: str) -> Record:
    return Record(
        id=rid,
        dataset="ct",
        split="all",
        lang="en",
        images=[],
        videos=[video],
        messages=[Message("user", "<video>\nIs there a lesion?"), Message("assistant", "yes")],
        answer="yes",
        answer_type="closed",
        meta=dict(meta),
    )


def write_png(path: Path, value: int, spot: int | None = None) -> str:
    pixels = np.full((16, 16), value, dtype=np.uint8)
    if spot is not None:
        pixels[spot, spot] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path.name


def groups_of(records: list[Record], base: Path, group_by: str) -> list[list[str]]:
    grouping = group_records(records, group_by, base_dir=base)
    return sorted(sorted(records[i].id for i in g) for g in grouping.groups)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Record], Path]:
    out = tmp_path_factory.mktemp("pv")
    summary = generate_phantom_volumes(out, n=60, seed=1, size=32, slices=6)
    return read_records(summary.records_path), out


def test_phantom_split_keeps_each_patient_on_one_side_and_checks_clean(phantom):
    records, base = phantom
    hasher = ImageHasher()
    result = split_dataset(
        records, fractions={"train": 0.6, "test": 0.4}, base_dir=base, hasher=hasher
    )
    sides = {
        r.meta["patient_id"]: {
            name
            for name, part in result.splits.items()
            for s in part
            if s.meta["patient_id"] == r.meta["patient_id"]
        }
        for r in records
    }
    assert all(len(names) == 1 for names in sides.values())
    assert max(len(g) for g in result.grouping.groups) >= 2  # several volumes per patient
    assert result.grouping.keys["patient"].groups < len(records)
    checks = check_split_leakage(result.splits, base, hasher=hasher)
    assert [c.image_leaks for c in checks] == [[]]
    assert checks[0].report.counts["train_images"] + checks[0].report.counts["test_images"] == 60


def test_without_the_patient_key_patients_cross_the_split(phantom):
    """The same data grouped by file content only: volumes are all distinct files, so some
    patient lands on both sides. This is why patient is a default key."""
    records, base = phantom
    parts = split_dataset(
        records, fractions={"train": 0.6, "test": 0.4}, base_dir=base, group_by="content"
    ).splits
    train = {r.meta["patient_id"] for r in parts["train"]}
    assert train & {r.meta["patient_id"] for r in parts["test"]}


def test_a_copied_volume_leaks_and_joins_by_content(phantom, tmp_path):
    records, base = phantom
    copy = tmp_path / "copy.nii.gz"
    copy.write_bytes((base / str(records[0].videos[0].volume)).read_bytes())
    test = [video_record("copied", {"volume": str(copy)})]
    report = find_leakage(records[2:], base, test[:1], tmp_path)
    assert report.pairs == []  # records[0] is not in that train set
    report = find_leakage(records, base, test[:1], tmp_path)
    assert [(p.test_id, p.train_id, p.kind) for p in report.pairs] == [
        ("copied", records[0].id, "exact_image")
    ]
    joined = group_records([records[0], test[0]], "content", base_dir=base)
    assert len(joined.groups) == 1


def test_frames_join_by_a_shared_slice_but_not_by_a_blank_one(tmp_path):
    """a and b share slice s1 (a real slice); b and c share only an all-black slice."""
    write_png(tmp_path / "s1.png", 90, spot=3)
    write_png(tmp_path / "s2.png", 90, spot=5)
    write_png(tmp_path / "s3.png", 90, spot=7)
    write_png(tmp_path / "black.png", 0)
    write_png(tmp_path / "black_copy.png", 0)
    records = [
        video_record("a", {"frames": ["s1.png", "s2.png"]}),
        video_record("b", {"frames": ["s1.png", "black.png"]}),
        video_record("c", {"frames": ["s3.png", "black_copy.png"]}),
    ]
    for key in ("content", "phash"):
        assert groups_of(records, tmp_path, key) == [["a", "b"], ["c"]]
    assert groups_of(records, tmp_path, "path") == [["a", "b"], ["c"]]
    report = find_leakage(records[:1], tmp_path, records[1:], tmp_path)
    # b also repeats a's question and answer on what it shows of a (the blank slice is no content)
    assert [(p.test_id, p.kind) for p in report.pairs] == [
        ("b", "exact_image"),
        ("b", "qa_duplicate"),
    ]


def write_dicom(path: Path, patient: str, study: str, value: int) -> None:
    """One CT slice with the given PatientID and StudyInstanceUID."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.StudyInstanceUID = "CT", patient, study
    ds.SeriesInstanceUID = study + ".1"
    ds.Rows, ds.Columns, ds.PhotometricInterpretation, ds.SamplesPerPixel = 4, 4, "MONOCHROME2", 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.full((4, 4), value, dtype=np.int16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_series_headers_join_patients_and_studies(tmp_path):
    """Series x and y: patient P1, two studies; z: P2. A meta-only record of P2 joins z."""
    for name, patient, study in (
        ("x", "P1", "1.2.3.1"),
        ("y", "P1", "1.2.3.2"),
        ("z", "P2", "1.2.3.3"),
    ):
        for i in range(2):
            write_dicom(tmp_path / name / f"IM{i}", patient, study, 10 * i)
    (tmp_path / "x" / "DICOMDIR").write_bytes(b"not a slice")
    (tmp_path / "x" / ".hidden").write_bytes(b"ignored")
    records = [video_record(name, {"series": name}) for name in "xyz"]
    records.append(
        video_record("meta", {"frames": [write_png(tmp_path / "f.png", 60, 2)]}, patient_id="P2")
    )
    assert [p.name for p in video_files(records[0], tmp_path)] == ["IM0", "IM1"]
    assert groups_of(records, tmp_path, "patient") == [["meta", "z"], ["x", "y"]]
    assert groups_of(records, tmp_path, "study") == [["meta"], ["x"], ["y"], ["z"]]
    assert groups_of(records, tmp_path, "content") == [["meta"], ["x"], ["y"], ["z"]]


def test_rebase_images_moves_video_paths_too(tmp_path):
    record = video_record("a", {"volume": "vol/a.nii.gz", "window": "abdomen"})
    moved = rebase_images([record], tmp_path / "data", tmp_path / "data" / "splits")[0]
    assert moved.videos[0].volume == "../vol/a.nii.gz" and moved.videos[0].window == "abdomen"
    frames = video_record("b", {"frames": ["s/1.png", "s/2.png"]})
    absolute = rebase_images([frames], tmp_path, None)[0]
    assert absolute.videos[0].frames == tuple(
        str((tmp_path / f"s/{i}.png").resolve()) for i in (1, 2)
    )

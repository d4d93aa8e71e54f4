"""Splits that cannot leak: records are grouped by image content, near-duplicate, patient and study,
and the leakage check on the split's own output finds nothing.

Fixtures are written by hand in the published layouts: a VQA-RAD-style Hugging Face export that
saves one image file per question (``images/train/image_00000.jpg``..., Windows separators in
``image_path``; several files hold identical bytes, others are re-encodes of the same image), and
a DICOM folder with two studies of one patient.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medvl.cli.main import main
from medvl.data.grouping import DEFAULT_GROUP_BY, group_records, parse_group_by
from medvl.data.jsonl import read_records, write_records
from medvl.data.leakage import find_leakage
from medvl.data.phantom_images import Lesion, Scene, render
from medvl.data.record import Record
from medvl.data.split import check_split_leakage, raise_on_leaks, split_dataset
from medvl.errors import ConfigError, MedvlError

REAL = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real"

# Ten different images (modality, organ, one lesion); 40 questions ask about them, 4 each.
SCENES = [
    ("CT", "lung", (70, 110, 18)),
    ("CT", "lung", (150, 100, 18)),
    ("CT", "liver", (60, 90, 12)),
    ("CT", "liver", (170, 90, 12)),
    ("CT", "kidney", (170, 120, 16)),
    ("CT", "brain", (170, 120, 16)),
    ("MRI", "brain", (70, 100, 14)),
    ("MRI", "brain", (70, 150, 14)),
    ("X-ray", "lung", (60, 110, 20)),
    ("CT", "liver", (90, 150, 14)),
]
N_QUESTIONS = 40
N_CONTENTS = 20  # ten byte-copied JPEGs and ten distinct re-encodes (see ``export``)
FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def jpeg(image: Image.Image, quality: int, scale: float = 1.0) -> bytes:
    if scale != 1.0:
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def record(rid: str, images: list[str], dataset: str = "vqa_rad", **fields) -> Record:
    prefix = "<image>\n" * len(images)
    question, answer = fields.pop("question", "Is this normal?"), fields.pop("answer", "yes")
    return Record(
        id=rid,
        dataset=dataset,
        split="all",
        lang="en",
        images=images,
        messages=[
            {"role": "user", "content": prefix + question},
            {"role": "assistant", "content": answer},
        ],
        answer=answer,
        answer_type="closed" if answer in ("yes", "no") else "open",
        **fields,
    )


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """``vqa_rad/train.json`` + ``images/train/image_000NN.jpg``, one file per question.

    Question q asks about scene q % 10. Most files are byte copies of the scene's JPEG; every
    fourth is a re-encode (quality 70 + q % 9, 0.8x size), a near-duplicate with other bytes:
    the ten (scene, quality) pairs of q = 0, 4, ..., 36 are all different.
    """
    root = tmp_path_factory.mktemp("export") / "vqa_rad"
    (root / "images" / "train").mkdir(parents=True)
    scenes = []
    for s, (modality, organ, (x, y, r)) in enumerate(SCENES):
        scene = Scene(modality, organ, 224, 224, (Lesion(x, y, r, "left"),))
        scenes.append(Image.fromarray(render(scene, np.random.default_rng(s))))
    rows = []
    for q in range(N_QUESTIONS):
        image = scenes[q % len(SCENES)]
        data = jpeg(image, 90) if q % 4 else jpeg(image, 70 + q % 9, 0.8)
        (root / "images" / "train" / f"image_{q:05d}.jpg").write_bytes(data)
        rows.append(
            {
                "image_path": f"images\\train\\image_{q:05d}.jpg",
                "question": f"Question {q} about this image?",
                "answer": "yes" if q % 3 else "left lung",
                "question_type": "PRES",
                "answer_type": "CLOSED" if q % 3 else "OPEN",
            }
        )
    (root / "train.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return root


def export_records(folder: Path, name: str = "train.json") -> list[Record]:
    """Canonical records of an export file: Windows separators made portable, paths relative."""
    rows = json.loads((folder / name).read_text(encoding="utf-8"))
    return [
        record(f"q{i:05d}", [row["image_path"].replace("\\", "/")], **_qa(row))
        for i, row in enumerate(rows)
    ]


def _qa(row: dict) -> dict:
    return {"question": row["question"], "answer": row["answer"]}


def image_leaks(splits: dict[str, list[Record]], base: Path, first: str, second: str) -> int:
    """Exact + near image leaks of ``second`` into ``first``, by the leakage check itself."""
    counts = find_leakage(splits[first], base, splits[second], base).counts
    return counts["exact_image"] + counts["near_image"]


def test_fixture_has_copies_and_near_duplicates(export):
    contents = {hashlib.sha256(p.read_bytes()).digest() for p in export.glob("images/train/*")}
    assert len(contents) == N_CONTENTS


def test_path_grouping_leaks_on_the_export(export):
    """The old behaviour: one file per question, so each copy is its own group and leaks."""
    records = export_records(export)
    for seed in range(3):
        splits = split_dataset(
            records, fractions=FRACTIONS, seed=seed, group_by="path", base_dir=export
        ).splits
        assert image_leaks(splits, export, "train", "test") > 0, seed
        assert image_leaks(splits, export, "train", "val") > 0, seed


def test_content_alone_misses_re_encodes(export):
    records = export_records(export)
    grouping = group_records(records, "content", base_dir=export)
    assert len(grouping.groups) == N_CONTENTS
    near = 0
    for seed in range(5):
        splits = split_dataset(
            records, fractions=FRACTIONS, seed=seed, group_by="content", base_dir=export
        ).splits
        near += find_leakage(splits["train"], export, splits["test"], export).counts["near_image"]
    assert near > 0


def test_default_grouping_never_leaks(export):
    records = export_records(export)
    for seed in range(5):
        result = split_dataset(records, fractions=FRACTIONS, seed=seed, base_dir=export)
        grouping = result.grouping
        assert grouping.group_by == DEFAULT_GROUP_BY
        assert len(grouping.groups) == 10 and grouping.largest() == 4
        assert grouping.keys["content"].groups == N_CONTENTS
        assert grouping.keys["phash"].groups == 10
        assert all(len(part) >= 4 for part in result.splits.values())
        assert grouping.keys["patient"].records == grouping.keys["study"].records == 0
        assert image_leaks(result.splits, export, "train", "test") == 0
        assert image_leaks(result.splits, export, "train", "val") == 0
        checks = check_split_leakage(result.splits, export)
        assert [(c.train, c.test) for c in checks] == [
            ("train", "val"),
            ("train", "test"),
            ("val", "test"),
        ]
        assert all(c.image_leaks == [] for c in checks)
        raise_on_leaks(checks)  # nothing to raise
        assert sum(map(len, result.splits.values())) == N_QUESTIONS


def test_default_split_is_deterministic_and_order_free(export):
    records = export_records(export)

    def where(recs: list[Record], seed: int) -> dict[str, str]:
        splits = split_dataset(recs, fractions=FRACTIONS, seed=seed, base_dir=export).splits
        return {r.id: name for name, part in splits.items() for r in part}

    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    assert where(records, 3) == where(shuffled, 3) == where(records, 3)
    assert any(where(records, 3) != where(records, seed) for seed in range(4, 8))


def test_raise_on_leaks_names_the_records(export):
    records = export_records(export)
    splits = split_dataset(records, seed=0, group_by="path", base_dir=export).splits
    with pytest.raises(MedvlError, match=r"image leaks between splits.*test q\d+ ~ train q\d+"):
        raise_on_leaks(check_split_leakage(splits, export))


def run_cli(*argv: str) -> int:
    return main(["data", "split", *argv])


def test_cli_split_reports_keys_groups_and_zero_leaks(export, tmp_path, capsys):
    source = export / "canonical.jsonl"
    write_records(source, export_records(export))
    out, report = tmp_path / "out", tmp_path / "report.json"
    fractions = "train=0.6,val=0.2,test=0.2"
    argv = [str(source), "--out", str(out), "--report", str(report), "--fractions", fractions]
    assert run_cli(*argv) == 0
    printed = capsys.readouterr().out
    assert "grouped by content,phash,patient,study: 10 groups" in printed
    assert "content        40 records carry it -> 20 groups" in printed
    assert "phash          40 records carry it -> 10 groups" in printed
    assert printed.count(": 0 image leaks") == 3
    data = json.loads(report.read_text())
    assert data["grouping"]["groups"] == 10 and data["counts"]["test"] >= 4
    assert all(c["counts"]["exact_image"] + c["counts"]["near_image"] == 0 for c in data["leakage"])
    # The standalone leakage command agrees on the written files.
    leak = tmp_path / "leak.json"
    argv = [
        "data",
        "leakage",
        "--train",
        str(out / "train.jsonl"),
        "--test",
        str(out / "test.jsonl"),
    ]
    assert main([*argv, "--report", str(leak)]) == 0
    counts = json.loads(leak.read_text())["counts"]
    assert counts["test_records"] > 0 and counts["missing_test_images"] == 0
    assert counts["exact_image"] == counts["near_image"] == 0


def test_cli_path_grouping_fails_and_writes_nothing(export, tmp_path, capsys):
    source = export / "canonical.jsonl"
    write_records(source, export_records(export))
    out = tmp_path / "out"
    assert run_cli(str(source), "--out", str(out), "--group-by", "path") == 1
    err = capsys.readouterr().err
    assert "image leaks between splits" in err and "--allow-leaks" in err
    assert not (out / "train.jsonl").exists()
    argv = [str(source), "--out", str(out), "--group-by", "path", "--allow-leaks"]
    assert run_cli(*argv) == 0
    assert len(read_records(out / "train.jsonl")) > 0
    assert run_cli(str(source), "--out", str(out), "--group-by", "content,colour") == 2
    assert "unknown key 'colour'" in capsys.readouterr().err


# ---------------------------------------------------------------- patients and studies


def write_dicom(path: Path, patient: str, study: str, value: int) -> None:
    """A small CT slice with the given PatientID and StudyInstanceUID."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.StudyInstanceUID = "CT", patient, study
    ds.SeriesInstanceUID = generate_uid()
    pixels = np.full((8, 8), value, dtype=np.int16)
    ds.Rows, ds.Columns, ds.PhotometricInterpretation, ds.SamplesPerPixel = 8, 8, "MONOCHROME2", 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def dicom_set(tmp_path) -> tuple[list[Record], Path]:
    """Patient P1 has two studies (a, b); P3 one study in two series (d, e); f and g are
    anonymised with the placeholder 'ANONYMOUS'. Two questions per image."""
    study = {name: f"1.2.826.0.1.3680043.8.498.{n}" for n, name in enumerate("abcdefg", 1)}
    study["e"] = study["d"]
    patients = {"a": "P1", "b": "P1", "c": "P2", "d": "P3", "e": "P3"}
    for n, name in enumerate("abcdefg"):
        path = tmp_path / "dicom" / f"{name}.dcm"
        path.parent.mkdir(exist_ok=True)
        write_dicom(path, patients.get(name, "ANONYMOUS"), study[name], 100 * n)
    records = [
        record(f"{name}-{q}", [f"dicom/{name}.dcm"], dataset="ct")
        for name in "abcdefg"
        for q in (1, 2)
    ]
    return records, tmp_path


def test_dicom_patient_and_study_join_records(dicom_set):
    records, base = dicom_set
    grouping = group_records(records, base_dir=base)
    named = sorted(sorted({records[i].id[0] for i in g}) for g in grouping.groups)
    assert named == [["a", "b"], ["c"], ["d", "e"], ["f"], ["g"]]
    assert grouping.keys["content"].groups == 7
    assert grouping.keys["phash"].groups == 7  # DICOM: exact content only, as in leakage
    assert grouping.keys["patient"].records == 10  # the placeholder id joins nothing
    assert grouping.keys["patient"].groups == 3
    assert grouping.keys["study"].records == 14 and grouping.keys["study"].groups == 6
    by_content = group_records(records, "content", base_dir=base).groups
    assert len(by_content) == 7  # without patient/study, P1's two studies may separate
    by_study = group_records(records, "study", base_dir=base).groups
    assert len(by_study) == 6


def test_patient_never_in_two_splits(dicom_set):
    records, base = dicom_set
    fractions = {"train": 0.5, "test": 0.5}
    separated = False
    for seed in range(8):
        where = {}
        for name, part in split_dataset(
            records, fractions=fractions, seed=seed, base_dir=base
        ).splits.items():
            where.update({r.id[0]: name for r in part})
        assert where["a"] == where["b"] and where["d"] == where["e"], seed
        content_only = split_dataset(
            records, fractions=fractions, seed=seed, group_by="content", base_dir=base
        ).splits
        sides = {r.id[0]: name for name, part in content_only.items() for r in part}
        separated |= sides["a"] != sides["b"]
    assert separated  # content alone would have put P1's studies apart


def test_meta_patient_and_study_ids(tmp_path):
    records = [
        record("r0", [], meta={"PatientID": "7"}),
        record("r1", [], meta={"patient_id": "7"}),
        record("r2", [], dataset="slake", meta={"patient_id": "7"}),  # another dataset's "7"
        record("r3", [], meta={"subject_id": "unknown"}),
        record("r4", [], meta={"subject-id": "Unknown"}),
        record("r5", [], meta={"study_id": "s1", "case": "c9"}),
        record("r6", [], meta={"StudyInstanceUID": "s1"}),
        record("r7", [], meta={"case": "c9"}),
    ]
    groups = sorted(group_records(records, base_dir=tmp_path).groups)
    assert groups == [[0, 1], [2], [3], [4], [5, 6], [7]]
    with_case = sorted(group_records(records, "default,meta.case", base_dir=tmp_path).groups)
    assert with_case == [[0, 1], [2], [3], [4], [5, 6, 7]]


def test_unreadable_images_fall_back_to_their_path(tmp_path):
    records = [record("a", ["gone.png"]), record("b", ["./gone.png"]), record("c", ["other.png"])]
    grouping = group_records(records, base_dir=tmp_path)
    assert sorted(grouping.groups) == [[0, 1], [2]]
    assert sorted(Path(p).name for p in grouping.unreadable) == ["gone.png", "other.png"]


def test_parse_group_by():
    assert parse_group_by(None) == parse_group_by("default") == DEFAULT_GROUP_BY
    assert parse_group_by("none") == parse_group_by([]) == ()
    assert parse_group_by("path, content,path") == ("path", "content")
    assert parse_group_by("default,meta.case") == (*DEFAULT_GROUP_BY, "meta.case")
    for bad in ("colour", "meta.", "content;phash"):
        with pytest.raises(ConfigError, match="group_by: unknown key"):
            parse_group_by(bad)


@pytest.mark.parametrize(
    ("folder", "contents"),
    [("pathvqa_hf_export/data/pathvqa", 9), ("vqa_rad_hf_export/data/vqa_rad", 33)],
)
def test_real_export_split_has_no_leaks(folder, contents):
    """The real samples: PathVQA (50 JPEGs, 9 distinct contents, 8 CMYK) and VQA-RAD (50 JPEGs,
    33 contents), both one file per question; path grouping leaks, the default does not."""
    folder = REAL / folder
    if not (folder / "test.json").is_file():
        pytest.skip(f"real sample {folder} not available")
    records = export_records(folder, "test.json")
    for seed in range(3):
        result = split_dataset(records, fractions=FRACTIONS, seed=seed, base_dir=folder)
        assert len(result.grouping.groups) == contents and result.grouping.unreadable == []
        assert all(c.image_leaks == [] for c in check_split_leakage(result.splits, folder))
        assert image_leaks(result.splits, folder, "train", "test") == 0
        assert image_leaks(result.splits, folder, "train", "val") == 0
    old = split_dataset(records, fractions=FRACTIONS, seed=0, group_by="path", base_dir=folder)
    assert image_leaks(old.splits, folder, "train", "test") > 0


def test_split_and_its_check_read_each_image_once(export, monkeypatch):
    import medvl.data.media_hashes as media_hashes

    calls: list[Path] = []
    original_sha, original_phash = media_hashes.file_sha256, media_hashes.phashes
    monkeypatch.setattr(media_hashes, "file_sha256", lambda p: calls.append(p) or original_sha(p))
    monkeypatch.setattr(media_hashes, "phashes", lambda p: calls.append(p) or original_phash(p))
    hasher = media_hashes.ImageHasher()
    result = split_dataset(export_records(export), base_dir=export, hasher=hasher)
    check_split_leakage(result.splits, export, hasher=hasher)
    assert len(calls) == 2 * N_QUESTIONS and len(set(calls)) == N_QUESTIONS

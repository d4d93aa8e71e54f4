"""Open/closed VQA benchmarks: SLAKE, VQA-RAD (both layouts), PathVQA and generic exports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from medvl.data.formats import convert
from medvl.data.jsonl import read_records

FIXTURES = Path(__file__).parents[1] / "fixtures" / "formats"
REAL = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real"


def png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (10, 120, 10)).save(path)
    return path


def real(name: str) -> Path:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"real sample {path} is not available")
    return path


@pytest.fixture
def slake_dir(tmp_path):
    folder = shutil.copytree(FIXTURES / "slake" / "slake_layout", tmp_path / "slake_layout")
    for name in ("xmlab1", "xmlab2", "xmlab3"):  # xmlab999 is left missing on purpose
        png(folder / "imgs" / name / "source.jpg")
    return folder


def test_slake_test_split_english(slake_dir, tmp_path):
    out = tmp_path / "slake" / "test_en.jsonl"
    report = convert("slake", slake_dir, out, lang="en", split="test")
    records = {r.id: r for r in read_records(out)}
    assert sorted(records) == ["slake-101", "slake-102", "slake-103", "slake-105"]
    assert report.filtered == 1 and report.problems[0][0] == "slake-106"
    assert "xmlab999/source.jpg" in report.problems[0][1]
    liver = records["slake-101"]
    assert (liver.split, liver.lang, liver.answer, liver.answer_type) == (
        "test",
        "en",
        "No",
        "closed",
    )
    assert liver.question_type == "Organ"
    assert liver.images == ["../slake_layout/imgs/xmlab1/source.jpg"]
    assert liver.messages[0].content == "<image>\nDoes the picture contain liver?"
    for key in ("answer_type", "content_type", "modality", "location", "base_type", "img_id"):
        assert key in liver.meta
    assert liver.meta["qid"] == 101 and liver.meta["triple"] == ["vhead", "_", "_"]
    assert records["slake-102"].answer_type == "closed"  # CLOSED but not yes/no
    assert records["slake-103"].meta["base_type"] == "kvqa"


def test_slake_folder_reads_every_split_and_chinese(slake_dir, tmp_path):
    out = tmp_path / "all_zh.jsonl"
    report = convert("slake", slake_dir, out, lang="zh")
    records = read_records(out)
    assert [(r.id, r.split, r.answer) for r in records] == [
        ("slake-2", "train", "右肺"),
        ("slake-104", "test", "不包含"),
    ]
    assert report.read == 9 and report.filtered == 7


def test_slake_single_file_and_image_root_pointing_at_imgs(slake_dir, tmp_path):
    out = tmp_path / "val.jsonl"
    report = convert("slake", slake_dir / "validation.json", out, image_root=slake_dir / "imgs")
    (record,) = read_records(out)
    assert record.split == "validation" and record.question_type == "Plane"
    assert report.skipped == 0


def test_slake_real_sample_reports_missing_images_per_record(tmp_path):
    folder = real("slake_json_only/Slake1.0")
    report = convert("slake", folder, tmp_path / "s.jsonl", lang="en")
    assert report.read == 60 and report.filtered == 20 and report.skipped == 40
    assert report.written == 0 and not (tmp_path / "s.jsonl").exists()
    assert "40 records were skipped as broken" in report.failure()
    assert report.problems[0][0] == "slake-11934"
    assert "image not found: 'xmlab102/source.jpg'" in report.problems[0][1]


@pytest.fixture
def vqa_rad_dir(tmp_path):
    folder = shutil.copytree(FIXTURES / "vqa_rad", tmp_path / "vqa_rad")
    for name in ("synpic54610.jpg", "synpic29265.jpg"):  # synpic00000.jpg is missing
        png(folder / "VQA_RAD Image Folder" / name)
    return folder


def test_vqa_rad_original_json(vqa_rad_dir, tmp_path):
    src = vqa_rad_dir / "VQA_RAD Dataset Public.json"
    out = tmp_path / "rad.jsonl"
    report = convert("vqa_rad", src, out)
    records = {r.id: r for r in read_records(out)}
    assert sorted(records) == ["vqa_rad-1", "vqa_rad-2", "vqa_rad-3", "vqa_rad-4"]
    assert report.problems == [("vqa_rad-5", report.problems[0][1])]
    assert "synpic00000.jpg" in report.problems[0][1]
    first = records["vqa_rad-1"]
    assert (first.split, first.answer, first.answer_type, first.question_type) == (
        "train",
        "Yes",
        "closed",
        "PRES",
    )
    assert first.images == ["vqa_rad/VQA_RAD Image Folder/synpic54610.jpg"]
    assert first.meta["image_organ"] == "HEAD" and first.meta["phrase_type"] == "freeform"
    count = records["vqa_rad-4"]
    assert (count.split, count.answer, count.answer_type) == ("test", "2", "open")


def test_vqa_rad_split_filter_uses_phrase_type(vqa_rad_dir, tmp_path):
    src = vqa_rad_dir / "VQA_RAD Dataset Public.json"
    report = convert("vqa_rad", src, tmp_path / "t.jsonl", split="test")
    assert [r.id for r in read_records(tmp_path / "t.jsonl")] == ["vqa_rad-3", "vqa_rad-4"]
    assert report.filtered == 3 and report.skipped == 0


def test_vqa_rad_real_export_with_windows_paths(tmp_path):
    src = real("vqa_rad_hf_export/data/vqa_rad/test.json")
    out = tmp_path / "rad_export.jsonl"
    report = convert("vqa_rad", src, out)
    records = read_records(out)
    assert report.read == 50 and report.written == 50 and report.skipped == 0
    first = records[0]
    assert first.id == "vqa_rad-test-00000" and first.split == "test"
    assert first.images == [(src.parent / "images/test/image_00000.jpg").as_posix()]
    assert "\\" not in "".join(r.images[0] for r in records)
    assert (first.answer, first.answer_type, first.question_type) == ("yes", "closed", "YESNO")
    side = records[6]  # YESNO question type but an open, non yes/no answer
    assert (side.answer, side.answer_type) == ("left", "open")
    assert all((r.answer_type == "closed") == (r.answer in ("yes", "no")) for r in records)
    assert first.meta["image_path"] == "images\\test\\image_00000.jpg"


def test_pathvqa_real_export(tmp_path):
    src = real("pathvqa_hf_export/data/pathvqa/test.json")
    out = tmp_path / "out" / "pathvqa.jsonl"
    report = convert("pathvqa", src, out)
    records = read_records(out)
    assert report.written == 50 and report.skipped == 0
    assert [r.answer_type for r in records].count("closed") == 20
    assert records[0].dataset == "pathvqa" and records[0].answer == "neutrophils"
    assert Path(records[0].images[0]).is_file()


def test_pathvqa_export_built_by_hand_and_missing_image(tmp_path):
    folder = tmp_path / "data" / "pathvqa"
    png(folder / "images" / "train" / "p0.jpg")
    rows = [
        {"image_path": "images\\train\\p0.jpg", "question": "is this fibrosis?", "answer": "Yes"},
        {"image_path": "images/train/p0.jpg", "question": "what is present?", "answer": "fibrin"},
        {"image_path": "images/train/p1.jpg", "question": "what is it?", "answer": "tumor"},
        {"image_path": "images/train/p0.jpg", "question": "", "answer": "tumor"},
    ]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "data" / "pathvqa_train.jsonl"
    report = convert("pathvqa", folder / "train.jsonl", out)
    records = read_records(out)
    assert [(r.id, r.answer_type) for r in records] == [
        ("pathvqa-train-00000", "closed"),
        ("pathvqa-train-00001", "open"),
    ]
    assert records[0].images == ["pathvqa/images/train/p0.jpg"]
    assert [key for key, _ in report.problems] == ["pathvqa-train-00002", "pathvqa-train-00003"]
    assert "missing field" in report.problems[1][1]


def test_vqa_export_csv_names_its_dataset(tmp_path):
    png(tmp_path / "rad" / "img" / "a.png")
    (tmp_path / "rad" / "test.csv").write_text(
        "image,question,answer\nimg/a.png,is the liver enlarged?,no\nimg/a.png,what organ?,liver\n"
    )
    out = tmp_path / "e.jsonl"
    convert("vqa_export", tmp_path / "rad" / "test.csv", out, dataset="my-rad")
    records = read_records(out)
    assert [(r.id, r.dataset, r.answer_type) for r in records] == [
        ("my_rad-test-00000", "my_rad", "closed"),
        ("my_rad-test-00001", "my_rad", "open"),
    ]

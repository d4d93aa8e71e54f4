"""Readers on the files exactly as their publishers ship them (issue 13, part 1).

Regression tests for what a user found on real files: VQA-RAD's ``data_RAD/testset.json`` read
as train, ``--split`` relabelling or silently emptying a conversion, truncated files converted
with exit 0, absolute image paths. Fixtures are written here by hand in each published layout
(file names, keys, quirks); the real samples in ``../shared`` are only read, and skipped when
absent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from medvl.cli.main import main
from medvl.data.formats import convert
from medvl.data.jsonl import read_records
from medvl.errors import MedvlError
from medvl.eval.benchmarks import get_benchmark
from medvl.eval.run_data import prepare_data

REAL = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real"


def image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (90, 90, 90)).save(path)
    return path


def write_json(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=4), encoding="utf-8")
    return path


def rad_row(qid: int, name: str, question: str, answer, kind: str, phrase: str) -> dict:
    """One record in VQA-RAD's own keys and key order."""
    return {
        "qid": qid,
        "image_name": name,
        "image_organ": "CHEST",
        "answer": answer,
        "answer_type": kind,
        "question_type": "PRES",
        "question": question,
        "phrase_type": phrase,
    }


@pytest.fixture
def data_rad(tmp_path) -> Path:
    """``data_RAD/``: trainset.json, testset.json, images/ -- phrase types without ``test_``."""
    folder = tmp_path / "data_RAD"
    for name in ("synpic100.jpg", "synpic200.jpg", "synpic300.jpg"):
        image(folder / "images" / name)
    write_json(
        folder / "trainset.json",
        [
            rad_row(1, "synpic100.jpg", "Is there a pneumothorax?", "No", "CLOSED", "freeform"),
            rad_row(2, "synpic100.jpg", "Is a pneumothorax present?", "No", "CLOSED", "para"),
            rad_row(3, "synpic200.jpg", "Where is the mass?", "Left lung", "OPEN", "freeform"),
        ],
    )
    write_json(
        folder / "testset.json",
        [
            rad_row(1, "synpic300.jpg", "Is the heart enlarged?", "Yes", "CLOSED", "freeform"),
            rad_row(7, "synpic300.jpg", "How many ribs are broken?", 2, "OPEN", "para"),
        ],
    )
    (folder / "imgid2idx.json").write_text('{"synpic100.jpg": 0}')  # names no split: ignored
    return folder


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------- VQA-RAD


def test_testset_json_is_test_whatever_its_phrase_type(data_rad, tmp_path):
    out = tmp_path / "out" / "rad_test.jsonl"
    report = convert("vqa_rad", data_rad / "testset.json", out)
    records = read_records(out)
    assert [(r.id, r.split) for r in records] == [
        ("vqa_rad-test-1", "test"),
        ("vqa_rad-test-7", "test"),
    ]
    assert report.written == 2 and report.filtered == 0 and report.failure() is None
    assert records[1].answer == "2" and records[1].meta["phrase_type"] == "para"
    assert records[0].images == ["../data_RAD/images/synpic300.jpg"]


def test_split_test_keeps_the_test_file(data_rad, tmp_path):
    out = tmp_path / "t.jsonl"
    report = convert("vqa_rad", data_rad / "testset.json", out, split="test")
    assert report.written == 2 and report.filtered == 0


def test_data_rad_folder_reads_both_files_with_their_splits(data_rad, tmp_path):
    out = tmp_path / "all.jsonl"
    convert("vqa_rad", data_rad, out)
    got = [(r.id, r.split, r.answer_type) for r in read_records(out)]
    assert got == [
        ("vqa_rad-train-1", "train", "closed"),
        ("vqa_rad-train-2", "train", "closed"),
        ("vqa_rad-train-3", "train", "open"),
        ("vqa_rad-test-1", "test", "closed"),  # qid 1 is in both files: ids stay distinct
        ("vqa_rad-test-7", "test", "open"),
    ]
    report = convert("vqa_rad", data_rad, tmp_path / "test.jsonl", split="test")
    assert report.read == 2 and report.written == 2  # only testset.json is read


def test_split_filter_that_removes_everything_fails_and_says_why(data_rad, tmp_path, capsys):
    out = tmp_path / "t.jsonl"
    argv = ["data", "convert", "--format", "vqa_rad", "--input", str(data_rad / "trainset.json")]
    code, stdout, err = cli(capsys, *argv, "--out", str(out), "--split", "test")
    assert code == 2 and not out.exists()
    assert "all 3 records are split=train; --split test removed them" in err
    assert "--lang" not in err and "Traceback" not in err
    assert "filtered out 3 (3 not split=test)" in stdout


def test_split_never_relabels(data_rad, tmp_path):
    """Before: ``--split test`` on trainset.json wrote its records labelled test."""
    report = convert("vqa_rad", data_rad / "trainset.json", tmp_path / "x.jsonl", split="test")
    assert report.written == 0 and report.filtered_by == {"lang": 0, "split": 3}
    assert report.removed["split"] == {"train": 3}


def test_release_json_takes_the_split_from_phrase_type(tmp_path):
    folder = tmp_path / "VQA-RAD"
    image(folder / "VQA_RAD Image Folder" / "synpic54610.jpg")
    write_json(
        folder / "VQA_RAD Dataset Public.json",
        [
            rad_row(1, "synpic54610.jpg", "Are regions infarcted?", "Yes", "CLOSED", "freeform"),
            rad_row(2, "synpic54610.jpg", "Is it infarcted?", "Yes", "CLOSED", "test_para"),
            rad_row(3, "synpic54610.jpg", "Which lobe?", "Left", "OPEN", "test_freeform"),
        ],
    )
    out = tmp_path / "rad.jsonl"
    report = convert("vqa_rad", folder, out, split="test")  # the folder holding the release
    assert [(r.id, r.split) for r in read_records(out)] == [
        ("vqa_rad-2", "test"),
        ("vqa_rad-3", "test"),
    ]
    assert report.removed["split"] == {"train": 1}
    assert read_records(out)[0].images == ["VQA-RAD/VQA_RAD Image Folder/synpic54610.jpg"]


def hf_export(root: Path, name: str, prefix: str, splits: dict[str, list[tuple]]) -> Path:
    """The image/question/answer re-export: ``<split>.json`` + ``images/<split>/`` with
    Windows-backslash ``image_path`` and one image file per question."""
    folder = root / "data" / name
    for split, rows in splits.items():
        records = []
        for i, (question, answer, kind) in enumerate(rows):
            file = f"{prefix}_{i:05d}.jpg"
            image(folder / "images" / split / file)
            records.append(
                {
                    "image_path": f"images\\{split}\\{file}",
                    "question": question,
                    "answer": answer,
                    "question_type": "YESNO" if kind == "CLOSED" else "OTHER",
                    "answer_type": kind,
                }
            )
        write_json(folder / f"{split}.json", records)
    return folder


def test_vqa_rad_export_folder(tmp_path):
    folder = hf_export(
        tmp_path,
        "vqa_rad",
        "image",
        {
            "train": [("is there a fracture?", "no", "CLOSED")],
            "test": [("is the aorta dilated?", "yes", "CLOSED"), ("which side?", "right", "OPEN")],
        },
    )
    out = tmp_path / "converted" / "rad.jsonl"
    report = convert("vqa_rad", folder, out, split="test")
    records = read_records(out)
    assert [(r.id, r.split, r.answer_type) for r in records] == [
        ("vqa_rad-test-00000", "test", "closed"),
        ("vqa_rad-test-00001", "test", "open"),
    ]
    assert records[0].images == ["../data/vqa_rad/images/test/image_00000.jpg"]
    assert report.read == 2  # train.json was not read
    both = convert("vqa_rad", folder, tmp_path / "both.jsonl")
    assert both.written == 3


def test_real_vqa_rad_and_pathvqa_export_folders(tmp_path):
    for name, dataset in (("vqa_rad_hf_export", "vqa_rad"), ("pathvqa_hf_export", "pathvqa")):
        folder = REAL / name / "data" / dataset
        if not folder.is_dir():
            pytest.skip(f"real sample {folder} is not available")
        report = convert(dataset, folder, tmp_path / f"{dataset}.jsonl", split="test")
        records = read_records(tmp_path / f"{dataset}.jsonl")
        assert report.read == report.written == 50 and report.skipped == 0
        assert {r.split for r in records} == {"test"} and records[0].dataset == dataset
        assert all(Path(r.image_paths(tmp_path)[0]).is_file() for r in records)


# ---------------------------------------------------------------- PathVQA, SLAKE, PMC-VQA...


def test_pathvqa_export_folder_reads_every_split(tmp_path):
    folder = hf_export(
        tmp_path,
        "pathvqa",
        "pathvqa",
        {
            "train": [("is this fibrosis?", "yes", "CLOSED")],
            "validation": [("what is shown?", "fibrin", "OPEN")],
            "test": [("what have lost their nuclei?", "neutrophils", "OPEN")],
        },
    )
    out = tmp_path / "data" / "pathvqa.jsonl"
    convert("pathvqa", folder, out)
    got = [(r.id, r.split, r.dataset) for r in read_records(out)]
    assert got == [
        ("pathvqa-train-00000", "train", "pathvqa"),
        ("pathvqa-validation-00000", "validation", "pathvqa"),
        ("pathvqa-test-00000", "test", "pathvqa"),
    ]
    assert read_records(out)[0].images == ["pathvqa/images/train/pathvqa_00000.jpg"]


def test_vqa_export_folder_is_named_after_the_folder(tmp_path):
    folder = hf_export(tmp_path, "my_set", "img", {"test": [("is it normal?", "no", "CLOSED")]})
    convert("vqa_export", folder, tmp_path / "e.jsonl")
    assert read_records(tmp_path / "e.jsonl")[0].id == "my_set-test-00000"


def slake_row(qid: int, lang: str, question: str, answer: str) -> dict:
    return {
        "img_id": 1,
        "img_name": "xmlab1/source.jpg",
        "question": question,
        "answer": answer,
        "q_lang": lang,
        "location": "Abdomen",
        "modality": "CT",
        "answer_type": "CLOSED",
        "base_type": "vqa",
        "content_type": "Organ",
        "triple": ["vhead", "_", "_"],
        "qid": qid,
    }


@pytest.fixture
def slake(tmp_path) -> Path:
    folder = tmp_path / "Slake1.0"
    image(folder / "imgs" / "xmlab1" / "source.jpg")
    write_json(folder / "train.json", [slake_row(1, "en", "Is this the liver?", "Yes")])
    write_json(folder / "validation.json", [slake_row(2, "zh", "这是肝脏吗?", "是")])
    write_json(
        folder / "test.json",
        [slake_row(3, "en", "Does it show the kidney?", "No"), slake_row(4, "en", "Any?", "No")],
    )
    return folder


def test_slake_file_keeps_its_split_and_lang_filter_names_itself(slake, tmp_path, capsys):
    report = convert("slake", slake / "validation.json", tmp_path / "v.jsonl", split="test")
    assert report.written == 0 and report.removed["split"] == {"validation": 1}
    argv = ["data", "convert", "--format", "slake", "--input", str(slake / "test.json")]
    code, _, err = cli(capsys, *argv, "--out", str(tmp_path / "zh.jsonl"), "--lang", "zh")
    assert code == 2 and "all 2 records are lang=en; --lang zh removed them" in err
    assert "--split" not in err


def test_two_filters_each_say_what_they_removed(slake, tmp_path):
    report = convert("slake", slake, tmp_path / "s.jsonl", lang="zh", split="test")
    assert report.failure() == (
        f"{slake}: no records kept: all 2 records are lang=en; --lang zh removed them"
    )  # only test.json is read: the split filter removed nothing, so it is not named
    report = convert("slake", slake / "test.json", tmp_path / "s.jsonl", lang="en", split="train")
    assert "all 2 records are split=test; --split train removed them" in report.failure()


def pmc_csv(path: Path, figure: str) -> Path:
    header = "index,Figure_path,Caption,Question,Choice A,Choice B,Choice C,Choice D,Answer,split"
    row = f'0,{figure},cap,"What is shown?",A:Liver,B:Lung,C:Brain,D:Heart,B,{path.stem}'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{header}\n{row}\n", encoding="utf-8")
    return path


def test_pmc_vqa_folder_reads_the_second_version(tmp_path):
    folder = tmp_path / "PMC-VQA"
    image(folder / "images" / "PMC1_F1.jpg")
    for name in ("train.csv", "train_2.csv", "test.csv", "test_2.csv", "test_clean.csv"):
        pmc_csv(folder / name, "PMC1_F1.jpg")
    out = tmp_path / "pmc.jsonl"
    report = convert("pmc_vqa", folder, out, split="test")
    (record,) = read_records(out)
    assert (record.split, record.meta["split"], record.answer) == ("test", "test_2", "B")
    assert report.read == 1
    both = convert("pmc_vqa", folder, tmp_path / "both.jsonl")
    assert [r.meta["split"] for r in read_records(tmp_path / "both.jsonl")] == [
        "train_2",
        "test_2",
    ]
    assert both.written == 2


def test_ambiguous_or_empty_folders_are_one_line_errors(tmp_path):
    (tmp_path / "two").mkdir()
    write_json(tmp_path / "two" / "test.json", [])
    write_json(tmp_path / "two" / "test.jsonl", [])
    with pytest.raises(MedvlError, match=r"several test files \(test.json, test.jsonl\)"):
        convert("pathvqa", tmp_path / "two", tmp_path / "o.jsonl")
    (tmp_path / "none").mkdir()
    with pytest.raises(MedvlError, match="no train/validation/test file here; pass the data_RAD"):
        convert("vqa_rad", tmp_path / "none", tmp_path / "o.jsonl")
    with pytest.raises(MedvlError, match=r"no validation file here \(it holds test: test.json"):
        convert("pathvqa", tmp_path / "two" / ".." / "two", tmp_path / "o.jsonl", split="val")


def test_omnimedvqa_is_test_only_and_split_does_not_relabel(tmp_path):
    root = tmp_path / "OmniMedVQA"
    image(root / "Images" / "ACRIMA" / "a.png")
    row = {
        "question_id": "ACRIMA_0000",
        "dataset": "ACRIMA",
        "question_type": "Disease Diagnosis",
        "question": "What is shown?",
        "gt_answer": "Glaucoma",
        "image_path": "Images/ACRIMA/a.png",
        "option_A": "Normal",
        "option_B": "Glaucoma",
        "modality_type": "Fundus Photography",
    }
    write_json(root / "QA_information" / "Open-access" / "ACRIMA.json", [row])
    report = convert("omnimedvqa", root, tmp_path / "o.jsonl", split="train")
    assert report.written == 0 and report.removed["split"] == {"test": 1}


# ---------------------------------------------------------------- inputs cut short


def test_truncated_json_writes_what_was_read_and_fails(data_rad, tmp_path, capsys):
    text = (data_rad / "testset.json").read_text()
    cut = data_rad / "testset.json"
    cut.write_text(text[: text.index('"qid": 7')], encoding="utf-8")  # a download that stopped
    out = tmp_path / "t.jsonl"
    argv = ["data", "convert", "--format", "vqa_rad", "--input", str(cut), "--out", str(out)]
    code, _, err = cli(capsys, *argv)
    assert code == 2 and "the file is cut short" in err and "download or copy" in err
    assert "wrote the 1 kept" in err
    assert [r.id for r in read_records(out)] == ["vqa_rad-test-1"]


def test_truncated_last_json_line_fails_but_a_bad_middle_line_does_not(tmp_path):
    folder = hf_export(tmp_path, "p", "p", {"test": [("is it?", "yes", "CLOSED")] * 2})
    rows = json.loads((folder / "test.json").read_text())
    lines = [json.dumps(rows[0]), "{not json", json.dumps(rows[1])]
    (folder / "test.json").unlink()
    (folder / "test.jsonl").write_text("\n".join(lines) + "\n")
    report = convert("pathvqa", folder / "test.jsonl", tmp_path / "a.jsonl")
    assert report.written == 2 and report.skipped == 1 and report.failure() is None
    (folder / "test.jsonl").write_text("\n".join([lines[0], lines[2][:30]]))  # no final newline
    report = convert("pathvqa", folder / "test.jsonl", tmp_path / "b.jsonl")
    assert report.written == 1 and "the file ends inside it" in report.failure()


def test_truncated_csv_row_fails(tmp_path):
    folder = tmp_path / "PMC-VQA"
    image(folder / "images" / "PMC1_F1.jpg")
    path = pmc_csv(folder / "test_2.csv", "PMC1_F1.jpg")
    path.write_text(path.read_text() + "1,PMC1_F1.jpg,cap,Which?,A:x")
    report = convert("pmc_vqa", path, tmp_path / "p.jsonl")
    assert report.written == 1 and "cut short" in report.failure()


def test_nothing_kept_leaves_an_existing_output_alone(data_rad, tmp_path):
    out = tmp_path / "keep.jsonl"
    convert("vqa_rad", data_rad / "testset.json", out)
    before = out.read_bytes()
    report = convert("vqa_rad", data_rad / "testset.json", out, split="train")
    assert report.written == 0 and out.read_bytes() == before


# ---------------------------------------------------------------- movable image paths


def test_converted_set_moves_with_its_images_and_validates(data_rad, tmp_path, capsys):
    out = tmp_path / "converted" / "rad.jsonl"
    convert("vqa_rad", data_rad, out)
    assert read_records(out)[0].images == ["../data_RAD/images/synpic100.jpg"]
    moved = shutil.move(tmp_path, tmp_path.parent / f"{tmp_path.name}-moved")
    moved_out = Path(moved) / "converted" / "rad.jsonl"
    assert cli(capsys, "data", "validate", str(moved_out))[0] == 0  # ../ read as written
    code, stdout, _ = cli(
        capsys, "data", "validate", str(moved_out), "--root", str(moved_out.parent)
    )
    assert code == 2 and "outside_root" in stdout  # a self-contained check on request


# ---------------------------------------------------------------- eval run's data preparation


def test_eval_data_prep_reads_testset_json_as_test(data_rad, tmp_path):
    bench = get_benchmark("vqa_rad")
    data = prepare_data(bench, data_rad / "testset.json", tmp_path / "run")
    assert data.status == "converted" and data.report["written"] == 2
    folder = prepare_data(bench, data_rad, tmp_path / "run2")
    assert [r.id for r in read_records(folder.path)] == ["vqa_rad-test-1", "vqa_rad-test-7"]


def test_eval_data_prep_names_the_benchmarks_filter_not_a_flag(data_rad, tmp_path):
    bench = get_benchmark("vqa_rad")
    with pytest.raises(MedvlError) as info:
        prepare_data(bench, data_rad / "trainset.json", tmp_path / "run")
    message = str(info.value)
    assert "all 3 records are split=train; vqa_rad's split=test filter removed them" in message
    assert "--split" not in message and "--lang" not in message


FIXTURES = Path(__file__).parents[1] / "fixtures" / "formats"


@pytest.mark.parametrize(
    ("fmt", "folder", "file"),
    [
        ("huatuo", "huatuo", "medical_multimodel_evaluation_data.json"),
        ("iu_xray", "iu_xray", "annotation.json"),
    ],
)
def test_single_file_datasets_also_take_their_folder(fmt, folder, file, tmp_path):
    source = shutil.copytree(FIXTURES / folder, tmp_path / folder)
    from_folder = convert(fmt, source, tmp_path / "a.jsonl")
    from_file = convert(fmt, source / file, tmp_path / "b.jsonl")
    assert from_folder.read == from_file.read > 0  # (images absent: records are skipped)
    assert from_folder.problems == from_file.problems
    assert from_folder.written == from_file.written

"""Multiple-choice benchmarks: PMC-VQA, OmniMedVQA, GMAI-MMBench, HuatuoGPT-Vision / MedVLM-R1."""

from __future__ import annotations

import base64
import csv
import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from medvl.data.formats import convert
from medvl.data.jsonl import read_records

FIXTURES = Path(__file__).parents[1] / "fixtures" / "formats"
MCQ_TAIL = "Answer with the option's letter from the given choices directly."


def png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (40, 40, 160)).save(path)
    return path


def copy(tmp_path: Path, name: str, images: tuple[str, ...]) -> Path:
    folder = shutil.copytree(FIXTURES / name, tmp_path / name)
    for image in images:
        png(folder / image)
    return folder


def test_pmc_vqa_test_csv_strips_prefixes_and_maps_letters(tmp_path):
    folder = copy(tmp_path, "pmc_vqa", ("images/PMC1064097_F1.jpg", "images/PMC1064097_F2.jpg"))
    out = tmp_path / "pmc.jsonl"
    report = convert("pmc_vqa", folder / "test_2.csv", out)
    records = {r.id: r for r in read_records(out)}
    assert sorted(records) == ["pmc_vqa-test-0", "pmc_vqa-test-1"]
    first = records["pmc_vqa-test-0"]
    assert first.options == {
        "A": "Diffuse uptake pattern",
        "B": "Focal uptake pattern",
        "C": "No uptake",
        "D": "Ring uptake",
    }
    assert (first.answer, first.answer_type, first.split) == ("B", "closed", "test")
    assert first.images == ["pmc_vqa/images/PMC1064097_F1.jpg"]
    assert first.messages[0].content == (
        "<image>\nWhat is the uptake pattern in the breast?\nA. Diffuse uptake pattern\n"
        f"B. Focal uptake pattern\nC. No uptake\nD. Ring uptake\n{MCQ_TAIL}"
    )
    assert first.messages[1].content == "B"
    assert first.meta["Caption"] == "Bone scan, anterior view."
    second = records["pmc_vqa-test-1"]
    assert second.options["A"] == "Liver" and second.answer == "A"  # "A:Liver" as the answer
    problems = dict(report.problems)
    assert "PMC9999999_F9.jpg" in problems["pmc_vqa-test-2"]
    assert "neither a letter nor one of the choices" in problems["pmc_vqa-test-3"]
    assert "fields but the header has 10" in problems["test_2.csv:6"]


def test_pmc_vqa_train_csv_answer_label_and_answer_text(tmp_path):
    folder = copy(tmp_path, "pmc_vqa", ("images/PMC1064097_F1.jpg", "images/PMC1064097_F2.jpg"))
    out = tmp_path / "pmc_train.jsonl"
    convert("pmc_vqa", folder / "train.csv", out)
    first, second = read_records(out)
    assert (first.id, first.split, first.answer) == ("pmc_vqa-train-0", "train", "B")
    assert second.answer == "C"  # empty Answer_label: the answer text names choice C


def test_omnimedvqa_root_maps_gt_answer_to_letter(tmp_path):
    images = (
        "Images/ACRIMA/Im553_g_ACRIMA.png",
        "Images/ACRIMA/Im554_ACRIMA.png",
        "Images/Chest CT Scan/test/adenocarcinoma/000108.png",
    )
    root = copy(tmp_path, "omnimedvqa", images)
    out = tmp_path / "out" / "omni.jsonl"
    report = convert("omnimedvqa", root, out)
    records = {r.id: r for r in read_records(out)}
    assert sorted(records) == [
        "omnimedvqa-ACRIMA_0000",
        "omnimedvqa-ACRIMA_0001",
        "omnimedvqa-Chest CT Scan_0000",
    ]
    glaucoma = records["omnimedvqa-ACRIMA_0000"]
    assert glaucoma.options == {"A": "Normal", "B": "Glaucoma"} and glaucoma.answer == "B"
    assert glaucoma.question_type == "Disease Diagnosis" and glaucoma.split == "test"
    assert glaucoma.images == ["../omnimedvqa/Images/ACRIMA/Im553_g_ACRIMA.png"]
    assert glaucoma.meta["gt_answer"] == "Glaucoma" and glaucoma.meta["access"] == "Open-access"
    assert records["omnimedvqa-ACRIMA_0001"].answer == "C"  # case-insensitive text match
    chest = records["omnimedvqa-Chest CT Scan_0000"]
    assert chest.meta["modality_type"] == "CT(Computed Tomography)"
    assert report.problems[0][0] == "omnimedvqa-ACRIMA_0002"
    assert "'Cataract' matches none of the options" in report.problems[0][1]


def test_omnimedvqa_single_file_finds_the_root(tmp_path):
    root = copy(tmp_path, "omnimedvqa", ("Images/Chest CT Scan/test/adenocarcinoma/000108.png",))
    one = root / "QA_information" / "Open-access" / "Chest CT Scan.json"
    out = tmp_path / "one.jsonl"
    report = convert("omnimedvqa", one, out)
    (record,) = read_records(out)
    assert record.answer == "A" and report.skipped == 0


def b64_png(color: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def write_tsv(path: Path, rows: list[dict]) -> Path:
    columns = ["index", "question", "A", "B", "C", "D", "E", "answer", "category", "image"]
    columns += ["modality", "clinical VQA task", "department", "perceptual granularity"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns, delimiter="\t")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def gmai_row(index: int, **changes) -> dict:
    row = {
        "index": index,
        "question": "Which organ is shown?",
        "A": "Liver",
        "B": "Lung",
        "C": "Brain",
        "D": "Heart",
        "E": "None",
        "answer": "B",
        "category": "organ",
        "image": b64_png((index * 20, 0, 0)),
        "modality": "CT",
        "clinical VQA task": "Organ Recognition",
        "department": "Radiology",
        "perceptual granularity": "Image Level",
    }
    row.update(changes)
    return row


def test_gmai_mmbench_decodes_images_and_drops_empty_options(tmp_path):
    rows = [
        gmai_row(0),
        gmai_row(1, E="Kidney", answer="E", question="Which organ?\nPick one."),
        gmai_row(2, image="0"),  # reuses row 0's image, as VLMEvalKit does
        gmai_row(3, image="not base64!"),
        gmai_row(4, answer="F"),
    ]
    src = write_tsv(tmp_path / "GMAI-MMBench_VAL.tsv", rows)
    out = tmp_path / "gmai" / "val.jsonl"
    report = convert("gmai_mmbench", src, out)
    records = {r.id: r for r in read_records(out)}
    assert sorted(records) == [f"gmai_mmbench-validation-{i}" for i in range(3)]
    first = records["gmai_mmbench-validation-0"]
    assert first.options == {"A": "Liver", "B": "Lung", "C": "Brain", "D": "Heart"}
    assert (first.answer, first.split, first.question_type) == (
        "B",
        "validation",
        "Organ Recognition",
    )
    assert first.images == ["images/gmai_validation_0.png"]
    with Image.open(out.parent / first.images[0]) as image:
        assert image.size == (40, 30)
    assert first.meta["department"] == "Radiology" and first.meta["category"] == "organ"
    assert first.meta["perceptual granularity"] == "Image Level" and "image" not in first.meta
    assert records["gmai_mmbench-validation-1"].options["E"] == "Kidney"
    assert records["gmai_mmbench-validation-2"].images == first.images
    problems = dict(report.problems)
    assert "base64" in problems["gmai_mmbench-validation-3"]
    assert "answer 'F'" in problems["gmai_mmbench-validation-4"]


def test_gmai_mmbench_test_part_without_answers(tmp_path):
    rows = [gmai_row(7, answer=""), gmai_row(8, answer="")]
    src = write_tsv(tmp_path / "GMAI_mm_bench_TEST_part_1.tsv", rows)
    out = tmp_path / "t.jsonl"
    convert("gmai_mmbench", src, out, image_out_dir=tmp_path / "pics")
    records = read_records(out)
    assert [(r.split, r.answer, len(r.messages)) for r in records] == [("test", None, 1)] * 2
    assert records[0].images == ["pics/gmai_test_7.png"]


def test_huatuo_bundle_maps_answers_and_skips_open_questions(tmp_path):
    folder = copy(tmp_path, "huatuo", ("images/brain002206.png", "images/pmc_1.jpg"))
    out = tmp_path / "h.jsonl"
    report = convert("huatuo", folder / "medical_multimodel_evaluation_data.json", out)
    records = read_records(out)
    assert [(r.id, r.dataset, r.answer) for r in records] == [
        ("medical_multimodel_evaluation_data-00000", "omnimedvqa", "D"),
        ("medical_multimodel_evaluation_data-00002", "pmc_vqa_test", "B"),
    ]
    first = records[0]
    assert first.options["D"] == "Chronic infarct" and first.split == "test"
    assert first.meta["subset"] == "MR (Mag-netic Resonance Imaging)"
    assert first.meta["dataset"] == "OmniMedVQA" and first.images == [
        "huatuo/images/brain002206.png"
    ]
    problems = dict(report.problems)
    assert "open question" in problems["medical_multimodel_evaluation_data-00001"]
    assert "'Occipital' matches none" in problems["medical_multimodel_evaluation_data-00003"]


def test_medvlm_r1_problem_solution_file(tmp_path):
    folder = copy(tmp_path, "huatuo", ("images/brain002206.png", "images/ct_001.png"))
    out = tmp_path / "r1.jsonl"
    report = convert("huatuo", folder / "MRI_CT_XRAY_300each_dataset.json", out)
    first, second = read_records(out)
    assert first.answer == "D" and first.meta["problem"].startswith("What is apparent")
    assert second.options == {"A": "Liver", "B": "Spleen", "C": "Kidney"}
    assert second.answer == "C"  # from "<answer> C </answer>"
    assert (
        second.question
        == f"Which organ shows the lesion?\nA. Liver\nB. Spleen\nC. Kidney\n{MCQ_TAIL}"
    )
    assert report.problems[0][0] == "mri_ct_xray_300each_dataset-00002"
    assert "not one of the option letters" in report.problems[0][1]


@pytest.mark.parametrize("fmt", ["pmc_vqa", "omnimedvqa", "gmai_mmbench", "huatuo"])
def test_mcq_readers_refuse_a_missing_input(fmt, tmp_path):
    from medvl.errors import MedvlError

    with pytest.raises(MedvlError):
        convert(fmt, tmp_path / "nothing", tmp_path / "o.jsonl")

"""Report generation: IU-Xray / OpenI in R2Gen, XrayQwen2VL (Chinese) and simple table layouts."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

from medvl.data.formats import convert
from medvl.data.jsonl import read_records

FIXTURES = Path(__file__).parents[1] / "fixtures" / "formats"


def png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (32, 32), 200).save(path)
    return path


def iu_dir(tmp_path: Path) -> Path:
    folder = shutil.copytree(FIXTURES / "iu_xray", tmp_path / "iu_xray")
    for name in ("CXR2384_IM-0942/0.png", "CXR2384_IM-0942/1.png", "CXR1000_IM-0003/0.png"):
        png(folder / "images" / name)
    png(folder / "images" / "CXR2_IM-0652" / "0.png")
    for name in ("162_1.png", "163_1.png", "r1.png", "r2.png"):  # 404_1 and missing.png absent
        png(folder / "images" / name)
    return folder


def test_r2gen_annotation_all_splits(tmp_path):
    folder = iu_dir(tmp_path)
    out = tmp_path / "iu.jsonl"
    report = convert("iu_xray", folder / "annotation.json", out)
    records = {r.id: r for r in read_records(out)}
    assert sorted(records) == [
        "iu_xray-CXR1000_IM-0003",
        "iu_xray-CXR2384_IM-0942",
        "iu_xray-CXR2_IM-0652",
    ]
    two = records["iu_xray-CXR2384_IM-0942"]
    assert (two.split, two.lang, two.answer_type, two.question_type) == (
        "train",
        "en",
        "open",
        "report",
    )
    assert two.images == [
        "iu_xray/images/CXR2384_IM-0942/0.png",
        "iu_xray/images/CXR2384_IM-0942/1.png",
    ]
    assert two.messages[0].content == (
        "<image>\n<image>\nDescribe the findings of this chest X-ray as a radiology report."
    )
    assert two.answer == two.messages[1].content and two.answer.startswith("The heart size")
    assert two.meta["image_path"][0] == "CXR2384_IM-0942/0.png"
    assert records["iu_xray-CXR1000_IM-0003"].split == "validation"
    assert report.problems == [("iu_xray-CXR3_IM-1384", report.problems[0][1])]
    assert "missing field" in report.problems[0][1]


def test_r2gen_annotation_split_filter(tmp_path):
    folder = iu_dir(tmp_path)
    out = tmp_path / "val.jsonl"
    report = convert("iu_xray", folder / "annotation.json", out, split="val")
    assert [r.id for r in read_records(out)] == ["iu_xray-CXR1000_IM-0003"]
    assert report.filtered == 3


def test_openi_chinese_reports(tmp_path):
    folder = iu_dir(tmp_path)
    out = tmp_path / "zh" / "openi.jsonl"
    report = convert("iu_xray", folder / "openi-zh.json", out, lang="zh")
    first, second = read_records(out)
    assert (first.id, first.lang, first.split) == ("iu_xray-162_1", "zh", "train")
    assert first.messages[0].content == "<image>\n请根据这张胸部X光影像写出影像所见报告。"
    assert first.answer == "心脏大小正常，双肺清晰，未见气胸或胸腔积液。"
    assert first.images == ["../iu_xray/images/162_1.png"]
    assert second.id == "iu_xray-163_1" and second.answer.startswith("右下肺")
    assert report.problems[0][0] == "iu_xray-404_1" and "404_1" in report.problems[0][1]


def test_simple_csv_mixed_languages_and_custom_prompt(tmp_path):
    folder = iu_dir(tmp_path)
    out = tmp_path / "csv.jsonl"
    report = convert("iu_xray", folder / "reports.csv", out, prompt="Write the findings.")
    records = read_records(out)
    assert [(r.id, r.lang) for r in records] == [
        ("iu_xray-train-00000", "en"),
        ("iu_xray-train-00001", "zh"),
    ]
    assert records[0].messages[0].content == "<image>\nWrite the findings."
    assert report.skipped == 1 and "missing.png" in report.problems[0][1]
    english_only = convert("iu_xray", folder / "reports.csv", tmp_path / "en.jsonl", lang="en")
    assert english_only.written == 1 and english_only.filtered == 1

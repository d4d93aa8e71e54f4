"""Conversation formats: LLaVA/2U1 and LLaMA-Factory sharegpt in; LLaVA, sharegpt and TRL out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from medvl.data.formats import convert, to_llava, to_sharegpt, to_trl
from medvl.data.formats.chat import normalise_placeholders
from medvl.data.jsonl import read_records
from medvl.data.record import Message, Record

FIXTURES = Path(__file__).parents[1] / "fixtures" / "formats"


def png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (120, 40, 40)).save(path)
    return path


def fixture(tmp_path: Path, name: str, images: tuple[str, ...]) -> Path:
    """Copy a fixture folder to ``tmp_path/name`` and draw its images there."""
    folder = shutil.copytree(FIXTURES / name, tmp_path / name)
    for image in images:
        png(folder / image)
    return folder


@pytest.fixture
def llava_dir(tmp_path):
    images = ("17479602_F1.jpg", "synpic54610.jpg", "figures/PMC100_F2.jpg")
    return fixture(tmp_path, "llava", (*images, "PMC8253873_Fig6_46.jpg"))


def test_llava_reads_llava_med_and_qilin_records(llava_dir, tmp_path):
    out = tmp_path / "out" / "llava.jsonl"
    report = convert("llava", llava_dir / "llava_med_instruct_sample.json", out)
    records = {r.id: r for r in read_records(out)}
    assert report.read == 8 and report.written == 5 and report.skipped == 3
    multi = records["17479602_F1"]
    assert multi.dataset == "llava_med_instruct_sample" and multi.split == "train"
    assert multi.images == ["../llava/17479602_F1.jpg"]
    assert multi.messages[0].content == (
        "<image>\nWhat is the purpose of the cranial MRI in this case?"
    )
    assert [m.role for m in multi.messages] == ["user", "assistant", "user", "assistant"]
    assert multi.answer is None  # multi-turn: no single gold answer
    gt = records["1"]
    assert gt.messages[0].content == "<image>\nAre regions of the brain infarcted?"
    assert (gt.answer, gt.answer_type, gt.meta) == ("Yes", "closed", {"answer_type": "CLOSED"})
    caption = records["PMC100_F2"]
    assert caption.images == ["../llava/figures/PMC100_F2.jpg"]
    assert caption.messages[0].content == "<image>\nDescribe the image concisely."
    assert records["PMC200_pair"].messages[0].content.startswith("<image>\n<image>\nCompare")
    assert records["qilin-PMC8253873_Fig6_46"].lang == "zh"
    reasons = dict(report.problems)
    assert "image not found: 'not_there.jpg'" in reasons["PMC300_missing"]
    assert "holds an <image>" in reasons["PMC400_gpt_image"]
    assert "1 image(s) but 2 <image>" in reasons["PMC500_two_placeholders"]


def test_llava_lang_filter_keeps_only_chinese(llava_dir, tmp_path):
    out = tmp_path / "zh.jsonl"
    report = convert("llava", llava_dir / "llava_med_instruct_sample.json", out, lang="zh")
    assert [r.id for r in read_records(out)] == ["qilin-PMC8253873_Fig6_46"]
    assert report.filtered == 7 and report.skipped == 0


def test_placeholder_normalisation():
    assert normalise_placeholders("Q?\n<image>") == "<image>\nQ?"
    assert normalise_placeholders("<image>Q?") == "<image>\nQ?"
    assert normalise_placeholders("<image>\n<image>\nQ") == "<image>\n<image>\nQ"
    assert (
        normalise_placeholders("Compare <image> with <image>.") == "Compare <image> with <image>."
    )
    assert normalise_placeholders("<image>") == "<image>"


def test_sharegpt_xrayqwen2vl_file_with_foreign_absolute_paths(tmp_path):
    folder = fixture(tmp_path, "sharegpt", ("images2/162_1.png", "images2/163_1.png"))
    out = tmp_path / "x.jsonl"
    src = folder / "openai-zh-llamafactory-qwen2vl-prompt.json"
    report = convert("sharegpt", src, out, image_root=folder / "images2")
    records = read_records(out)
    assert report.written == 2 and report.skipped == 1
    assert "999_1.png" in report.problems[0][1]
    first, third = records
    assert first.id == "openai_zh_llamafactory_qwen2vl_prompt-0" and first.lang == "zh"
    assert first.images == ["sharegpt/images2/162_1.png"]
    assert first.messages[0].content == "<image>\n通过这张胸部X光影像可以诊断出什么？"
    assert first.answer == "心影大小正常，双肺未见明显实变。"
    assert third.messages[0] == Message("system", "You are a radiologist.")
    assert third.lang == "en"


def test_sharegpt_openai_style_messages_and_tool_turns(tmp_path):
    folder = fixture(tmp_path, "sharegpt", ("imgs/a.png", "imgs/b.png"))
    out = tmp_path / "m.jsonl"
    report = convert("sharegpt", folder / "med_messages.jsonl", out)
    records = {r.id: r for r in read_records(out)}
    assert set(records) == {"m-1", "m-2"}
    assert records["m-1"].messages[0].role == "system"
    assert records["m-1"].messages[1].content == "<image>\nIs there a fracture?"
    assert records["m-2"].messages[0].content == "Compare <image> with <image>."
    assert report.problems[0][0] == "m-3" and "tool turns" in report.problems[0][1]


def test_sharegpt_tags_from_dataset_info(tmp_path):
    folder = fixture(tmp_path, "sharegpt", ("imgs/a.png",))
    out = tmp_path / "c.jsonl"
    info = folder / "dataset_info.json"
    convert("sharegpt", folder / "med_custom.json", out, dataset_info=info)
    (record,) = read_records(out)
    assert record.messages[1] == Message("assistant", "MRI")
    assert record.images == ["sharegpt/imgs/a.png"]
    out2 = tmp_path / "c2.jsonl"
    tags = {"role_tag": "speaker", "content_tag": "text", "user_tag": "doctor"}
    report = convert(
        "sharegpt", folder / "med_custom.json", out2, messages="dialog", **tags
    )  # assistant_tag left out: not 'gpt', so the turn is refused
    assert report.skipped == 1 and "speaker='model'" in report.problems[0][1]


def canonical(tmp_path: Path) -> tuple[list[Record], Path]:
    base = tmp_path / "canon"
    png(base / "imgs" / "a.png")
    png(base / "imgs" / "b.png")
    records = [
        Record(
            id="c-1",
            dataset="slake",
            split="test",
            lang="en",
            images=["imgs/a.png"],
            messages=[
                Message("system", "You are a radiologist."),
                Message("user", "<image>\nWhich organ?\nA. Lung\nB. Liver"),
                Message("assistant", "A"),
            ],
            answer="A",
            options={"A": "Lung", "B": "Liver"},
            answer_type="closed",
            question_type="organ",
            meta={"qid": 7},
        ),
        Record(
            id="c-2",
            dataset="slake",
            split="test",
            lang="zh",
            images=["imgs/a.png", "imgs/b.png"],
            messages=[Message("user", "<image>\n<image>\n比较两张图像。")],
        ),
    ]
    return records, base


def test_llava_round_trip_keeps_messages_and_images(tmp_path):
    records, base = canonical(tmp_path)
    exported = tmp_path / "export" / "train.json"
    assert to_llava(records, exported, base) == 2
    rows = json.loads(exported.read_text())
    assert rows[0]["image"] == "../canon/imgs/a.png" and rows[0]["system"].startswith("You")
    assert rows[0]["conversations"][1] == {"from": "gpt", "value": "A"}
    report = convert("llava", exported, tmp_path / "back" / "train.jsonl")
    back = read_records(tmp_path / "back" / "train.jsonl")
    assert report.written == 2
    for before, after in zip(records, back, strict=True):
        assert after.messages == before.messages and after.id == before.id
        resolved = [p.resolve() for p in after.image_paths(tmp_path / "back")]
        assert resolved == [p.resolve() for p in before.image_paths(base)]
        assert (after.answer, after.options, after.answer_type) == (
            before.answer,
            before.options,
            before.answer_type,
        )
        assert (after.lang, after.question_type, after.meta) == (
            before.lang,
            before.question_type,
            before.meta,
        )


def test_sharegpt_writer_and_its_dataset_info(tmp_path):
    records, base = canonical(tmp_path)
    out = tmp_path / "lf" / "med.json"
    info = to_sharegpt(records, out, base)
    assert info["med"]["file_name"] == "med.json"
    assert info["med"]["tags"]["role_tag"] == "role"
    assert json.loads(out.with_suffix(".dataset_info.json").read_text()) == info
    rows = json.loads(out.read_text())
    assert rows[1]["images"] == ["../canon/imgs/a.png", "../canon/imgs/b.png"]
    convert(
        "sharegpt", out, tmp_path / "back.jsonl", dataset_info=out.with_suffix(".dataset_info.json")
    )
    back = read_records(tmp_path / "back.jsonl")
    assert [r.messages for r in back] == [r.messages for r in records]


def test_to_trl_builds_content_lists(tmp_path):
    records, base = canonical(tmp_path)
    dataset = to_trl(records, base, decode_images=False)
    assert dataset.column_names[:3] == ["id", "dataset", "split"]
    first = dataset[0]
    assert first["messages"][1]["content"] == [
        {"type": "image", "text": None},
        {"type": "text", "text": "Which organ?\nA. Lung\nB. Liver"},
    ]
    assert first["messages"][2]["content"] == [{"type": "text", "text": "A"}]
    assert first["images"] == [str((base / "imgs" / "a.png").absolute())]
    assert json.loads(first["options"]) == {"A": "Lung", "B": "Liver"}
    assert dataset[1]["options"] is None and dataset[1]["answer"] is None
    decoded = to_trl(records, base)
    image = decoded[1]["images"][1]
    assert isinstance(image, Image.Image) and image.size == (32, 32)

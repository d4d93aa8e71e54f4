"""The shared machinery of the format readers: tolerant loading, image paths, the convert API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from medvl.data.formats import FORMATS, convert, get_format, list_formats
from medvl.data.formats.base import (
    ReadContext,
    SkipRecord,
    closed_or_open,
    guess_lang,
    guess_split,
    letter_for,
    normalise_image_path,
)
from medvl.data.formats.sources import json_rows, table_rows
from medvl.data.jsonl import read_records
from medvl.data.paths import output_path, rebase_images
from medvl.data.record import Record
from medvl.errors import ConfigError, MedvlError, UnknownNameError


def png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (90, 90, 90)).save(path)
    return path


def llava_row(record_id: str, image: str) -> dict:
    turns = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "CT"}]
    return {"id": record_id, "image": image, "conversations": turns}


def test_list_formats_names_every_reader_once():
    names = [name for name, _ in list_formats()]
    assert names == list(FORMATS)
    for expected in ("llava", "sharegpt", "slake", "vqa_rad", "pathvqa", "vqa_export"):
        assert expected in names
    for expected in ("pmc_vqa", "omnimedvqa", "gmai_mmbench", "huatuo", "iu_xray"):
        assert expected in names
    assert all(desc and "\n" not in desc for _, desc in list_formats())


def test_unknown_format_lists_the_known_ones(tmp_path):
    with pytest.raises(UnknownNameError) as info:
        convert("llava2", tmp_path / "x.json", tmp_path / "out.jsonl")
    assert info.value.kind == "format" and "slake" in info.value.allowed
    assert get_format("slake").name == "slake"


def test_bad_arguments_raise_actionable_errors(tmp_path):
    src = tmp_path / "a.json"
    src.write_text("[]")
    with pytest.raises(MedvlError, match="no such file"):
        convert("llava", tmp_path / "missing.json", tmp_path / "out.jsonl")
    with pytest.raises(ConfigError, match="has no option 'colour'"):
        convert("llava", src, tmp_path / "out.jsonl", colour="red")
    with pytest.raises(ConfigError, match="language code"):
        convert("llava", src, tmp_path / "out.jsonl", lang="English")
    with pytest.raises(ConfigError, match="is the input"):
        convert("llava", src, src)


def test_json_list_truncated_keeps_the_records_before_the_cut(tmp_path):
    png(tmp_path / "a.png")
    text = json.dumps([llava_row(f"r{i}", "a.png") for i in range(3)])
    src = tmp_path / "cut.json"
    src.write_text(text[: text.rindex('{"id": "r2"') + 20])
    report = convert("llava", src, tmp_path / "out.jsonl")
    assert [r.id for r in read_records(tmp_path / "out.jsonl")] == ["r0", "r1"]
    assert report.read == 3 and report.written == 2 and report.skipped == 1
    key, reason = report.problems[0]
    assert key == "cut.json[2]" and "not valid JSON" in reason


def test_jsonl_bad_lines_are_reported_by_line(tmp_path):
    png(tmp_path / "a.png")
    good = json.dumps(llava_row("ok", "a.png")).encode()
    bad_utf8 = json.dumps(llava_row("latin", "a.png")).encode().replace(b"What", b"Wh\xe4t")
    truncated = good[:30]
    (tmp_path / "x.jsonl").write_bytes(b"\n".join([good, truncated, b"", bad_utf8]) + b"\n")
    report = convert("llava", tmp_path / "x.jsonl", tmp_path / "out.jsonl")
    assert report.written == 1 and report.skipped == 2
    reasons = dict(report.problems)
    assert "not valid JSON" in reasons["x.jsonl:2"]
    assert "UTF-8" in reasons["x.jsonl:4"]


def test_duplicate_ids_are_renamed_not_lost(tmp_path):
    png(tmp_path / "a.png")
    rows = [llava_row("same", "a.png"), llava_row("same", "a.png")]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    report = convert("llava", tmp_path / "d.json", tmp_path / "out.jsonl")
    assert [r.id for r in read_records(tmp_path / "out.jsonl")] == ["same", "same#2"]
    assert report.renamed == 1 and "renamed 1" in report.summary()


def test_table_rows_report_short_and_long_lines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,c\n1,2,3\n1,2\n1,2,3,4\n")
    items = list(table_rows(path))
    assert items[0] == ("t.csv:2", {"a": "1", "b": "2", "c": "3"})
    assert items[1].key == "t.csv:3" and "2 fields" in items[1].reason
    assert items[2].key == "t.csv:4" and "4 fields" in items[2].reason


def test_json_rows_read_lists_and_lines(tmp_path):
    (tmp_path / "l.json").write_text('[{"a": 1}, {"a": 2}]')
    (tmp_path / "l.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n')
    assert list(json_rows(tmp_path / "l.json")) == [
        ("l.json[0]", {"a": 1}),
        ("l.json[1]", {"a": 2}),
    ]
    assert [k for k, _ in json_rows(tmp_path / "l.jsonl")] == ["l.jsonl:1", "l.jsonl:3"]


def test_image_paths_are_normalised_and_rebased(tmp_path):
    image = png(tmp_path / "data" / "images" / "test" / "a.jpg")
    ctx = ReadContext(
        input=tmp_path / "data" / "test.json",
        out_dir=tmp_path / "out",
        image_root=tmp_path / "data",
        image_out_dir=tmp_path / "out" / "images",
    )
    assert normalise_image_path("images\\test\\a.jpg") == "images/test/a.jpg"
    # relative to the output's folder, ../ included, so the two move together
    assert ctx.image("images\\test\\a.jpg") == "../data/images/test/a.jpg"
    assert ctx.image("test/a.jpg", subdirs=("images",)) == "../data/images/test/a.jpg"
    assert ctx.image("/elsewhere/machine/test/a.jpg", subdirs=("images",)).endswith("test/a.jpg")
    assert ctx.image(str(image)) == "../data/images/test/a.jpg"
    with pytest.raises(SkipRecord, match="image not found"):
        ctx.image("images/test/b.jpg")
    assert output_path(Path("/usr/share/x.png"), tmp_path) == "/usr/share/x.png"


def test_rebase_images_keeps_paths_right_from_the_new_folder(tmp_path):
    image = png(tmp_path / "data" / "images" / "a.png")
    turns = [{"role": "user", "content": "<image>\nWhat?"}, {"role": "assistant", "content": "x"}]
    records = [
        Record(
            id="a", dataset="d", split="test", lang="en", images=["images/a.png"], messages=turns
        )
    ]
    # relative to the new folder where the two share one, as a converter writes them
    assert rebase_images(records, tmp_path / "data", tmp_path / "out")[0].images == [
        "../data/images/a.png"
    ]
    assert rebase_images(records, tmp_path / "data", tmp_path)[0].images == ["data/images/a.png"]
    # None: absolute, for records read from another folder than their file's
    assert rebase_images(records, tmp_path / "data", None)[0].images == [str(image.resolve())]
    assert records[0].images == ["images/a.png"]  # the originals are left alone


def test_small_helpers():
    assert closed_or_open("CLOSED ") == "closed" and closed_or_open("open-ended") == "open"
    assert closed_or_open(None, "Yes") == "closed" and closed_or_open(None, "left") == "open"
    assert closed_or_open(None) is None
    assert guess_lang("Is there a nodule?") == "en" and guess_lang("CT 显示结节") == "zh"
    assert guess_split(Path("GMAI-MMBench_VAL.tsv"), "x") == "validation"
    assert guess_split(Path("test_2.csv"), "x") == "test"
    assert guess_split(Path("medical_multimodel_evaluation_data.json"), "x") == "x"
    assert guess_split(Path("data_RAD/testset.json"), "x") == "test"
    assert guess_split(Path("data_RAD/trainset.json"), "x") == "train"
    assert guess_split(Path("VQA_RAD Dataset Public.json"), "x") == "x"
    assert letter_for(" chronic  INFARCT", {"A": "Acute", "B": "Chronic infarct"}) == "B"
    with pytest.raises(SkipRecord, match="matches none"):
        letter_for("Cataract", {"A": "Normal"})


def test_jsonl_lines_split_only_on_newlines(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text('{"a": "x\u2028y\x85z"}\r\n{"a": 2}\n', encoding="utf-8")
    assert list(json_rows(path)) == [("u.jsonl:1", {"a": "x\u2028y\x85z"}), ("u.jsonl:2", {"a": 2})]

"""Converter faults: a file of another format, an empty file and a truncated JSON list exit 2
with one line naming the file and the cause (never exit 0 after writing nothing or part);
the fixed input then converts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from medvl.cli.main import main
from medvl.data.jsonl import read_records


def llava_rows(n: int) -> list[dict]:
    turns = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "CT"}]
    return [{"id": f"r{i}", "image": "a.png", "conversations": turns} for i in range(n)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    Image.new("RGB", (32, 32), (90, 90, 90)).save(tmp_path / "a.png")
    return tmp_path


def convert(src: Path, out: Path) -> int:
    return main(["data", "convert", "--format", "llava", "--input", str(src), "--out", str(out)])


def error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if "medvl: error:" in line]
    assert len(err) == 1, err
    assert err[0].startswith("medvl: error: ")
    return err[0]


def test_wrong_format_writes_nothing_and_exits_2(folder, capsys):
    src = folder / "table.csv"
    src.write_text("question,answer\nWhat?,CT\n", encoding="utf-8")
    assert convert(src, folder / "out.jsonl") == 2
    line = error_line(capsys)
    assert f"{src}: no records kept" in line and "not valid JSON" in line
    assert not (folder / "out.jsonl").exists()


def test_empty_file_exits_2(folder, capsys):
    src = folder / "empty.json"
    src.write_text("", encoding="utf-8")
    assert convert(src, folder / "out.jsonl") == 2
    assert f"{src}: no records found in it" in error_line(capsys)


def test_truncated_json_keeps_the_head_exits_2_and_the_full_file_converts(folder, capsys):
    text = json.dumps(llava_rows(3))
    src = folder / "cut.json"
    src.write_text(text[: text.rindex('{"id": "r2"') + 20], encoding="utf-8")
    out = folder / "out.jsonl"
    assert convert(src, out) == 2
    line = error_line(capsys)
    assert f"{src}: the file is cut short" in line and "download or copy the file again" in line
    assert [r.id for r in read_records(out)] == ["r0", "r1"]
    src.write_text(text, encoding="utf-8")
    assert convert(src, out) == 0
    assert [r.id for r in read_records(out)] == ["r0", "r1", "r2"]

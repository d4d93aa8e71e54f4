"""The canonical record: validation names the field; JSONL round-trips; errors name file:line."""

from __future__ import annotations

import json

import pytest

from medvl.data.jsonl import check_jsonl, read_records, write_records
from medvl.data.record import FieldError, Message, Record
from medvl.errors import RecordError


def make(**changes) -> dict:
    data = {
        "id": "r1",
        "dataset": "slake",
        "split": "test",
        "lang": "en",
        "images": ["imgs/a.png"],
        "messages": [
            {"role": "system", "content": "You are a radiologist."},
            {"role": "user", "content": "<image>\nIs there a nodule?"},
            {"role": "assistant", "content": "yes"},
        ],
        "answer": "yes",
        "options": None,
        "answer_type": "closed",
        "question_type": "presence",
        "meta": {"modality": "CT"},
    }
    data.update(changes)
    return data


def test_round_trip_keeps_every_field(tmp_path):
    records = [Record.from_dict(make(id=f"r{i}")) for i in range(3)]
    path = tmp_path / "sub" / "data.jsonl"
    assert write_records(path, records) == 3
    loaded = read_records(path)
    assert [r.to_dict() for r in loaded] == [r.to_dict() for r in records]
    assert loaded[0].question == "Is there a nodule?"
    assert loaded[0].reference == "yes"
    assert loaded[0].image_paths(path.parent) == [path.parent / "imgs/a.png"]
    assert isinstance(loaded[0].messages[0], Message)


def test_chinese_text_is_written_as_utf8(tmp_path):
    record = Record.from_dict(
        make(
            lang="zh",
            messages=[{"role": "user", "content": "<image>\n图中有结节吗？"}],
            answer="是",
        )
    )
    path = tmp_path / "zh.jsonl"
    write_records(path, [record])
    assert "图中有结节吗" in path.read_text(encoding="utf-8")
    assert read_records(path)[0].answer == "是"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"images": ["a.png", "b.png"]}, "images"),
        ({"images": []}, "images"),
        ({"id": ""}, "id"),
        ({"lang": "English"}, "lang"),
        ({"answer_type": "close-ended"}, "answer_type"),
        ({"options": {"A": "lung", "B": "liver"}, "answer": "C"}, "answer"),
        ({"options": {"a": "lung"}, "answer": None}, "options.a"),
        ({"messages": [{"role": "doctor", "content": "<image>x"}]}, "messages[0].role"),
        (
            {
                "messages": [
                    {"role": "user", "content": "<image>x"},
                    {"role": "system", "content": "s"},
                ]
            },
            "messages[1].role",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "<image>"},
                ]
            },
            "messages[1].content",
        ),
        ({"messages": [{"role": "user", "text": "<image>"}]}, "messages[0].text"),
        ({"messages": []}, "messages"),
        ({"meta": []}, "meta"),
        ({"modality": "CT"}, "modality"),
    ],
)
def test_invalid_fields_are_named(changes, field):
    with pytest.raises(FieldError) as info:
        Record.from_dict(make(**changes))
    assert info.value.field == field


def test_missing_required_field_is_named():
    data = make()
    del data["split"]
    with pytest.raises(FieldError, match="'split': is required"):
        Record.from_dict(data)


def test_reader_error_names_file_line_id_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(make(id="ok1")), "", json.dumps(make(id="bad", images=[]))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RecordError) as info:
        read_records(path)
    message = str(info.value)
    assert f"{path}:3" in message
    assert "'bad'" in message
    assert "field 'images'" in message


def test_check_collects_every_problem_and_keeps_valid_records(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps(make(id="a")),
        "{not json",
        json.dumps(make(id="b", answer_type="maybe")),
        json.dumps(make(id="a")),
        json.dumps(make(id="c")),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = check_jsonl(path)
    assert [r.id for r in result.records] == ["a", "c"]
    assert [(p.line, p.field) for p in result.problems] == [
        (2, "<json>"),
        (3, "answer_type"),
        (4, "id"),
    ]
    assert "duplicate id (first seen on line 1)" in str(result.problems[2])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(RecordError, match="no such file"):
        read_records(tmp_path / "nope.jsonl")


def test_write_is_atomic_and_refuses_duplicates(tmp_path):
    path = tmp_path / "out.jsonl"
    write_records(path, [Record.from_dict(make(id="keep"))])
    before = path.read_bytes()
    with pytest.raises(RecordError, match="duplicate id"):
        write_records(path, [Record.from_dict(make(id="x")), Record.from_dict(make(id="x"))])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_non_utf8_line_is_a_named_problem_and_others_survive(tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = json.dumps(make(id="a")).encode()
    path.write_bytes(
        b"\xef\xbb\xbf"
        + good
        + b"\n"
        + b'{"id": "\xff\xfe"}\n'
        + good.replace(b'"a"', b'"b"')
        + b"\n"
    )
    result = check_jsonl(path)
    assert [r.id for r in result.records] == ["a", "b"]
    assert [(p.line, p.field) for p in result.problems] == [(2, "<encoding>")]
    with pytest.raises(RecordError, match=r"mixed\.jsonl:2: field '<encoding>': not UTF-8"):
        read_records(path)


def test_nan_in_meta_is_refused_with_the_record_id(tmp_path):
    record = Record.from_dict(make(id="nan", meta={"score": float("nan")}))
    with pytest.raises(RecordError, match=r"record 'nan'.*NaN"):
        write_records(tmp_path / "x.jsonl", [record])


def test_written_files_get_normal_permissions(tmp_path):
    import os
    import stat

    path = tmp_path / "perm.jsonl"
    write_records(path, [Record.from_dict(make())])
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask

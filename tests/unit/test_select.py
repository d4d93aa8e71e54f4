"""Record selection: the whitelisted --where language, seeded sampling, and convert's filters."""

from __future__ import annotations

import json
import random
import re

import pytest
from PIL import Image

from medvl.data.formats import convert
from medvl.data.jsonl import read_records
from medvl.data.record import Message, Record
from medvl.data.select import Selection, parse_where, sample_records
from medvl.errors import ConfigError, MedvlError


def rec(i: int, **kw) -> Record:
    fields = {
        "id": f"r{i:02d}",
        "dataset": "d",
        "split": "test",
        "lang": "en",
        "images": [],
        "messages": [Message("user", f"question {i}?"), Message("assistant", "yes")],
        "answer": "yes",
        "answer_type": "closed",
        **kw,
    }
    return Record(**fields)


RECORDS = [
    rec(0, meta={"subset": "MRI", "modality": "MRI", "patient": "p1", "age": 40}),
    rec(1, meta={"subset": "CT", "modality": "CT", "age": 70}, lang="zh"),
    rec(2, meta={"subset": "MRI", "modality": "MRI", "clinical vqa task": "diagnosis"}),
    rec(3, meta={"subset": "X-Ray"}, answer_type="open", answer="a mass"),
    rec(4, meta={"age": "unknown"}),
]


def ids(expr: str) -> list[int]:
    where = parse_where(expr)
    return [int(r.id[1:]) for r in RECORDS if where(r)]


def test_the_documented_examples():
    assert ids('meta.subset == "MRI"') == [0, 2]
    assert ids('answer_type == "closed" and lang != "zh"') == [0, 2, 4]
    assert ids('meta.modality in ["CT", "MRI"]') == [0, 1, 2]
    assert ids("not meta.patient") == [1, 2, 3, 4]  # a missing key is None


def test_missing_fields_nesting_subscripts_and_order():
    assert ids("meta.modality == None") == [3, 4]
    assert ids("meta.modality != None or meta.subset == 'X-Ray'") == [0, 1, 2, 3]
    assert ids("meta.a.b.c == None") == [0, 1, 2, 3, 4]  # nested missing keys are None too
    assert ids('meta["clinical vqa task"] == "diagnosis"') == [2]
    assert ids("meta.age >= 50") == [1]  # "unknown" >= 50 and None >= 50 are false, not errors
    assert ids("40 <= meta.age < 50") == [0]
    assert ids('meta.subset not in ("MRI", "CT")') == [3, 4]
    assert ids("'question 3' in question") == [3]  # the record's question text
    assert ids("answer == 'a mass' and not (lang == 'zh')") == [3]
    assert ids("meta.age == -1") == []


@pytest.mark.parametrize(
    ("expr", "part"),
    [
        ('__import__("os").system("true")', '__import__("os").system("true")'),
        ("meta.subset.upper() == 'MRI'", "meta.subset.upper()"),
        ("lambda: 1", "lambda: 1"),
        ("meta_subset == 'MRI'", "meta_subset"),
        ("meta.age + 1 > 3", "meta.age + 1"),
        ("[x for x in meta]", "[x for x in meta]"),
        ("meta.subset in [lang]", "lang"),
        ("meta.x is None", "meta.x is None"),
    ],
)
def test_anything_outside_the_whitelist_is_refused_by_name(expr, part):
    with pytest.raises(ConfigError) as info:
        parse_where(expr)
    message = str(info.value)
    assert message.startswith(f"--where {expr!r}: {part!r}") and "allowed:" in message


def test_syntax_errors_say_so():
    with pytest.raises(ConfigError, match=r"not a valid expression .*quote text values"):
        parse_where("meta.subset == MRI and")
    with pytest.raises(ConfigError, match="step 'x': where:"):
        Selection(where="meta.subset = 'MRI'", label="step 'x': where:")


def test_sample_is_seeded_order_free_and_keeps_input_order():
    records = [rec(i) for i in range(40)]
    first = sample_records(records, 10, seed=3)
    assert len(first) == 10 and first == sorted(first, key=lambda r: r.id)  # input order
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    again = sample_records(shuffled, 10, seed=3)
    assert {r.id for r in again} == {r.id for r in first}  # the file's order does not matter
    assert [r.id for r in again] == [r.id for r in shuffled if r in again]
    assert {r.id for r in sample_records(records, 10, seed=4)} != {r.id for r in first}
    assert sample_records(records, 99, seed=0) == records
    # the draw itself: random.Random(seed).sample over the id-sorted positions
    expected = sorted(random.Random(3).sample(range(40), 10))
    assert [int(r.id[1:]) for r in first] == expected


def test_selection_counts_and_the_empty_message():
    selected = Selection(where='meta.subset == "MRI"', sample=1, seed=0).apply(RECORDS)
    assert (selected.read, selected.matched, len(selected.records)) == (5, 2, 1)
    assert selected.summary("f.jsonl") == (
        "selected 1 of 5 records of f.jsonl (--where 'meta.subset == \"MRI\"': 2 match; "
        "--sample 1 --seed 0)"
    )
    empty = Selection(where='meta.subset == "PET"').apply(RECORDS)
    with pytest.raises(MedvlError) as info:
        empty.check("f.jsonl")
    assert str(info.value) == (
        "f.jsonl: no records kept: all 5 records are 1 meta.subset=CT, 2 meta.subset=MRI, "
        "1 meta.subset=None, 1 meta.subset=X-Ray; --where 'meta.subset == \"PET\"' removed them"
    )
    with pytest.raises(ConfigError, match="--sample must be a positive"):
        Selection(sample=0)


def llava_file(tmp_path):
    """A hand-written LLaVA-Med style file: three records, one image."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    rows = [
        {
            "id": f"q{i}",
            "image": "a.png",
            "conversations": [
                {"from": "human", "value": f"<image>\nIs it {m}?"},
                {"from": "gpt", "value": "yes"},
            ],
            "meta": {"subset": m},
        }
        for i, m in enumerate(["MRI", "CT", "MRI"])
    ]
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_convert_where_and_sample(tmp_path):
    source = llava_file(tmp_path)
    out = tmp_path / "out.jsonl"
    report = convert("llava", source, out, where='meta.subset == "MRI"')
    assert [r.id for r in read_records(out)] == ["q0", "q2"]
    assert report.filtered_by["where"] == 1
    assert "filtered out 1 (1 not matching --where 'meta.subset == \"MRI\"')" in report.summary()
    report = convert("llava", source, out, where='meta.subset == "MRI"', sample=1, seed=5)
    assert report.written == 1 and report.sampled_out == 1
    assert "sampled 1 of 2 (--sample 1 --seed 5)" in report.summary()
    report = convert("llava", source, tmp_path / "none.jsonl", where="meta.subset == 'PET'")
    assert report.failure() == (
        f"{source}: no records kept: all 3 records are 1 meta.subset=CT, 2 meta.subset=MRI; "
        "--where 'meta.subset == '\"'\"'PET'\"'\"'' removed them"
    )
    assert not (tmp_path / "none.jsonl").exists()
    with pytest.raises(ConfigError, match=re.escape("'meta.x()'")):
        convert("llava", source, out, where="meta.x()")

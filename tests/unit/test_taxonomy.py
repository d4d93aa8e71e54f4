"""Question taxonomy: literal questions in English and Chinese, dataset labels, and agreement with
SLAKE's and VQA-RAD's own answer types on the real samples in ../shared (skipped when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvl.data.record import Record
from medvl.data.taxonomy import (
    QUESTION_TYPES,
    answer_type_agreement,
    classify_answer_type,
    classify_question_type,
    classify_records,
    is_yes_no_question,
    map_answer_label,
    map_question_label,
    rule_answer_type,
    rule_question_type,
)

REAL = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real"


def make(question: str, answer: str | None = None, **fields) -> Record:
    messages = [{"role": "user", "content": question}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    data = {"id": "q1", "dataset": "t", "split": "test", "lang": "en", "images": []}
    data.update(fields)
    return Record(messages=messages, answer=answer, **data)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Is there a nodule in the left lung?", "yes_no"),
        ("Does the patient have pneumonia?", "yes_no"),
        ("Is it located in the left?", "yes_no"),
        ("Isn't the heart enlarged?", "yes_no"),
        ("Where is the lesion?", "location"),
        ("Which lobe contains the nodule?", "location"),
        ("How many lesions are there?", "counting"),
        ("Which organ is abnormal?", "anatomy"),
        ("What modality is used to take this image?", "modality"),
        ("what type of image is this?", "modality"),
        ("In which plane is this image taken?", "plane"),
        ("What is the size of the mass?", "measurement"),
        ("What color is the lesion?", "appearance"),
        ("Which is the biggest in this image, lung, liver or heart?", "comparison"),
        ("What diseases are included in the picture?", "abnormality"),
        ("How to treat this disease?", "procedure"),
        ("What is the effect of the mass on the ventricle?", "impact"),
        ("Describe the findings.", "description"),
        ("Is this a CT or an MRI?", "modality"),
        ("is the colon more prominent on the patient's right or left side?", "location"),
        ("图中有结节吗？", "yes_no"),
        ("肺是否健康?", "yes_no"),
        ("这是什么成像方式？", "modality"),
        ("病灶位于哪里？", "location"),
        ("病灶有几个？", "counting"),
        ("图片主要器官是什么?", "anatomy"),
        ("图片中包含哪些疾病?", "abnormality"),
        ("这是CT还是MRI？", "modality"),
    ],
)
def test_rule_question_type(question, expected):
    assert expected in QUESTION_TYPES
    assert rule_question_type(question) == expected


@pytest.mark.parametrize(
    "question",
    [
        "What does the arrow point to?",  # the seed tagged this yes_no ("does" as a substring)
        "What is it?",  # "is it" inside a wh-question
        "Which structure does the needle enter?",
        "这是什么？",  # ends in 么 but is not a 吗 question
    ],
)
def test_seed_false_yes_no_are_not_yes_no(question):
    assert rule_question_type(question) != "yes_no"
    assert rule_answer_type(question) == "open"


@pytest.mark.parametrize(
    ("question", "answer", "expected"),
    [
        ("Does the patient have a fracture?", None, "closed"),  # yes/no by form
        ("What is abnormal?", "Yes", "closed"),  # yes/no answer
        ("图片中包含肝脏吗?", "不包含", "closed"),
        ("肝脏在哪个位置?", "右侧", "open"),
        ("Which organ is abnormal, heart or lung?", "Heart", "closed"),  # a limited choice
        ("这是CT还是MRI？", "CT", "closed"),
        ("Where is the lesion?", "left lung", "open"),
        ("What does the arrow point to?", "the aorta", "open"),
        ("Is there a mass or a cyst?", "yes", "closed"),
    ],
)
def test_rule_answer_type(question, answer, expected):
    assert rule_answer_type(question, answer) == expected


def test_options_make_a_question_closed():
    record = make("What is shown?", "B", options={"A": "liver", "B": "lung"})
    assert classify_answer_type(record) == "closed"


def test_record_values_win_over_rules():
    record = make("Is there a nodule?", "yes", answer_type="open", question_type="location")
    assert classify_answer_type(record) == "open"
    assert classify_question_type(record) == "location"
    assert classify_answer_type(record, use_labels=False) == "closed"
    assert classify_question_type(record, use_labels=False) == "yes_no"


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("closed-set", "closed"),  # the seed never matched this label
        ("CLOSED", "closed"),
        ("close-ended", "closed"),
        ("open-ended", "open"),
        ("OPEN", "open"),
        ("maybe", None),
    ],
)
def test_map_answer_label(label, expected):
    assert map_answer_label(label) == expected


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Organ", "anatomy"),
        ("Position", "location"),
        ("Quantity", "counting"),
        ("Size", "measurement"),
        ("Color", "appearance"),
        ("KG", "general"),
        ("PRES", "yes_no"),
        ("ABN", "abnormality"),
        ("PRES, POS", "yes_no"),
        ("ATTRIB", "description"),
        ("MODALITY", "modality"),
        ("Disease Diagnosis", "abnormality"),
        ("nonsense", None),
    ],
)
def test_map_question_label(label, expected):
    assert map_question_label(label) == expected


def test_classify_records_prefers_dataset_labels_and_keeps_originals():
    records = [
        make("Does the picture contain liver?", "No", id="a", meta={"content_type": "Organ"}),
        make("where is it?", "left", id="b", question_type="POS"),
        make("Is there a nodule?", "yes", id="c", meta={"answer_type": "closed-set"}),
        make("What is the number of lesions?", "2", id="d", question_type="weird"),
    ]
    out, summary = classify_records(records)
    by_id = {r.id: r for r in out}
    assert by_id["a"].question_type == "anatomy" and by_id["a"].answer_type == "closed"
    assert by_id["b"].question_type == "location"
    assert by_id["b"].meta["original_question_type"] == "POS"
    assert by_id["c"].answer_type == "closed"
    assert by_id["d"].question_type == "counting"
    assert by_id["d"].meta["original_question_type"] == "weird"
    assert records[1].question_type == "POS" and records[1].meta == {}  # inputs untouched
    assert summary["n"] == 4
    assert summary["sources"]["question_type"] == {"dataset": 2, "rule": 2}
    assert summary["sources"]["answer_type"] == {"dataset": 1, "rule": 3}
    assert summary["unmapped_labels"] == {"weird": 1}
    assert summary["counts"]["anatomy"] == {"closed": 1}
    assert summary["mapping"]["c"]["original_answer_type"] == "closed-set"
    json.dumps(summary)


def _real_rows(relative: str) -> list[dict]:
    path = REAL / relative
    if not path.is_file():
        pytest.skip(f"real sample {path} not available")
    return json.loads(path.read_text(encoding="utf-8"))


def _as_record(index: int, row: dict) -> Record:
    lang = row.get("q_lang", "en")
    return make(row["question"], row["answer"], id=f"r{index}", lang=lang)


@pytest.mark.parametrize(
    ("name", "relative", "floor"),
    [
        ("slake", "slake_json_only/Slake1.0/test.json", 0.95),
        ("vqa_rad", "vqa_rad_hf_export/data/vqa_rad/test.json", 0.9),
        ("pathvqa", "pathvqa_hf_export/data/pathvqa/test.json", 0.95),
    ],
)
def test_answer_type_agreement_with_dataset_labels(name, relative, floor):
    """Classify without the dataset's answer_type and compare with it.

    The VQA-RAD export derives CLOSED from yes/no answers only, so its three either-or questions
    ("is this supratentorial or infratentorial?") are OPEN there and closed here, as SLAKE and the
    original VQA-RAD paper count limited choices.
    """
    rows = _real_rows(relative)
    records = [_as_record(i, row) for i, row in enumerate(rows)]
    result = answer_type_agreement(records, [row["answer_type"] for row in rows])
    print(f"{name}: n={result['n']} agreement={result['agreement']:.3f}")
    assert result["n"] == len(rows)
    assert result["agreement"] >= floor, result["disagree"]


@pytest.mark.parametrize(
    ("name", "relative", "key"),
    [
        ("slake", "slake_json_only/Slake1.0/test.json", "content_type"),
        ("vqa_rad", "vqa_rad_hf_export/data/vqa_rad/test.json", "question_type"),
        ("pathvqa", "pathvqa_hf_export/data/pathvqa/test.json", "question_type"),
    ],
)
def test_question_type_rules_against_dataset_labels(name, relative, key):
    """Informative: rules vs the mapped dataset label, on questions that are not yes/no by form.

    Yes/no questions are excluded because datasets label them by content ("Does the picture
    contain liver?" is SLAKE Organ) while the rules label them by form (yes_no).
    """
    rows = [r for r in _real_rows(relative) if not is_yes_no_question(r["question"])]
    agree = sum(
        rule_question_type(r["question"], r["answer"]) == map_question_label(r[key]) for r in rows
    )
    print(f"{name}: question_type n={len(rows)} agreement={agree / len(rows):.3f}")
    assert agree / len(rows) >= 0.6

"""Prediction files from other tools: CSV/TSV/xlsx tables and named id/prediction fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvl.cli.main import main
from medvl.data.jsonl import write_records
from medvl.data.record import Message, Record
from medvl.errors import RecordError
from medvl.eval.predictions_file import read_prediction_texts, status_of

openpyxl = pytest.importorskip("openpyxl")

#: VLMEvalKit's result table columns (e.g. GMAI-MMBench_VAL results written by its inference).
VLMEVAL_HEADER = ["index", "question", "A", "B", "answer", "category", "prediction"]
VLMEVAL_ROWS = [
    [0, "Which organ?", "lung", "liver", "A", "organ", "A"],
    [1, "Which side?", "left", "right", "B", "side", "The answer is A"],
    [2, "Which view?", "AP", "PA", "B", "view", None],  # an empty cell: an empty answer
    [3, "Which sign?", "mass", "cyst", "A", "sign", 7],  # a number stored by Excel
]


def write_xlsx(path, header, rows):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def test_vlmevalkit_xlsx_uses_index_and_prediction(tmp_path):
    path = write_xlsx(tmp_path / "Qwen2-VL_GMAI-MMBench_VAL.xlsx", VLMEVAL_HEADER, VLMEVAL_ROWS)
    preds = read_prediction_texts(path)
    assert preds.texts == {"0": "A", "1": "The answer is A", "2": "", "3": "7"}
    assert status_of("2", preds) == ("", "empty") and preds.n_lines == 4


@pytest.mark.parametrize(("suffix", "sep"), [(".csv", ","), (".tsv", "\t")])
def test_csv_and_tsv_with_named_fields(tmp_path, suffix, sep):
    path = tmp_path / f"preds{suffix}"
    lines = [
        sep.join(["qid", "model_answer", "note"]),
        sep.join(["a", '"yes, it is"' if sep == "," else "yes, it is", "x"]),
        sep.join(["b", "", "y"]),
        "",
    ]
    path.write_text("\ufeff" + "\n".join(lines), encoding="utf-8")
    preds = read_prediction_texts(path, id_field="qid", prediction_field="model_answer")
    assert preds.texts == {"a": "yes, it is", "b": ""}
    with pytest.raises(RecordError, match=r"preds\.\w+:2: no 'index'.*found keys: model_answer"):
        read_prediction_texts(path, id_field="index", prediction_field="model_answer")
    with pytest.raises(RecordError, match=r":2: no 'id' or 'question_id' or 'index'.*--id-field"):
        read_prediction_texts(path)


def test_jsonl_with_named_fields_and_their_errors(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"qid": "a", "answer_text": "yes"}, {"qid": "b", "answer_text": None, "error": "x"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    preds = read_prediction_texts(path, id_field="qid", prediction_field="answer_text")
    assert preds.texts == {"a": "yes", "b": None} and preds.errors == {"b": "x"}
    with pytest.raises(RecordError, match=r"p\.jsonl:1 \(id 'a'\): no prediction text \(under "):
        read_prediction_texts(path, id_field="qid")


def test_broken_workbook_is_one_readable_error(tmp_path):
    path = tmp_path / "bad.xlsx"
    path.write_bytes(b"not a zip")
    with pytest.raises(RecordError, match=r"bad\.xlsx: not a readable \.xlsx workbook"):
        read_prediction_texts(path)


def write_mc_records(path: Path, dataset: str, split: str, id_format: str) -> None:
    """The :data:`VLMEVAL_ROWS` as two-option closed records in ``path``; record ids are
    ``id_format`` filled with the row's index."""
    records = [
        Record(
            id=id_format.format(row[0]),
            dataset=dataset,
            split=split,
            lang="en",
            images=[],
            messages=[Message("user", f"{row[1]}\nA. {row[2]}\nB. {row[3]}")],
            answer=row[4],
            options={"A": row[2], "B": row[3]},
            answer_type="closed",
        )
        for row in VLMEVAL_ROWS
    ]
    write_records(path, records)


def test_eval_score_reads_an_xlsx_by_field_names(tmp_path, capsys):
    """End to end: 4 multiple-choice records, VLMEvalKit-style xlsx; accuracy by hand = 1/4
    (row 0 "A" right; row 1 says A, gold B; row 2 empty; row 3 "7" is no option)."""
    write_mc_records(tmp_path / "data.jsonl", "gmai", "test", "{}")
    header = ["index", *VLMEVAL_HEADER[1:-1], "model_output"]  # a renamed prediction column
    pred = write_xlsx(tmp_path / "preds.xlsx", header, VLMEVAL_ROWS)
    argv = ["eval", "score", "--data", str(tmp_path / "data.jsonl"), "--pred", str(pred)]
    argv += ["--out", str(tmp_path / "run"), "--id-field", "index"]
    assert main([*argv, "--prediction-field", "model_output"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["summary"]["accuracy"]["mean"] == pytest.approx(0.25)
    assert metrics["counts"]["empty"] == 1 and metrics["counts"]["missing"] == 0
    assert main(argv) == 2  # without --prediction-field: one readable error, exit 2
    assert "--prediction-field NAME" in capsys.readouterr().err


def test_id_template_matches_vlmevalkit_index_to_medvl_gmai_ids(tmp_path, capsys):
    """VLMEvalKit's GMAI-MMBench sheet keys rows by the benchmark's ``index``; medvl's GMAI
    records are ``gmai_mmbench-<split>-<index>``. Same hand count as above: 1/4 right."""
    write_mc_records(tmp_path / "data.jsonl", "gmai_mmbench", "val", "gmai_mmbench-val-{}")
    pred = write_xlsx(tmp_path / "preds.xlsx", VLMEVAL_HEADER, VLMEVAL_ROWS)
    argv = ["eval", "score", "--data", str(tmp_path / "data.jsonl"), "--pred", str(pred)]
    argv += ["--out", str(tmp_path / "run")]
    assert main(argv) == 2  # without the template no id matches: refused, with the fix
    assert "--id-template (e.g. 'gmai_mmbench-val-{index}')" in capsys.readouterr().err
    assert main([*argv, "--id-template", "gmai_mmbench-val-{index}"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["counts"]["missing"] == 0
    assert metrics["summary"]["accuracy"]["mean"] == pytest.approx(0.25)

    capsys.readouterr()
    assert main([*argv, "--id-template", "gmai_mmbench-val-{idx}"]) == 2
    assert "names {idx}, which this row lacks" in capsys.readouterr().err
    assert main([*argv, "--id-template", "gmai_mmbench-val"]) == 2
    assert "must name columns as {name}" in capsys.readouterr().err

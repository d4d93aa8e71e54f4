"""Scoring predictions against records: hand-computed aggregates, bad input, traceability.

Most tests pass small stand-in metric functions and a stand-in MCQ extractor (the scorer takes
them as arguments); one integration test uses the real ``medvl.eval.metrics`` table.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from medvl.data.jsonl import write_records
from medvl.data.record import Record
from medvl.errors import MedvlError, RecordError, UnknownNameError
from medvl.eval.breakdown import BootstrapSettings
from medvl.eval.predictions_file import read_prediction_texts, status_of
from medvl.eval.scoring import Metric, record_kind
from medvl.eval.scoring_run import score_files


@dataclass(frozen=True)
class Found:
    letter: str | None
    rule: str


def fake_extract(text, options):
    letters = [x for x in re.findall(r"\b([A-Z])\b", text or "") if x in options]
    return Found(letters[-1], "letter") if letters else Found(None, "unparsed")


def _norm(text):
    return re.sub(r"[^\w ]", "", text.lower()).strip()


def exact(pred, ref, *, lang="en"):
    return float(_norm(pred) == _norm(ref))


def closed(pred, ref, *, lang="en"):
    words = _norm(pred).split()
    return float(bool(words) and words[0] == _norm(ref))


def token_f1(pred, ref, *, lang="en"):
    p, r = set(_norm(pred).split()), set(_norm(ref).split())
    common = len(p & r)
    return 0.0 if not common else 2 * common / (len(p) + len(r))


def char_ratio(preds, refs, *, lang="en"):
    return sum(map(len, preds)) / sum(map(len, refs))


TABLE = {
    "exact_match": Metric("exact_match", "open", exact),
    "closed_accuracy": Metric("closed_accuracy", "closed", closed),
    "token_f1": Metric("token_f1", "open", token_f1),
    "char_ratio": Metric("char_ratio", "open", char_ratio, corpus=True),
}
OPTIONS = {"A": "CT", "B": "MRI", "C": "X-ray", "D": "Ultrasound"}


def record(record_id, answer, *, options=None, answer_type="closed", **kwargs):
    return Record(
        id=record_id,
        dataset="toy",
        split="test",
        lang=kwargs.pop("lang", "en"),
        images=[],
        messages=[{"role": "user", "content": f"question {record_id}?"}],
        answer=answer,
        options=options,
        answer_type=answer_type,
        question_type=kwargs.pop("question_type", "modality"),
        meta=kwargs.pop("meta", {}),
    )


def ten_records():
    return [
        record("m1", "A", options=OPTIONS, meta={"Modality": "CT"}),
        record("m2", "B", options=OPTIONS, meta={"Modality": "MRI"}),
        record("m3", "C", options=OPTIONS, meta={"Modality": "CT"}),
        record("m4", "D", options=OPTIONS),
        record("c1", "yes"),
        record("c2", "no"),
        record("c3", "yes"),
        record("o1", "lung", answer_type="open"),
        record("o2", "CT", answer_type="open"),
        record("o3", "left kidney", answer_type=None),
    ]


PREDICTIONS = [
    {"id": "m1", "prediction": "The answer is A"},  # right (rule: letter)
    {"id": "m2", "prediction": "C"},  # wrong
    {"id": "m3", "prediction": ""},  # empty: unparsed, wrong
    # m4: missing -> 0
    {"id": "c1", "prediction": "Yes."},  # right
    {"id": "c2", "prediction": "yes", "model": "tiny", "seconds": 0.1},  # wrong
    {"id": "c3", "prediction": "yes"},  # right (first line kept)
    {"id": "c3", "prediction": "no"},  # duplicate
    {"id": "o1", "prediction": "lung"},  # right
    {"id": "o2", "prediction": "MRI"},  # wrong
    {"id": "o3", "prediction": "Left kidney."},  # right
    {"id": "zzz", "prediction": "stray"},  # unknown id
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "data.jsonl"
    write_records(data, ten_records())
    return data, write_jsonl(tmp_path / "pred.jsonl", PREDICTIONS)


def score(files, tmp_path, **kwargs):
    kwargs.setdefault("bootstrap", BootstrapSettings(resamples=200))
    return score_files(*files, tmp_path / "run", table=TABLE, extract=fake_extract, **kwargs)


def read_rows(path):
    return {r["id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def test_hand_computed_accuracy_keeps_wrong_and_missing_in_denominator(files, tmp_path):
    body = score(files, tmp_path).metrics
    accuracy = body["summary"]["accuracy"]
    assert accuracy["n"] == 10 and accuracy["mean"] == pytest.approx(0.5)  # m1 c1 c3 o1 o3
    assert accuracy["ci_low"] <= 0.5 <= accuracy["ci_high"]
    by_kind = body["breakdowns"]["kind"]
    assert by_kind["mcq"]["accuracy"] == {**by_kind["mcq"]["accuracy"], "n": 4, "mean": 0.25}
    assert by_kind["closed"]["accuracy"]["mean"] == pytest.approx(2 / 3)
    assert by_kind["open"]["accuracy"]["mean"] == pytest.approx(2 / 3)
    assert body["summary"]["mcq_accuracy"]["mean"] == 0.25
    assert body["summary"]["token_f1"]["n"] == 3  # open metrics only on open records


def test_bad_input_is_counted_and_listed(files, tmp_path):
    body = score(files, tmp_path).metrics
    counts, problems = body["counts"], body["problems"]
    assert counts["records"] == 10 and counts["prediction_lines"] == 11
    assert (counts["missing"], counts["empty"], counts["duplicate"], counts["unknown"]) == (
        1,
        1,
        1,
        1,
    )
    assert problems["missing_ids"] == ["m4"] and problems["empty_ids"] == ["m3"]
    assert problems["duplicate_ids"] == ["c3"] and problems["unknown_ids"] == ["zzz"]
    assert body["unparsed"] == {"n": 3, "count": 1, "rate": pytest.approx(1 / 3)}
    assert body["extraction_rules"] == {"letter": 2, "unparsed": 1}
    assert counts["by_kind"] == {"mcq": 4, "closed": 3, "open": 3}


def test_scores_rows_trace_every_number(files, tmp_path):
    result = score(files, tmp_path, breakdown_keys=["modality"])
    rows = read_rows(result.scores_path)
    assert list(rows) == [r.id for r in ten_records()]  # every record, in data order
    m1 = rows["m1"]
    assert (m1["extracted"], m1["rule"], m1["correct"], m1["status"]) == ("A", "letter", 1.0, "ok")
    assert m1["metrics"] == {"mcq_accuracy": 1.0} and m1["meta"] == {"modality": "CT"}
    assert rows["m4"]["status"] == "missing" and rows["m4"]["correct"] == 0.0
    assert rows["m4"]["prediction"] is None and rows["m4"]["meta"] == {"modality": None}
    assert rows["c3"]["prediction"] == "yes" and rows["c3"]["correct"] == 1.0
    o3 = rows["o3"]
    assert o3["kind"] == "open" and o3["answer_type"] is None and o3["gold"] == "left kidney"
    assert o3["metrics"] == {"exact_match": 1.0, "token_f1": 1.0}
    assert {"question_type", "lang", "dataset"} <= set(o3)
    groups = result.metrics["breakdowns"]["modality"]
    assert groups["CT"]["accuracy"]["mean"] == 0.5 and "(none)" in groups


def test_metrics_json_records_settings_hashes_and_versions(files, tmp_path):
    data, pred = files
    body = json.loads(score(files, tmp_path).metrics_path.read_text(encoding="utf-8"))
    settings = body["settings"]
    assert settings["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert settings["predictions_sha256"] == hashlib.sha256(pred.read_bytes()).hexdigest()
    assert settings["prediction_models"] == ["tiny"]
    assert settings["bootstrap"]["resamples"] == 200 and settings["bootstrap"]["seed"] == 0
    assert settings["metrics"] == ["exact_match", "closed_accuracy", "token_f1", "char_ratio"]
    assert {"medvl", "python", "numpy"} <= set(body["versions"])
    assert body["breakdowns"].keys() >= {"answer_type", "question_type", "lang", "kind"}


def test_corpus_metric_covers_its_subset_with_missing_as_empty(tmp_path):
    data = tmp_path / "data.jsonl"
    write_records(
        data,
        [
            record("a", "abcd", answer_type="open"),
            record("b", "ab", answer_type="open"),
            record("c", "yes"),
        ],
    )
    pred = write_jsonl(
        tmp_path / "p.jsonl", [{"id": "a", "prediction": "abcd"}, {"id": "c", "prediction": "yes"}]
    )
    body = score((data, pred), tmp_path).metrics
    assert body["corpus"]["char_ratio"]["n"] == 2  # the closed record is not in the open corpus
    assert body["corpus"]["char_ratio"]["value"] == pytest.approx(4 / 6)


def test_selected_metrics_and_unknown_metric(files, tmp_path):
    rows = read_rows(score(files, tmp_path, metrics=["token_f1"]).scores_path)
    assert rows["o1"]["metrics"] == {"token_f1": 1.0} and rows["o1"]["correct"] == 1.0
    assert rows["c1"]["metrics"] == {} and rows["c1"]["correct"] == 1.0
    with pytest.raises(UnknownNameError, match="unknown metric 'bleu_9'"):
        score(files, tmp_path, metrics=["bleu_9"])


def test_data_without_answers_is_refused(tmp_path):
    data = tmp_path / "data.jsonl"
    records = [record("a", "A", options=OPTIONS), record("b", None, options=OPTIONS)]
    write_records(data, [*records, record("c", None, options=OPTIONS)])
    pred = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "prediction": "A"}])
    with pytest.raises(RecordError, match=rf"{re.escape(str(data))}: 2 of 3 records have no gold"):
        score((data, pred), tmp_path)


def test_bad_prediction_lines_name_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"id": "a", "prediction": "x"}\n{"id": "b", "prediction": \n', encoding="utf-8"
    )
    with pytest.raises(RecordError, match=rf"{re.escape(str(path))}:2: not valid JSON"):
        read_prediction_texts(path)
    path.write_text('{"prediction": "x"}\n', encoding="utf-8")
    with pytest.raises(RecordError, match=r":1: no 'id'"):
        read_prediction_texts(path)
    path.write_text('{"id": "a", "answer": "x"}\n', encoding="utf-8")
    with pytest.raises(RecordError, match="no prediction text"):
        read_prediction_texts(path)


def test_predict_output_with_errors_and_aliases(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"id": "a", "prediction": None, "error": "CUDA out of memory", "prompt": "q"},
            {"question_id": 7, "text": "B"},
        ],
    )
    preds = read_prediction_texts(path)
    assert preds.texts == {"a": None, "7": "B"} and preds.errors == {"a": "CUDA out of memory"}
    assert status_of("a", preds) == ("", "error") and status_of("7", preds) == ("B", "ok")
    assert status_of("zz", preds) == (None, "missing")


def test_predictions_for_other_data_are_refused(files, tmp_path):
    pred = write_jsonl(tmp_path / "other.jsonl", [{"id": "q1", "prediction": "x"}])
    with pytest.raises(MedvlError, match="none of its 1 ids match the data"):
        score((files[0], pred), tmp_path)


def test_record_kind():
    assert record_kind(record("a", "A", options=OPTIONS)) == "mcq"
    assert record_kind(record("a", "text", answer_type="open", question_type="report")) == "report"
    assert record_kind(record("a", "no")) == "closed"
    assert record_kind(record("a", "x", answer_type=None)) == "open"


def test_with_the_real_metric_table(files, tmp_path):
    metrics = pytest.importorskip("medvl.eval.metrics")
    pytest.importorskip("medvl.eval.extract")
    result = score_files(*files, tmp_path / "real", bootstrap=BootstrapSettings(resamples=100))
    body = result.metrics
    assert body["summary"]["accuracy"]["n"] == 10
    assert body["summary"]["accuracy"]["mean"] == pytest.approx(0.5)
    rows = read_rows(result.scores_path)
    assert rows["m1"]["extracted"] == "A" and rows["m3"]["extracted"] is None
    assert set(rows["o1"]["metrics"]) <= set(metrics.METRICS) | {"mcq_accuracy"}
    for row in rows.values():
        assert all(isinstance(v, float) for v in row["metrics"].values())


def test_closed_records_carry_the_answer_read_and_the_rule(tmp_path):
    """With the real metric table, every closed row shows what closed_accuracy read and why,
    and ``correct`` agrees with it (hand-checked: z1, z3, e2 right; z2, e1, e3 wrong)."""
    data = tmp_path / "data.jsonl"
    records = [
        record("z1", "否", lang="zh"),
        record("z2", "是", lang="zh"),
        record("z3", "是", lang="zh"),
        record("e1", "yes"),
        record("e2", "CT"),
        record("e3", "no"),
        record("e4", "no"),
    ]
    write_records(data, records)
    pred = write_jsonl(
        tmp_path / "pred.jsonl",
        [
            {"id": "z1", "prediction": "答案是：否"},
            {"id": "z2", "prediction": "这是什么结构"},
            {"id": "z3", "prediction": "是的，可见结节。"},
            {"id": "e1", "prediction": "Yes, there is no fracture."},
            {"id": "e2", "prediction": "Computed tomography"},
            {"id": "e3", "prediction": ""},
        ],
    )
    result = score_files(data, pred, tmp_path / "run", bootstrap=BootstrapSettings(resamples=50))
    rows = read_rows(result.scores_path)
    seen = {i: (r["extracted"], r["rule"], r["correct"]) for i, r in rows.items()}
    assert seen == {
        "z1": ("no", "answer_phrase", 1.0),
        "z2": (None, "none", 0.0),
        "z3": ("yes", "leading_word", 1.0),
        "e1": (None, "ambiguous", 0.0),
        "e2": ("ct", "synonym", 1.0),
        "e3": (None, "none", 0.0),
        "e4": (None, None, 0.0),  # missing prediction: nothing read
    }
    assert rows["z1"]["metrics"]["closed_accuracy"] == 1.0
    closed = result.metrics["breakdowns"]["kind"]["closed"]["accuracy"]
    assert closed["n"] == 7 and closed["mean"] == pytest.approx(3 / 7)


def test_cli_bad_predictions_file_is_one_line_exit_2(files, tmp_path, capsys):
    from medvl.cli.main import main

    data, _ = files
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "m1", "prediction": "A"}\nnot json\n', encoding="utf-8")
    argv = ["eval", "score", "--data", str(data), "--pred", str(bad), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"medvl: error: {bad}:2: not valid JSON (Expecting value); one JSON object per line"
    ]
    assert main([*argv[:5], str(tmp_path / "gone.jsonl"), *argv[6:]]) == 2
    assert "gone.jsonl: no such file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_eval_run_needs_data_and_benches_lists(capsys):
    from medvl.cli.main import main

    with pytest.raises(SystemExit) as info:  # eval run is built: tests/integration/test_eval_run.py
        main(["eval", "run", "--bench", "slake"])
    assert info.value.code == 2 and "--data" in capsys.readouterr().err
    assert main(["eval", "benches"]) == 0
    out = capsys.readouterr().out
    assert "gmai_mmbench" in out and "clinical vqa task" in out


def test_cli_score_prints_summary(files, tmp_path, capsys):
    pytest.importorskip("medvl.eval.metrics")
    from medvl.cli.main import main

    data, pred = files
    out = tmp_path / "cli"
    argv = ["eval", "score", "--data", str(data), "--pred", str(pred), "--out", str(out)]
    assert main([*argv, "--breakdown", "modality", "--resamples", "100"]) == 0
    text = capsys.readouterr().out
    assert "scored 10 records" in text and "missing 1, empty 1, duplicate 1, unknown 1" in text
    assert (out / "scores.jsonl").is_file() and (out / "metrics.json").is_file()


def test_sft_validation_names_its_accuracies_as_the_scorer_does():
    """Validation during training keeps multiple choice out of closed accuracy (hand-counted)."""
    from medvl.train.validation import score_answers

    records = [
        record("y1", "yes"),
        record("y2", "no"),
        record("y3", "yes"),
        record("m1", "A", options=OPTIONS),
        record("m2", "C", options=OPTIONS),
        record("o1", "left lung", answer_type="open", question_type="organ"),
    ]
    answers = ["yes", "yes", "Yes.", "A", "B", "left lung"]
    scores = score_answers(records, answers)
    assert scores["closed_accuracy"] == pytest.approx(2 / 3)
    assert scores["mcq_accuracy"] == pytest.approx(1 / 2)
    assert scores["open_token_f1"] == pytest.approx(1.0)
    assert scores["overall"] == pytest.approx(4 / 6)

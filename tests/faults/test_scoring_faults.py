"""Scoring faults: a 10 MB prediction is cut (and counted), not scored for minutes; a non-UTF-8
line and a line with no prediction text are refused with FILE:LINE and the fix, exit 2; a rerun
on the fixed file finishes."""

from __future__ import annotations

import json
from pathlib import Path

from medvl.cli.main import main
from medvl.data.jsonl import write_records
from medvl.data.record import Record

OPTIONS = {"A": "CT", "B": "MRI", "C": "X-ray"}


def record(record_id: str, answer: str, **kwargs) -> Record:
    return Record(
        id=record_id,
        dataset="toy",
        split="test",
        lang="en",
        images=[],
        messages=[{"role": "user", "content": f"question {record_id}?"}],
        answer=answer,
        options=kwargs.get("options"),
        answer_type=kwargs.get("answer_type", "open"),
        question_type="modality",
    )


def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    write_records(
        path,
        [
            record("mcq", "B", options=OPTIONS),
            record("closed", "yes", answer_type="closed"),
            record("open", "left lung nodule"),
        ],
    )
    return path


def write_preds(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medvl: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def test_ten_megabyte_prediction_is_cut_counted_and_still_extracted(tmp_path, capsys):
    junk = "left lung nodule seen " * 500_000  # 11 MB of text after the answer
    preds = write_preds(
        tmp_path / "pred.jsonl",
        [
            {"id": "mcq", "prediction": "The answer is B. " + junk},
            {"id": "closed", "prediction": "Yes. " + junk},
            {"id": "open", "prediction": "left lung nodule"},
        ],
    )
    out = tmp_path / "run"
    argv = ["eval", "score", "--data", str(data_file(tmp_path)), "--pred", str(preds)]
    assert main([*argv, "--out", str(out), "--resamples", "10"]) == 0
    assert "cut to 20000 chars  2 predictions" in capsys.readouterr().out
    body = json.loads((out / "metrics.json").read_text())
    assert body["settings"]["max_prediction_chars"] == 20_000
    assert body["counts"]["truncated"] == 2
    assert body["problems"]["truncated_ids"] == ["mcq", "closed"]
    rows = {r["id"]: r for r in map(json.loads, (out / "scores.jsonl").open())}
    assert rows["mcq"]["extracted"] == "B" and rows["mcq"]["correct"] == 1.0  # head is read
    assert rows["closed"]["extracted"] == "yes"
    assert len(rows["mcq"]["prediction"]) == 20_000
    assert rows["mcq"]["truncated_from"] == len("The answer is B. " + junk)
    assert rows["open"]["truncated_from"] is None and rows["open"]["correct"] == 1.0

    # the cap is configurable and recorded; 0 turns it off (here on a short file)
    assert main([*argv, "--out", str(tmp_path / "r2"), "--max-prediction-chars", "5"]) == 0
    capsys.readouterr()
    body = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    assert body["settings"]["max_prediction_chars"] == 5 and body["counts"]["truncated"] == 3
    assert main([*argv, "--out", str(tmp_path / "r3"), "--max-prediction-chars", "-1"]) == 2
    assert "max_prediction_chars must be a positive number" in one_error_line(capsys)


def test_non_utf8_prediction_is_refused_by_line_then_rerun_finishes(tmp_path, capsys):
    preds = tmp_path / "pred.jsonl"
    good = json.dumps({"id": "mcq", "prediction": "B"}).encode()
    latin1 = json.dumps({"id": "open", "prediction": "left lung nodule"}).encode()
    preds.write_bytes(good + b"\n" + latin1.replace(b"left", b"l\xe9ft") + b"\n")
    argv = ["eval", "score", "--data", str(data_file(tmp_path)), "--pred", str(preds)]
    argv += ["--out", str(tmp_path / "run"), "--resamples", "10"]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert f"{preds}:2: not UTF-8 (byte " in line and "re-save the predictions as UTF-8" in line
    assert not (tmp_path / "run").exists()
    preds.write_bytes(good + b"\n" + latin1 + b"\n")
    assert main(argv) == 0


def test_row_with_null_error_and_no_prediction_is_refused(tmp_path, capsys):
    preds = write_preds(
        tmp_path / "pred.jsonl",
        [{"id": "mcq", "prediction": "B"}, {"id": "open", "error": None, "model": "m"}],
    )
    argv = ["eval", "score", "--data", str(data_file(tmp_path)), "--pred", str(preds)]
    argv += ["--out", str(tmp_path / "run"), "--resamples", "10"]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert f"{preds}:2 (id 'open'): no prediction text" in line and "'prediction'" in line
    # a failed generation (null text, an error message) is scored as an error, not refused
    write_preds(preds, [{"id": "mcq", "prediction": None, "error": "CUDA out of memory"}])
    assert main(argv) == 0
    assert "missing 2" in capsys.readouterr().out
    body = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert body["counts"]["errors"] == 1

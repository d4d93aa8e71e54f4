"""The workbench's tab logic without a browser: run folders joined with their data, filters,
exports, the paired comparison, the Data tab's problems, the chat's streams and images.

Run folders are written by hand in the layout ``medvl eval run`` writes (``scores.jsonl``,
``metrics.json`` with ``settings.data``, ``run.json`` with ``data.scored_path``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medvl.data.medimage import load_image
from medvl.errors import ConfigError, MedvlError
from medvl.ui.chat import ModelChoice, history, stream_together
from medvl.ui.compare import LEVELS, compare_runs, disagreement, stats_table
from medvl.ui.data_tab import open_data, problems_table, select_records, summary_markdown
from medvl.ui.pictures import render, slice_count
from medvl.ui.results import (
    ALL,
    RowFilter,
    choices,
    export_rows,
    filter_rows,
    meta_keys,
    outcome,
    record_markdown,
)
from medvl.ui.runs import open_run

#: (id, lang, answer_type, organ (record meta only), modality (row meta), correct)
ROWS = [
    ("r1", "en", "closed", "lung", "CT", 1.0),
    ("r2", "en", "open", "brain", "MRI", 0.0),
    ("r3", "zh", "closed", "lung", "CT", 0.0),
    ("r4", "en", "open", "liver", "CT", 0.5),
    ("r5", "en", "closed", "lung", "MRI", None),
]


def write_data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img").mkdir(exist_ok=True)
    lines = []
    for i, (rid, lang, kind, organ, modality, _) in enumerate(ROWS):
        Image.new("RGB", (64, 64), (40 * i, 90, 200)).save(folder / "img" / f"{rid}.png")
        record = {
            "id": rid, "dataset": "hand", "split": "test", "lang": lang,
            "images": [f"img/{rid}.png"],
            "messages": [
                {"role": "user", "content": f"<image>\nQuestion {rid}?"},
                {"role": "assistant", "content": "yes"},
            ],
            "answer": "yes", "answer_type": kind, "question_type": "presence",
            "meta": {"organ": organ, "modality": modality, "lesions": [[1, 2, 3]]},
        }  # fmt: skip
        lines.append(json.dumps(record))
    path = folder / "test.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_run(folder: Path, data: Path, correct: list[float | None], data_key: str) -> Path:
    """A run folder as 'medvl eval run' writes it; the data file named under ``data_key``
    (``metrics`` -> settings.data, ``run`` -> run.json's data.scored_path)."""
    folder.mkdir(parents=True)
    rows = []
    for (rid, lang, kind, _, modality, _), value in zip(ROWS, correct, strict=True):
        pred = "yes" if value == 1.0 else "no"
        rows.append({
            "id": rid, "dataset": "hand", "kind": kind, "answer_type": kind,
            "question_type": "presence", "lang": lang, "status": "ok", "prediction": pred,
            "gold": "yes", "extracted": pred if kind == "closed" else None, "rule": "word",
            "correct": value, "metrics": {"closed_accuracy": value}, "meta": {"modality": modality},
            "cluster": f"image:{rid}",
        })  # fmt: skip
    (folder / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = {"data": str(data) if data_key == "metrics" else "/moved/away.jsonl",
                "metrics": ["closed_accuracy"], "breakdown": ["modality"]}  # fmt: skip
    scored = [v for v in correct if v is not None]
    mean = {"mean": sum(scored) / len(scored), "n": len(scored)}
    summary = {"accuracy": mean, "closed_accuracy": mean}  # the report reads the metric names
    metrics = {
        "schema": "medvl.metrics/1",
        "n_records": 5,
        "settings": settings,
        "summary": summary,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if data_key == "run":
        run = {"schema": "medvl.run/1", "data": {"scored_path": str(data), "path": str(data)}}
        (folder / "run.json").write_text(json.dumps(run))
    return folder


@pytest.fixture
def run_a(tmp_path) -> Path:
    data = write_data(tmp_path / "data")
    return write_run(tmp_path / "A", data, [r[5] for r in ROWS], "metrics")


def test_outcome_reads_correct():
    assert [outcome({"correct": r[5]}) for r in ROWS] == [
        "correct", "wrong", "wrong", "partial", "not scored",
    ]  # fmt: skip


def test_open_run_joins_records_and_finds_data_through_run_json(tmp_path):
    data = write_data(tmp_path / "data")
    view = open_run(write_run(tmp_path / "B", data, [1.0, 1.0, 0.0, 0.0, 1.0], "run"))
    assert view.data_path == data and not view.note
    assert view.record("r3").question == "Question r3?"
    assert view.image_paths("r2") == [data.parent / "img" / "r2.png"]
    meta = view.meta(view.run.rows["r1"])
    assert meta == {"organ": "lung", "modality": "CT"}  # lists dropped, row meta on top


def test_open_run_without_its_data_still_shows_rows(tmp_path):
    data = write_data(tmp_path / "data")
    folder = write_run(tmp_path / "A", data, [r[5] for r in ROWS], "metrics")
    data.unlink()
    view = open_run(folder)
    assert len(view.rows) == 5 and view.records == {}
    assert "data file not found" in view.note
    assert "Question" not in record_markdown(view, view.rows[0])
    with pytest.raises(MedvlError, match="no such run folder"):
        open_run(tmp_path / "nope")


def test_filters_combine(run_a):
    view = open_run(run_a)
    ids = lambda f: [r["id"] for r in filter_rows(view, f)]  # noqa: E731
    assert ids(RowFilter()) == ["r1", "r2", "r3", "r4", "r5"]
    assert ids(RowFilter(outcome="wrong")) == ["r2", "r3"]
    assert ids(RowFilter(outcome="wrong", lang="en")) == ["r2"]
    assert ids(RowFilter(answer_type="closed", meta_key="organ", meta_value="lung")) == [
        "r1", "r3", "r5",
    ]  # fmt: skip
    assert ids(RowFilter(meta_key="modality", meta_value="MRI")) == ["r2", "r5"]
    assert ids(RowFilter(text="question r4")) == ["r4"]
    assert ids(RowFilter(meta_key="organ")) == ids(RowFilter())  # no value chosen: all
    assert choices(view, "organ") == [ALL, "lung", "brain", "liver"]  # by frequency
    assert choices(view, "lang") == [ALL, "en", "zh"]
    assert meta_keys(view) == ["modality", "organ"]


def test_export_jsonl_and_csv_hold_the_filtered_rows(run_a, tmp_path):
    view = open_run(run_a)
    rows = filter_rows(view, RowFilter(outcome="wrong"))
    jsonl = export_rows(view, rows, "jsonl", tmp_path / "out")
    back = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["id"] for r in back] == ["r2", "r3"]
    assert back[0]["question"] == "Question r2?" and back[0]["outcome"] == "wrong"
    assert back[1]["meta"] == {"organ": "lung", "modality": "CT"}
    table = list(csv.DictReader(export_rows(view, rows, "csv", tmp_path / "out").open()))
    assert [r["id"] for r in table] == ["r2", "r3"]
    assert table[1]["meta.organ"] == "lung" and table[1]["metrics.closed_accuracy"] == "0.0"
    assert table[0]["images"].endswith("img/r2.png")
    with pytest.raises(ValueError, match="unknown export format"):
        export_rows(view, rows, "xlsx", tmp_path)


def test_export_carries_video_entries_with_resolved_paths(run_a):
    view = open_run(run_a)
    data = view.data_path
    records = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    records[1]["videos"] = [
        {"volume": "ct/胸部.nii.gz", "sample": {"n": 4}},
        {"frames": ["slices/s1.png", "/abs/s2.png"]},
    ]
    records[1]["messages"][0]["content"] = "<image>\n<video>\n<video>\nQuestion r2?"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    view = open_run(run_a)
    rows = filter_rows(view, RowFilter(outcome="wrong"))  # r2 (two videos), r3 (none)
    out = view.data_path.parent.parent / "out"
    jsonl = export_rows(view, rows, "jsonl", out)
    back = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    base = str(data.parent)
    assert back[0]["videos"] == [
        {"volume": f"{base}/ct/胸部.nii.gz", "axis": "axial", "sample": {"n": 4}},
        {"frames": [f"{base}/slices/s1.png", "/abs/s2.png"]},
    ]
    assert back[1]["videos"] == []
    table = list(csv.DictReader(export_rows(view, rows, "csv", out).open(encoding="utf-8")))
    assert json.loads(table[0]["videos"]) == back[0]["videos"] and table[1]["videos"] == ""


def test_record_markdown_explains_metrics(run_a):
    view = open_run(run_a)
    text = record_markdown(view, view.run.rows["r4"])
    assert "r4 — partial" in text and "Question r4?" in text
    assert "`closed_accuracy` | 0.5 | closed-only |" in text


def test_compare_orders_disagreements_and_counts_mcnemar_pairs(tmp_path):
    data = write_data(tmp_path / "data")
    a = write_run(tmp_path / "A", data, [1.0, 1.0, 1.0, 0.0, 0.0], "metrics")
    b = write_run(tmp_path / "B", data, [0.0, 1.0, 1.0, 1.0, 1.0], "metrics")
    comparison = compare_runs(a, b, resamples=200)
    # r1: A right only; r4, r5: B right only; r2, r3 agree (same prediction "yes")
    assert comparison.pairs == [
        ("r1", LEVELS[0]), ("r4", LEVELS[0]), ("r5", LEVELS[0]),
        ("r2", LEVELS[2]), ("r3", LEVELS[2]),
    ]  # fmt: skip
    by_metric = {line[0]: line for line in stats_table(comparison)}
    accuracy = by_metric["accuracy"]
    assert accuracy[2:5] == ["0.600", "0.800", "0.200"]  # 3/5, 4/5, B - A
    assert accuracy[8] == "1/2"  # McNemar b = only A right (r1), c = only B right (r4, r5)
    assert accuracy[9] == "1.000"  # exact binomial: 2 * P(X <= 1 | n=3) = 2 * 4/8 capped at 1


def test_disagreement_levels():
    row = {"correct": 0.0, "extracted": "B", "prediction": "The answer is B"}
    assert disagreement(row, {**row, "prediction": "B."}) == "agree"  # same extracted letter
    assert disagreement(row, {**row, "extracted": "C"}) == "answer differs"
    assert disagreement(row, {**row, "correct": 1.0}) == "outcome differs"


def test_data_tab_lists_problems_by_record(tmp_path):
    data = write_data(tmp_path / "data")
    (data.parent / "img" / "r3.png").unlink()
    lines = data.read_text().splitlines()
    broken = json.loads(lines[1])
    broken["answer"] = " "
    lines[1] = json.dumps(broken)
    data.write_text("\n".join(lines) + "\n")
    view = open_data(data, tmp_path / "plots")
    assert len(view.records) == 5
    assert {(p[0], p[2]) for p in problems_table(view)} == {
        ("r2", "empty_answer"), ("r3", "missing"),
    }  # fmt: skip
    assert [r.id for r in select_records(view, only_problems=True)] == ["r2", "r3"]
    assert [r.id for r in select_records(view, text="question r5")] == ["r5"]
    assert "**2** with problems" in summary_markdown(view)
    assert view.stats["n_records"] == 5 and all(p.is_file() for p in view.plots)
    with pytest.raises(MedvlError, match="no such file"):
        open_data(tmp_path / "missing.jsonl")


def test_model_choice_specs():
    assert ModelChoice().spec() is None
    local = ModelChoice("models/tiny", adapter="runs/lora").spec()
    assert local.engine == "hf" and local.adapters == ("runs/lora",)
    served = ModelChoice(url="http://127.0.0.1:8000/v1", api_model="qwen").spec()
    assert served.engine == "openai" and served.model == "qwen"
    with pytest.raises(ConfigError, match="--adapter is for the local engine"):
        ModelChoice(adapter="lora", url="http://x/v1").spec()
    assert ModelChoice("models/tiny", adapter="runs/lora").label() == "tiny + lora"


def test_stream_together_interleaves_and_reports_a_failure():
    def failing():
        yield "par"
        raise RuntimeError("server went\naway")

    texts = list(stream_together([iter(["a", "b", "c"]), failing(), None]))
    assert texts[-1] == ["abc", "par\n⚠ server went away", ""]
    assert len(texts) == 5 + 1  # one update per piece, then the final state


def test_history_shows_images_then_text(tmp_path):
    turns = [
        {"role": "user", "text": "What?", "images": [tmp_path / "a.png"]},
        {"role": "assistant", "text": "A lung.", "images": []},
    ]
    assert history(turns, "more") == [
        {"role": "user", "content": {"path": str(tmp_path / "a.png")}},
        {"role": "user", "content": "What?"},
        {"role": "assistant", "content": "A lung."},
        {"role": "assistant", "content": "more"},
    ]


def ct_dicom(path: Path, frames: np.ndarray) -> Path:
    """A multi-frame CT DICOM with signed 16-bit Hounsfield values, written with pydicom."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID = CTImageStorage, ExplicitVRLittleEndian
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.NumberOfFrames = "CT", frames.shape[0]
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.PhotometricInterpretation, ds.SamplesPerPixel = "MONOCHROME2", 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = frames.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_window_and_frame_reach_the_picture(tmp_path):
    frames = np.stack([np.full((8, 8), v, np.int16) for v in (-1000, 40, 1000)])
    frames[:, :, :4] += 100
    path = ct_dicom(tmp_path / "ct.dcm", frames)
    assert slice_count(path) == 3
    lung = np.asarray(render(path, "lung", 1))
    brain = np.asarray(render(path, "brain", 1))
    assert (lung == np.asarray(load_image(path, window="lung", slice_index=1))).all()
    assert not (lung == brain).all()
    default = np.asarray(load_image(path, slice_index=1))  # the file's window: none, min..max
    assert (np.asarray(render(path, "file default", 1)) == default).all()
    png = tmp_path / "x.png"
    Image.new("RGB", (4, 4), (9, 9, 9)).save(png)
    assert slice_count(png) == 1 and render(png, "lung").getpixel((0, 0)) == (9, 9, 9)


def test_auth_parsing():
    from medvl.ui.app import parse_auth

    assert parse_auth(None) is None
    assert parse_auth("ann:se:cret") == ("ann", "se:cret")
    with pytest.raises(ConfigError, match="USER:PASSWORD"):
        parse_auth("ann")


def test_cli_says_how_to_install_gradio(monkeypatch, capsys):
    import importlib.util

    from medvl.cli.main import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a)
    )
    assert main(["ui"]) == 2
    assert "pip install 'medvl[ui]'" in capsys.readouterr().err

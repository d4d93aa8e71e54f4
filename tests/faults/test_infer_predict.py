"""Resumable prediction: kills lose at most a batch, reruns skip done ids, bad images are
per-record errors, and the CLI writes the documented line format."""

from __future__ import annotations

import json
import shutil

import pytest

from medvl.cli.main import main
from medvl.data.jsonl import read_records, write_records
from medvl.data.record import Record
from medvl.infer.engine import Engine, GenerationSettings
from medvl.infer.hf_engine import HFEngine
from medvl.infer.predict import PredictionFileError, predict_file, read_prediction_rows
from medvl.models.loading import load_model

SETTINGS = GenerationSettings(max_new_tokens=4)


@pytest.fixture(scope="module")
def engine(tiny_model_dirs):
    return HFEngine(load_model(tiny_model_dirs("qwen2_vl")), batch_size=2, num_workers=1)


@pytest.fixture
def data(tmp_path, phantom_dir):
    """8 records whose images live next to the file; record 'bad' has an unreadable image."""
    root = phantom_dir
    shutil.copytree(root / "images", tmp_path / "images")
    records = read_records(root / "train.jsonl")[:7]
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    bad = Record(
        id="bad",
        dataset="t",
        split="test",
        lang="en",
        images=["images/broken.png"],
        messages=[{"role": "user", "content": "<image>\nWhat is shown?"}],
    )
    records.insert(3, bad)
    path = tmp_path / "data.jsonl"
    write_records(path, records)
    return path


class Killed(Engine):
    """Delegates to a real engine, then dies (like Ctrl-C or SIGKILL) after some batches."""

    name = "hf"

    def __init__(self, inner: Engine, batches: int):
        self.inner, self.batches = inner, batches

    def fingerprint(self):
        return self.inner.fingerprint()

    def stream(self, request, settings):
        return self.inner.stream(request, settings)

    def generate_batches(self, requests, settings):
        for count, batch in enumerate(self.inner.generate_batches(requests, settings), 1):
            yield batch
            if count == self.batches:
                raise KeyboardInterrupt


def test_bad_image_is_an_error_entry_and_the_rest_proceed(engine, data, tmp_path):
    out = tmp_path / "pred.jsonl"
    summary = predict_file(engine, data, out, SETTINGS)
    rows = read_prediction_rows(out)
    assert [r["id"] for r in rows] == [r.id for r in read_records(data)]  # data order at the end
    bad = next(r for r in rows if r["id"] == "bad")
    assert bad["prediction"] is None and "broken.png" in bad["error"]
    good = [r for r in rows if r["id"] != "bad"]
    assert all(r["error"] is None and isinstance(r["prediction"], str) for r in good)
    assert summary.written == 8 and summary.errors == 1 and summary.skipped == 0
    row = good[0]
    assert set(row) >= {"id", "prompt", "prediction", "error", "settings", "model", "seconds"}
    assert row["settings"]["max_new_tokens"] == 4 and row["settings"]["do_sample"] is False
    assert row["model"]["id"].startswith("sha256:") and row["prompt"].endswith("assistant\n")


def test_killed_run_keeps_whole_batches_and_rerun_completes(engine, data, tmp_path):
    out = tmp_path / "pred.jsonl"
    with pytest.raises(KeyboardInterrupt):
        predict_file(Killed(engine, batches=2), data, out, SETTINGS)
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n")
    first = [json.loads(line) for line in text.splitlines()]
    assert 1 <= len(first) <= 4  # the failed-image entry and/or whole batches of 2
    out.write_text(text + '{"id": "phantom-0', encoding="utf-8")  # a write cut by the kill
    summary = predict_file(engine, data, out, SETTINGS)
    rows = read_prediction_rows(out)
    ids = [r["id"] for r in rows]
    assert sorted(ids) == sorted(r.id for r in read_records(data)) and len(set(ids)) == len(ids)
    assert out.read_text(encoding="utf-8").endswith("}\n")
    done_before = [r for r in first if r["error"] is None]
    assert summary.skipped == len(done_before)
    for row in done_before:  # kept, not recomputed
        assert next(r for r in rows if r["id"] == row["id"]) == row


def test_rerun_skips_everything_done_and_retries_errors(engine, data, tmp_path):
    out = tmp_path / "pred.jsonl"
    predict_file(engine, data, out, SETTINGS, limit=3)
    assert len(read_prediction_rows(out)) == 3
    summary = predict_file(engine, data, out, SETTINGS)
    assert summary.skipped + summary.written == 8
    again = predict_file(engine, data, out, SETTINGS)
    assert again.written == 1 and again.skipped == 7  # only the failed image is retried
    kept = predict_file(engine, data, out, SETTINGS, retry_errors=False)
    assert kept.written == 0


def test_resume_refuses_other_settings_or_garbage(engine, data, tmp_path):
    out = tmp_path / "pred.jsonl"
    predict_file(engine, data, out, SETTINGS, limit=2)
    with pytest.raises(PredictionFileError, match="max_new_tokens 4 -> 5"):
        predict_file(engine, data, out, GenerationSettings(max_new_tokens=5))
    summary = predict_file(
        engine, data, out, GenerationSettings(max_new_tokens=5), limit=1, overwrite=True
    )
    assert summary.skipped == 0 and len(read_prediction_rows(out)) == 1
    out.write_text("not json\n" + out.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(PredictionFileError, match=r"pred.jsonl:1: not a prediction line"):
        predict_file(engine, data, out, GenerationSettings(max_new_tokens=5))


def test_resume_refuses_other_pixel_budgets(tiny_model_dirs, data, tmp_path):
    """Same weights, another image pixel budget: other inputs, so no mixing in one file."""
    from medvl.models.loading import LoadOptions

    out = tmp_path / "pred.jsonl"
    model = tiny_model_dirs("qwen2_vl")
    predict_file(HFEngine(load_model(model), num_workers=0), data, out, SETTINGS, limit=2)
    assert read_prediction_rows(out)[0]["model"]["inputs"]["max_pixels"] is None
    smaller = HFEngine(load_model(model, options=LoadOptions(max_pixels=3136)), num_workers=0)
    refused = r"other input settings \(max_pixels None -> 3136\)"
    with pytest.raises(PredictionFileError, match=refused):
        predict_file(smaller, data, out, SETTINGS)


def test_cli_predict_writes_and_resumes(tiny_model_dirs, data, tmp_path, capsys):
    out = tmp_path / "pred.jsonl"
    argv = [
        "predict",
        "--model",
        str(tiny_model_dirs("qwen2_vl")),
        "--data",
        str(data),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--max-new-tokens",
        "3",
    ]
    assert main([*argv, "--limit", "5"]) == 0
    assert "5 predicted (1 errors), 0 already there, 8 records" in capsys.readouterr().out
    assert main(argv) == 0
    assert "4 predicted (1 errors), 4 already there, 8 records" in capsys.readouterr().out
    rows = read_prediction_rows(out)
    assert len(rows) == 8 and {r["settings"]["max_new_tokens"] for r in rows} == {3}
    assert main([*argv[:-2], "--max-new-tokens", "3", "--load-4bit"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err

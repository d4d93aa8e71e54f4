"""Comparison reports from two scored runs: tables, paired tests, files, self-contained HTML."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from medvl.data.jsonl import write_records
from medvl.data.record import Record
from medvl.errors import MedvlError
from medvl.eval.breakdown import BootstrapSettings
from medvl.eval.report import build_report, load_run, markdown, write_report
from medvl.eval.scoring import Metric
from medvl.eval.scoring_run import score_files

OPTIONS = {"A": "CT", "B": "MRI", "C": "X-ray", "D": "Ultrasound"}
N = 40


class Found:
    def __init__(self, letter):
        self.letter, self.rule = letter, "letter" if letter else "unparsed"


def fake_extract(text, options):
    letters = [x for x in re.findall(r"\b([A-Z])\b", text) if x in options]
    return Found(letters[-1] if letters else None)


def exact(pred, ref, *, lang="en"):
    return float(pred.strip().lower() == ref.strip().lower())


def token_f1(pred, ref, *, lang="en"):
    p, r = set(pred.lower().split()), set(ref.lower().split())
    return 2 * len(p & r) / (len(p) + len(r)) if p & r else 0.0


TABLE = {
    "exact_match": Metric("exact_match", "open", exact),
    "token_f1": Metric("token_f1", "open", token_f1),
}


def record(record_id, answer, *, options=None, answer_type="closed", meta=None):
    return Record(
        id=record_id,
        dataset="toy",
        split="test",
        lang="en",
        images=[],
        messages=[{"role": "user", "content": "question?"}],
        answer=answer,
        options=options,
        answer_type=answer_type,
        meta=meta or {},
    )


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def records():
    out = []
    for i in range(N):
        meta = {"modality": ("CT", "MRI")[i % 2]}
        if i % 4 == 3:
            out.append(record(f"o{i}", "lung nodule", answer_type="open", meta=meta))
        else:
            out.append(record(f"m{i}", "ABCD"[i % 4], options=OPTIONS, meta=meta))
    return out


def predictions(good_every: int):
    """Right on every ``good_every``-th record (1 = all right); the open ones half right."""
    rows = []
    for i, rec in enumerate(records()):
        right = i % good_every == 0
        if rec.options:
            text = f"The answer is {rec.answer}" if right else "I am not sure"
        else:
            text = "lung nodule" if right else "lung"
        rows.append({"id": rec.id, "prediction": text})
    return rows


@pytest.fixture
def runs(tmp_path):
    data = tmp_path / "data.jsonl"
    write_records(data, records())
    dirs = []
    for name, every in (("base", 3), ("tuned", 1)):
        pred = write_jsonl(tmp_path / f"{name}.jsonl", predictions(every))
        out = tmp_path / name
        score_files(
            data,
            pred,
            out,
            table=TABLE,
            extract=fake_extract,
            breakdown_keys=["modality"],
            bootstrap=BootstrapSettings(resamples=200),
        )
        dirs.append(out)
    return dirs


def test_report_pairs_runs_and_tests_each_metric(runs):
    report = build_report(runs, names=["base", "tuned"], settings=BootstrapSettings(resamples=500))
    assert report["baseline"] == "base" and report["pairing"]["common_ids"] == N
    assert report["headline"] == "accuracy"
    assert report["overall"]["accuracy"]["tuned"]["mean"] == 1.0
    tests = {t["metric"]: t for t in report["tests"]}
    acc = tests["accuracy"]
    assert acc["n"] == N and acc["delta"] > 0.5 and acc["p_value"] < 0.01
    assert acc["mcnemar"]["b"] == 0 and acc["mcnemar"]["c"] == acc["n"] - round(
        acc["mean_baseline"] * N
    )
    assert acc["mcnemar"]["p_value"] < 0.001
    assert tests["token_f1"]["mcnemar"] is None  # not a 0/1 metric
    assert set(report["breakdowns"]) >= {"modality", "kind", "lang"}
    assert report["breakdowns"]["modality"]["CT"]["accuracy"]["tuned"]["n"] == N // 2


def test_same_run_twice_is_not_significant(runs):
    report = build_report([runs[0], runs[0]], settings=BootstrapSettings(resamples=200))
    assert [r["name"] for r in report["runs"]] == ["base", "base-2"]
    assert all(t["p_value"] == 1.0 and t["delta"] == 0.0 for t in report["tests"])
    assert report["tests"][0]["mcnemar"]["p_value"] == 1.0


def test_report_files_are_written(runs, tmp_path):
    report = build_report(runs, baseline="base", settings=BootstrapSettings(resamples=200))
    paths = write_report(report, tmp_path / "report")
    assert sorted(paths) == sorted(
        ["report.md", "report.json", "estimates.csv", "tests.csv", "benchmarks.csv", "report.html"]
    )
    assert (
        json.loads(paths["report.json"].read_text(encoding="utf-8"))["pairing"]["common_ids"] == N
    )
    md = paths["report.md"].read_text(encoding="utf-8")
    assert "## Overall" in md and "## By modality" in md
    assert "| metric | n (clusters) | base · medvl | tuned · medvl |" in md
    estimates = list(
        csv.DictReader(io.StringIO(paths["estimates.csv"].read_text(encoding="utf-8")))
    )
    overall = [r for r in estimates if r["breakdown"] == "overall" and r["metric"] == "accuracy"]
    assert {r["run"] for r in overall} == {"base", "tuned"}
    tests = list(csv.DictReader(io.StringIO(paths["tests.csv"].read_text(encoding="utf-8"))))
    assert tests[0]["metric"] == "accuracy" and tests[0]["mcnemar_method"] in ("exact", "chi2_cc")


def test_html_is_self_contained_with_tables_and_plots(runs):
    from medvl.eval.report_html import render_html

    report = build_report(runs, settings=BootstrapSettings(resamples=200))
    html = render_html(report)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert html.count("<table>") == html.count("<h2>")  # every section is a table
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    titles = [t for t, _ in images]
    assert titles[:2] == ["Overall (mean, 95% CI)", "Deltas against the baseline"]
    assert "accuracy by modality (mean, 95% CI)" in titles
    assert all(len(data) > 1000 for _, data in images)
    assert not re.search(r"https?://|<script|<link|@import|url\(", html)
    assert "<style>" in html


def test_bad_run_folder_and_names(runs, tmp_path):
    with pytest.raises(MedvlError, match=r"no metrics\.json"):
        load_run(tmp_path / "nothing")
    with pytest.raises(MedvlError, match="--names has 1 name"):
        build_report(runs, names=["a"])
    with pytest.raises(MedvlError, match="--baseline 'zz' is not one of the runs"):
        build_report(runs, baseline="zz")


def test_markdown_escapes_pipes(runs):
    report = build_report(runs, names=["a|b", "c"], settings=BootstrapSettings(resamples=50))
    assert "a\\|b" in markdown(report)


def test_cli_report(runs, tmp_path, capsys):
    from medvl.cli.main import main

    out = tmp_path / "cmp"
    argv = [
        "report",
        *map(str, runs),
        "--out",
        str(out),
        "--names",
        "base,tuned",
        "--resamples",
        "200",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"compared 2 runs on {N} common ids (baseline base)" in text
    assert "tuned - base: +" in text and "McNemar p=" in text
    assert (out / "report.html").is_file()
    assert main(["report", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "no metrics.json" in capsys.readouterr().err


def test_tests_are_holm_corrected_per_pair(runs):
    from medvl.eval.compare import holm

    report = build_report(runs, names=["base", "tuned"], settings=BootstrapSettings(resamples=300))
    tests = report["tests"]
    assert [t["p_holm"] for t in tests] == holm([t["p_value"] for t in tests])
    assert all(
        t["p_holm"] >= t["p_value"] and t["significant"] == (t["p_holm"] < 0.05) for t in tests
    )
    assert all(t["clusters"] == t["n"] and t["protocol"] == "medvl" for t in tests)  # no images
    assert report["settings"]["multiple_testing"].startswith("Holm")
    md = markdown(report)
    assert "p Holm" in md and "| accuracy | tuned | medvl |" in md


def scored_run(tmp_path, name, dataset, every, *, protocol=None, run_json=None):
    """A run of ``every``-th-right predictions on a copy of the records labelled ``dataset``."""
    recs = [Record.from_dict({**r.to_dict(), "dataset": dataset}) for r in records()]
    data = tmp_path / f"{name}.data.jsonl"
    write_records(data, recs)
    pred = write_jsonl(tmp_path / f"{name}.pred.jsonl", predictions(every))
    out = tmp_path / name
    score_files(
        data,
        pred,
        out,
        table=TABLE,
        extract=fake_extract,
        bootstrap=BootstrapSettings(resamples=100),
    )
    if protocol:
        metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        metrics["settings"]["protocol"] = {"name": protocol}
        (out / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    if run_json:
        (out / "run.json").write_text(json.dumps(run_json), encoding="utf-8")
    return out


def test_runs_on_different_benchmarks_give_a_model_by_benchmark_table(tmp_path):
    model_a = {"bench": {"name": "vqa_rad"}, "model": {"model": "model-a"}}
    dirs = [
        scored_run(tmp_path, "a-rad", "ignored", 3, run_json=model_a),
        scored_run(tmp_path, "a-slake", "slake", 2, run_json={"model": {"model": "model-a"}}),
        scored_run(tmp_path, "b-rad", "vqa_rad", 1, run_json={"model": {"model": "model-b"}}),
        scored_run(
            tmp_path,
            "b-slake",
            "slake",
            1,
            protocol="lmms-eval",
            run_json={"model": {"model": "model-b"}},
        ),
    ]
    report = build_report(dirs, settings=BootstrapSettings(resamples=200))
    assert report["mode"] == "benchmarks" and report["benchmarks"] == ["vqa_rad", "slake"]
    table = report["table"]
    assert table["models"] == ["model-a", "model-b"]
    rad_a = table["cells"]["model-a"]["vqa_rad"]
    assert rad_a["metric"] == "accuracy" and rad_a["protocol"] == "medvl" and rad_a["n"] == N
    # a-rad right on every 3rd record: 14 of 40 (the open records i % 4 == 3 right when i % 3 == 0)
    assert rad_a["mean"] == pytest.approx(14 / 40)
    slake_a = table["cells"]["model-a"]["slake"]["mean"]
    assert table["average"]["model-a"]["mean"] == pytest.approx((14 / 40 + slake_a) / 2)
    assert table["average"]["model-b"] is None
    assert any("model-b: no average" in n and "lmms-eval" in n for n in table["notes"])
    # each benchmark's runs are paired against the run of the baseline's model
    assert [c["baseline"] for c in report["comparisons"]] == ["a-rad", "a-slake"]
    assert {t["run"] for t in report["tests"]} == {"b-rad", "b-slake"}
    slake_tests = report["comparisons"][1]["tests"]
    assert slake_tests[0]["protocol"] == "lmms-eval vs medvl"
    assert any("different protocols" in w for w in report["warnings"])
    paths = write_report(report, tmp_path / "report")
    cells = list(csv.DictReader(io.StringIO(paths["benchmarks.csv"].read_text(encoding="utf-8"))))
    assert {(c["model"], c["benchmark"], c["protocol"]) for c in cells} >= {
        ("model-b", "slake", "lmms-eval"),
        ("model-a", "average", "medvl"),
    }
    md = paths["report.md"].read_text(encoding="utf-8")
    assert (
        "## Models × benchmarks" in md
        and "| model | vqa_rad (accuracy) | slake (accuracy) | average |" in md
    )
    assert " · lmms-eval, n=40 (40)" in md and "## slake: Overall" in md
    assert "published on vqa_rad under medvl" in md  # medvl.eval.published's lines
    html = paths["report.html"].read_text(encoding="utf-8")
    assert html.count("<table>") == html.count("<h2>") and "slake: Overall (mean, 95% CI)" in html
    estimates = list(
        csv.DictReader(io.StringIO(paths["estimates.csv"].read_text(encoding="utf-8")))
    )
    assert {e["benchmark"] for e in estimates} == {"vqa_rad", "slake"}


def test_single_records_are_flagged(tmp_path):
    recs = records()[:3]
    recs[0] = Record.from_dict({**recs[0].to_dict(), "meta": {"modality": "PET"}})
    write_records(tmp_path / "d.jsonl", recs)
    pred = write_jsonl(tmp_path / "p.jsonl", predictions(1)[:3])
    score_files(
        tmp_path / "d.jsonl",
        pred,
        tmp_path / "r",
        table=TABLE,
        extract=fake_extract,
        breakdown_keys=["modality"],
    )
    md = markdown(build_report([tmp_path / "r"], settings=BootstrapSettings(resamples=50)))
    assert "| PET | 1 (1) ⚠ n<10 |" in md and "⚠ n<10: fewer than 10 records" in md


def test_cli_report_across_benchmarks(tmp_path, capsys):
    from medvl.cli.main import main

    dirs = [scored_run(tmp_path, "x", "vqa_rad", 2), scored_run(tmp_path, "y", "slake", 1)]
    assert main(["report", *map(str, dirs), "--out", str(tmp_path / "o"), "--resamples", "50"]) == 0
    text = capsys.readouterr().out
    assert "2 model(s) x 2 benchmarks" in text and "vqa_rad" in text and " · medvl" in text
    assert (tmp_path / "o" / "benchmarks.csv").is_file()


def test_row_labels_split_only_clashing_models():
    from medvl.eval.benchmark_table import row_labels

    infos = [
        {"name": "r1", "model": "m", "benchmark": "a", "protocol": "medvl"},
        {"name": "r2", "model": "m", "benchmark": "a", "protocol": "lmms-eval"},
        {"name": "r3", "model": "m", "benchmark": "b", "protocol": "medvl"},
        {"name": "r4", "model": "n", "benchmark": "a", "protocol": "medvl"},
        {"name": "r5", "model": "n", "benchmark": "b", "protocol": "lmms-eval"},
    ]
    assert row_labels(infos) == {
        "r1": "m [medvl]",
        "r2": "m [lmms-eval]",
        "r3": "m [medvl]",
        "r4": "n",
        "r5": "n",
    }

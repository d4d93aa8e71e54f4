"""The report explains itself: identity block, metric glossary, n<10 flags, per-category deltas
against the baseline (hand-computed), and a self-contained gallery of examples.

The fixture is ten closed yes/no questions in three modality groups, scored by the real scorer,
for two models whose right/wrong pattern is set by hand:

=====  =========  ======  =============  ==============
group  ids        patient baseline right tuned right
=====  =========  ======  =============  ==============
CT     c0..c3     p1 p1 p2 p2  c0        c0 c1 c2
MRI    m0..m3     p3 p3 p4 p4  m0..m3    m0 m1 m3
PET    x0 x1      p5 p5        none      x0 x1
=====  =========  ======  =============  ==============
"""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image, ImageDraw

from medvl.data.jsonl import write_records
from medvl.data.record import Record
from medvl.eval.breakdown import BootstrapSettings
from medvl.eval.compare import paired_bootstrap
from medvl.eval.glossary import GLOSSARY, PROTOCOL_GLOSSARY, describe, lookup
from medvl.eval.metrics import METRICS
from medvl.eval.report import build_report, markdown, write_report
from medvl.eval.report_html import render_html
from medvl.eval.report_tables import glossary_table, shown_metrics
from medvl.eval.scoring_run import score_files

GROUPS = {"c": ("CT", ["p1", "p1", "p2", "p2"]), "m": ("MRI", ["p3", "p3", "p4", "p4"])}
GROUPS["x"] = ("PET", ["p5", "p5"])
GOLD = {"c0": "yes", "c1": "no", "c2": "yes", "c3": "no", "m0": "yes", "m1": "no"}
GOLD |= {"m2": "yes", "m3": "no", "x0": "yes", "x1": "no"}
BASE_RIGHT = {"c0", "m0", "m1", "m2", "m3"}
TUNED_RIGHT = {"c0", "c1", "c2", "m0", "m1", "m3", "x0", "x1"}
BASE_MODEL = {
    "id": "sha256:aaaa1111bbbb2222",
    "path": "/models/Qwen2-VL-2B-Instruct",
    "adapters": [],
}
TUNED_FINGERPRINT = {
    "id": "sha256:cccc3333dddd4444",
    "path": "/models/Qwen2-VL-2B-Instruct",
    "adapters": ["/runs/sft-rad/final"],
}
SETTINGS = {"max_new_tokens": 64, "do_sample": False, "temperature": 1.0, "top_p": 1.0}
SETTINGS |= {"top_k": None, "repetition_penalty": 1.0, "seed": None}


def _image(path, shade):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (400, 300), (shade, shade, shade))
    ImageDraw.Draw(image).ellipse((120, 80, 280, 220), fill=(250, 250, 250))
    image.save(path)


def _records(root):
    out = []
    for prefix, (modality, patients) in GROUPS.items():
        for k, patient in enumerate(patients):
            rid = f"{prefix}{k}"
            _image(root / "img" / f"{rid}.png", 20 * (k + 1))
            out.append(
                Record(
                    id=rid,
                    dataset="toy_rad",
                    split="test",
                    lang="en",
                    images=[f"img/{rid}.png"],
                    messages=[{"role": "user", "content": f"<image>\nIs there a lesion ({rid})?"}],
                    answer=GOLD[rid],
                    answer_type="closed",
                    meta={"modality": modality, "patient_id": patient},
                )
            )
    return out


def _reply(rid, right, *, wordy):
    answer = GOLD[rid] if right else {"yes": "no", "no": "yes"}[GOLD[rid]]
    return f"{answer.capitalize()}, I think so." if wordy and rid == "c2" else answer


def _predictions(path, right, model, *, wordy):
    rows = [
        {
            "id": rid,
            "prompt": f"<|im_start|>user\nIs there a lesion ({rid})?<|im_end|>",
            "prediction": _reply(rid, rid in right, wordy=wordy),
            "error": None,
            "settings": SETTINGS,
            "model": model,
            "engine": "hf",
        }
        for rid in GOLD
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def runs(tmp_path):
    data = tmp_path / "data.jsonl"
    write_records(data, _records(tmp_path))
    out = {}
    for name, right, model in (("base", BASE_RIGHT, BASE_MODEL), ("tuned", TUNED_RIGHT, None)):
        pred = _predictions(
            tmp_path / f"{name}.pred.jsonl", right, model or TUNED_FINGERPRINT, wordy=True
        )
        out[name] = tmp_path / name
        score_files(
            data, pred, out[name], breakdown_keys=["modality"], bootstrap=BootstrapSettings(200)
        )
    run_json = {  # as medvl eval run writes it (runner.run_benchmark)
        "bench": {"name": "toy_rad", "description": "hand-made closed questions"},
        "data": {"input": "/data/toy_rad.jsonl", "sha256": "f" * 64},
        "model": {
            "fingerprint": TUNED_FINGERPRINT,
            "model": "/models/Qwen2-VL-2B-Instruct",
            "adapters": ["/runs/sft-rad/final"],
            "engine": "hf",
            "base_url": None,
        },
        "prompt": {
            "name": "short_answer",
            "hash": "0123456789ab",
            "description": "lmms-eval's post-prompt",
            "mcq": None,
            "question": "{question}\n{instruction}",
            "instructions": [["en", "Answer the question using a single word or phrase."]],
            "system": "You are a radiologist.",
        },
        "generation": {**SETTINGS, "max_new_tokens": 32},
    }
    (out["tuned"] / "run.json").write_text(json.dumps(run_json), encoding="utf-8")
    return out


def _report(runs, resamples=400):
    return build_report(
        [runs["base"], runs["tuned"]], settings=BootstrapSettings(resamples=resamples)
    )


def test_group_deltas_are_the_hand_computed_paired_differences(runs):
    report = _report(runs)
    modality = report["group_deltas"]["modality"]
    assert list(modality) == ["CT", "MRI", "PET"]
    ct, mri, pet = (modality[g]["tuned"] for g in ("CT", "MRI", "PET"))
    assert (ct["n"], ct["clusters"], ct["mean_baseline"], ct["mean_run"]) == (4, 2, 0.25, 0.75)
    assert ct["delta"] == pytest.approx(0.5)
    assert (mri["n"], mri["clusters"], mri["delta"]) == (4, 2, pytest.approx(-0.25))
    # every PET pair goes 0 -> 1: every resample gives +1, so the interval is exactly [1, 1]
    assert (pet["n"], pet["clusters"], pet["delta"], pet["ci_low"], pet["ci_high"]) == (
        2,
        1,
        1.0,
        1.0,
        1.0,
    )
    # the interval is compare.paired_bootstrap's on the group's pairs and patients
    again = paired_bootstrap(
        [1, 0, 0, 0], [1, 1, 1, 0], BootstrapSettings(400), ["p1", "p1", "p2", "p2"]
    )
    assert (ct["ci_low"], ct["ci_high"]) == (again.ci_low, again.ci_high)
    overall = next(t for t in report["tests"] if t["metric"] == "accuracy")
    assert overall["delta"] == pytest.approx(0.8 - 0.5)
    md = markdown(report)
    assert "## Deltas by category against base" in md
    ci = f"[{ct['ci_low']:+.3f}, {ct['ci_high']:+.3f}]"
    assert f"| modality | CT | 4 (2) ⚠ n<10 | 0.250 | +0.500 {ci} |" in md
    assert "| modality | PET | 2 (1) ⚠ n<10 | 0.000 | +1.000 [+1.000, +1.000] |" in md


def test_identity_names_models_readably_and_says_not_recorded(runs):
    report = _report(runs, 50)
    base, tuned = (r["identity"] for r in report["runs"])
    assert base["model"] == "Qwen2-VL-2B-Instruct"
    assert base["model fingerprint"] == "sha256:aaaa1111bbbb2222"
    assert tuned["model"] == "Qwen2-VL-2B-Instruct + sft-rad/final"
    assert tuned["model fingerprint"] == "sha256:cccc3333dddd4444"
    # base was scored from a predictions file alone: no template, system prompt or source
    assert base["prompt template"] == base["system prompt"] == "not recorded"
    assert base["data source"] == "not recorded" and base["engine"] == "hf"
    assert base["generation"] == "greedy, max_new_tokens=64"
    assert base["prompt sent (first record)"].startswith("<|im_start|>user")
    assert tuned["system prompt"] == "You are a radiologist."
    assert "short_answer (digest 0123456789ab)" in tuned["prompt template"]
    assert "Answer the question using a single word or phrase." in tuned["prompt template"]
    assert tuned["generation"] == "greedy, max_new_tokens=32"
    assert tuned["benchmark"] == "toy_rad: hand-made closed questions"
    assert len(base["data sha256"]) == 12 and base["protocol"].startswith("medvl: ")
    assert [r["model"] for r in report["runs"]] == [base["model"], tuned["model"]]
    html = render_html(report)
    assert "What was compared" in html and "You are a radiologist." in html
    assert "{&#39;" not in html and "{'" not in html  # no dict repr anywhere


def test_identity_from_metrics_alone_parses_the_old_dict_repr(runs):
    """Without the predictions file, the model comes from metrics.json's prediction_models,
    which older scorers filled with the dict's Python repr."""
    (runs["base"].parent / "base.pred.jsonl").unlink()
    metrics = json.loads((runs["base"] / "metrics.json").read_text(encoding="utf-8"))
    metrics["settings"]["prediction_models"] = [str(BASE_MODEL)]  # as medvl 0.1 wrote it
    (runs["base"] / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    report = build_report([runs["base"]], settings=BootstrapSettings(resamples=50))
    facts = report["runs"][0]["identity"]
    assert facts["model"] == "Qwen2-VL-2B-Instruct"
    assert facts["generation"] == facts["prompt sent (first record)"] == "not recorded"
    assert facts["engine"] == "not recorded"


def test_same_folder_name_different_weights_get_the_fingerprint(runs, tmp_path):
    tuned_json = runs["tuned"] / "run.json"
    body = json.loads(tuned_json.read_text(encoding="utf-8"))
    body["model"] = {"fingerprint": {**BASE_MODEL, "id": "sha256:eeee5555ffff6666"}}
    tuned_json.write_text(json.dumps(body), encoding="utf-8")
    report = _report(runs, 50)
    assert [r["model"] for r in report["runs"]] == [
        "Qwen2-VL-2B-Instruct (aaaa1111)",
        "Qwen2-VL-2B-Instruct (eeee5555)",
    ]


def test_glossary_covers_every_medvl_metric_with_its_scope():
    for name, spec in METRICS.items():
        entry = GLOSSARY[name]
        assert entry.scope in ({spec.kind} | ({"open_strict"} if spec.kind == "open" else set()))
        assert entry.text.endswith(".") and len(entry.text) > 40
    assert lookup("accuracy").label == "every scored question"
    assert lookup("closed_accuracy").label == "closed-only"
    assert lookup("open_recall_llava").label == "open-only"
    # one id, two meanings: MedEvalKit's "recall" is its precision (swapped unpacking)
    assert "precision" in describe("recall", "medevalkit") and describe("recall", "llava-med")
    assert describe("recall", "medevalkit") != describe("recall", "llava-med")
    assert describe("made_up_metric").startswith("no description")
    assert all(
        p in ("llava-med", "medevalkit", "lmms-eval", "vlmevalkit", "medvlm-r1", "huatuogpt-vision")
        for p, _ in PROTOCOL_GLOSSARY
    )


def _mixed_records():
    """One record of every kind, so every default medvl metric appears."""
    user = [{"role": "user", "content": "What is shown?"}]
    kinds = [  # (id, answer, what makes the kind)
        ("q1", "A", {"options": {"A": "CT", "B": "MRI"}}),
        ("q2", "yes", {"answer_type": "closed"}),
        ("q3", "left lung nodule", {"answer_type": "open"}),
        (
            "q4",
            "No acute cardiopulmonary process. Mild cardiomegaly.",
            {"question_type": "report"},
        ),
    ]
    return [
        Record(
            id=rid,
            dataset="toy",
            split="test",
            lang="en",
            images=[],
            messages=user,
            answer=answer,
            **extra,
        )
        for rid, answer, extra in kinds
    ]


@pytest.mark.parametrize(
    ("protocol", "benchmark", "kinds"),
    [
        ("medvl", None, None),
        ("llava-med", "vqa_rad", "closed_open"),
        ("medevalkit", "vqa_rad", "closed_open"),
    ],
)
def test_every_metric_a_report_shows_has_a_glossary_entry(tmp_path, protocol, benchmark, kinds):
    records = _mixed_records()
    if kinds:
        records = [r for r in records if r.answer_type in ("closed", "open")]
    write_records(tmp_path / "d.jsonl", records)
    replies = {"q1": "A", "q2": "yes", "q3": "a nodule in the left lung", "q4": "Cardiomegaly."}
    pred = tmp_path / "p.jsonl"
    pred.write_text(
        "".join(json.dumps({"id": k, "prediction": v}) + "\n" for k, v in replies.items()),
        encoding="utf-8",
    )
    score_files(
        tmp_path / "d.jsonl",
        pred,
        tmp_path / "r",
        protocol=protocol,
        benchmark=benchmark,
        bootstrap=BootstrapSettings(resamples=20),
    )
    report = build_report([tmp_path / "r"], settings=BootstrapSettings(resamples=20))
    shown = shown_metrics(report)
    assert len(shown) >= 2
    missing = [(m, p) for m, p in shown if lookup(m, p) is None]
    assert not missing, f"metric ids shown without a glossary entry: {missing}"
    table = glossary_table(report)
    assert [row[0] for row in table["rows"]] == list(dict.fromkeys(m for m, _ in shown))
    assert all(row[2] != "?" for row in table["rows"])
    html = render_html(report)
    assert 'id="metric-glossary"' in html and "Metric glossary" in html
    # the check can fail: an id the glossary lacks shows up as unknown
    report["overall"]["made_up_metric"] = {"r": {"n": 1, "mean": 0.5}}
    assert ["made_up_metric", protocol, "?"] in [r[:3] for r in glossary_table(report)["rows"]]


def test_small_cells_are_flagged_with_a_legend(runs):
    report = _report(runs, 50)
    html = render_html(report)
    assert '<td class="small-n">4 (2) ⚠ n&lt;10</td>' in html
    assert "<td>10 (5)</td>" in html  # the overall n is not flagged
    assert 'class="legend">⚠ n&lt;10: fewer than 10 records' in html


def test_gallery_shows_disagreements_and_assertive_errors_self_contained(runs):
    report = _report(runs, 50)
    gallery = report["gallery"]
    # baseline right only on m2; baseline wrong on c1, c2, x0, x1: alternated, in data order
    assert [e["id"] for e in gallery["disagreements"]] == ["m2", "c1", "c2", "x0", "x1"]
    # wrong replies, shortest first (then data order): base x0 "no", c1 "yes", c3 "yes", x1
    # "yes", c2 "No, I think so."; tuned m2 "no", c3 "yes"
    assert [e["id"] for e in gallery["errors"]["base"]] == ["x0", "c1", "c3"]
    assert [e["id"] for e in gallery["errors"]["tuned"]] == ["m2", "c3"]
    c2 = gallery["disagreements"][2]
    assert c2["question"] == "Is there a lesion (c2)?" and c2["gold"] == "yes"
    assert c2["runs"]["base"] == {
        "prediction": "No, I think so.",
        "status": "ok",
        "extracted": "no",
        "rule": c2["runs"]["base"]["rule"],
        "correct": 0.0,
    }
    assert c2["runs"]["base"]["rule"] and c2["runs"]["tuned"]["correct"] == 1.0
    assert "no token probabilities" in gallery["rules"]["errors"]
    paths = write_report(report, runs["base"].parent / "out")
    html = paths["report.html"].read_text(encoding="utf-8")
    assert "Where the runs disagree (baseline base)" in html and "Assertive errors of base" in html
    thumbs = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(thumbs) == 5 + 3 + 2  # one image per example
    for data in set(thumbs):
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.format == "JPEG" and max(image.size) == 160 and len(data) < 12_000
    assert "no token probabilities" in html and "No, I think so." in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert not re.search(r"<script|<link|@import|url\(", html)
    assert json.loads(paths["report.json"].read_text(encoding="utf-8"))["gallery"]["disagreements"]
    assert "base64" not in paths["report.json"].read_text(encoding="utf-8")


def test_gallery_says_why_images_are_missing(runs):
    report = _report(runs, 50)
    (runs["base"].parent / "img" / "c1.png").unlink()
    html = render_html(report)
    assert "image not shown: c1.png" in html
    (runs["base"].parent / "data.jsonl").unlink()
    report = _report(runs, 50)
    assert "not found: no questions or images" in report["gallery"]["problem"]
    assert "question not recorded" in render_html(report)

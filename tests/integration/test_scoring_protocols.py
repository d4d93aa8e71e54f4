"""One set of predictions scored under several protocols, end to end from a SLAKE folder.

The data is a hand-written SLAKE 1.0 ``test.json`` (the published keys, compact one-line JSON,
``imgs/xmlabN/source.jpg``) converted by the real reader; the predictions are the kind of answers
a chat model gives. Each protocol's per-record verdicts below were worked out by hand from the
rules its module cites (LLaVA-Med ``run_eval.py``, lmms-eval ``tasks/slake/utils.py``, MedEvalKit),
and the README's worked example quotes these numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from medvl.cli.main import main
from medvl.data.formats import convert
from medvl.errors import ConfigError, MedvlError
from medvl.eval.scoring_run import score_files

# (image, question, gold, answer_type, content_type, prediction)
ROWS = (
    (0, "Does the picture contain lung?", "Yes", "CLOSED", "Organ", "Yes, both lungs are visible."),
    (0, "Is the lung healthy?", "No", "CLOSED", "Abnormality", "Normal."),
    (1, "Is there a liver lesion?", "No", "CLOSED", "Abnormality", "Yes"),
    (1, "Does the liver look normal?", "Yes", "CLOSED", "Abnormality", "No, there is a mass."),
    (2, "Which is the biggest organ in this image?", "Liver", "OPEN", "Organ", "The liver"),
    (2, "What modality is used to take this image?", "CT", "OPEN", "Modality", "CT"),
    (3, "Where is the abnormality?", "Left Lung", "OPEN", "Position", "In the left lung."),
    (3, "Which side is the lesion on?", "Left", "CLOSED", "Position", "left"),
    (4, "What modality is used to take this image?", "X-Ray", "OPEN", "Modality", "x-ray"),
    (
        4,
        "Is this a T1 weighted image?",
        "No",
        "CLOSED",
        "Modality",
        "It is not a T1 weighted image.",
    ),
)
# correct per record, in ROWS order (None: the protocol leaves the record out of accuracy)
EXPECTED = {
    # yes/no read by words; open: normalised exact match (articles and periods dropped)
    "medvl": (1, 0, 0, 0, 1, 1, 0, 1, 1, 1),
    # 'yes'/'no' substrings: "normal" holds "no" (right); wrong yes/no answers dropped;
    # "left" holds neither word (0); open questions get recall, no accuracy
    "llava-med": (1, 1, None, None, None, None, None, 0, None, 1),
    # normalised exact match of the whole answer
    "lmms-eval": (0, 0, 0, 0, 0, 1, 0, 1, 1, 0),
    "medevalkit": (0, 0, 0, 0, 0, 1, 0, 1, 1, 0),
}


@pytest.fixture(scope="module")
def slake_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("slake_protocols")
    folder = root / "Slake1.0"
    records, predictions = [], []
    for i, (image, question, gold, answer_type, content, prediction) in enumerate(ROWS):
        target = folder / "imgs" / f"xmlab{image}" / "source.jpg"
        if not target.exists():
            target.parent.mkdir(parents=True)
            Image.new("RGB", (32, 32), (40 * image, 0, 0)).save(target)
        records.append(
            {
                "img_id": image,
                "img_name": f"xmlab{image}/source.jpg",
                "question": question,
                "answer": gold,
                "q_lang": "en",
                "location": "Chest",
                "modality": "CT",
                "answer_type": answer_type,
                "base_type": "vqa",
                "content_type": content,
                "triple": ["vhead", "_", "_"],
                "qid": 100 + i,
            }
        )
        predictions.append({"id": f"slake-{100 + i}", "prediction": prediction})
    compact = json.dumps(records, ensure_ascii=False, separators=(",", ":"))
    (folder / "test.json").write_text(compact, encoding="utf-8")
    data = root / "slake_test.jsonl"
    report = convert("slake", folder, data, split="test", lang="en")
    assert report.written == len(ROWS)
    pred = root / "pred.jsonl"
    pred.write_text("".join(json.dumps(p) + "\n" for p in predictions), encoding="utf-8")
    return data, pred


@pytest.mark.parametrize("protocol", sorted(EXPECTED))
def test_each_protocol_scores_the_same_predictions_its_own_way(slake_run, tmp_path, protocol):
    data, pred = slake_run
    run = score_files(data, pred, tmp_path, protocol=protocol, benchmark="slake")
    rows = [json.loads(line) for line in run.scores_path.read_text().splitlines()]
    assert [r["correct"] for r in rows] == list(EXPECTED[protocol])
    assert all(r["rule"] for r in rows if r["kind"] == "closed")  # every verdict names its rule
    scored = [c for c in EXPECTED[protocol] if c is not None]
    accuracy = run.metrics["summary"]["accuracy"]
    assert accuracy["n"] == len(scored)
    assert accuracy["mean"] == pytest.approx(sum(scored) / len(scored))
    assert run.metrics["counts"]["not_scored"] == EXPECTED[protocol].count(None)
    settings = run.metrics["settings"]
    assert settings["protocol"]["name"] == protocol and settings["protocol"]["follows"]
    assert settings["benchmark"] == "slake"


def test_worked_example_numbers(slake_run, tmp_path):
    """The README's table: the same ten answers, 0.60 / 0.75 / 0.30 / 0.30."""
    data, pred = slake_run
    means = {
        p: score_files(data, pred, tmp_path / p, protocol=p, benchmark="slake").metrics["summary"][
            "accuracy"
        ]["mean"]
        for p in EXPECTED
    }
    assert means == pytest.approx(
        {"medvl": 0.6, "llava-med": 0.75, "lmms-eval": 0.3, "medevalkit": 0.3}
    )


def test_llava_med_keeps_its_open_recall(slake_run, tmp_path):
    data, pred = slake_run
    run = score_files(data, pred, tmp_path, protocol="llava-med", benchmark="slake")
    # every open prediction holds all gold words: recall 1 on all four
    assert run.metrics["summary"]["recall"]["mean"] == pytest.approx(1.0)
    assert run.metrics["summary"]["recall"]["n"] == 4


def test_protocol_refuses_metrics_and_uncovered_benchmarks(slake_run, tmp_path):
    data, pred = slake_run
    with pytest.raises(ConfigError, match="--metrics applies to the medvl protocol"):
        score_files(data, pred, tmp_path, protocol="llava-med", metrics=["token_f1"])
    with pytest.raises(MedvlError, match="no rules for benchmark 'slake'"):
        score_files(data, pred, tmp_path, protocol="medvlm-r1", benchmark="slake")
    with pytest.raises(MedvlError, match=r"lmms-eval"):
        score_files(data, pred, tmp_path, protocol="lmms")


def test_cli_scores_under_a_protocol_and_lists_them(slake_run, tmp_path, capsys):
    data, pred = slake_run
    args = ["eval", "score", "--data", str(data), "--pred", str(pred), "--out", str(tmp_path)]
    assert main([*args, "--bench", "slake", "--protocol", "llava-med"]) == 0
    out = capsys.readouterr().out
    assert "protocol: llava-med" in out and "not scored         6 of 10" in out
    body = json.loads((tmp_path / "metrics.json").read_text())
    assert body["settings"]["protocol"]["name"] == "llava-med"
    assert main(["eval", "protocols"]) == 0
    listing = capsys.readouterr().out
    for name in EXPECTED:
        assert f"\n{name}: " in f"\n{listing}"
    assert main([*args, "--protocol", "nope"]) == 2

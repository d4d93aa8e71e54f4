"""`medvl run`: steps in order, skipped when up to date, rerun from the first changed step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvl.errors import ConfigError, MedvlError
from medvl.pipeline.runner import DONE, plan, run_pipeline
from medvl.pipeline.spec import load_pipeline
from medvl.pipeline.steps import headline_table

ROOT = Path(__file__).resolve().parents[2]

SMALL = """\
name: small
workdir: {workdir}
steps:
  - {{name: data, kind: phantom, with: {{n: 40, seed: 1}}}}
  - {{name: base, kind: tiny, with: {{family: qwen2_vl}}}}
  - name: tuned
    kind: sft
    recipe: {recipe}
    with: {{model: "${{base}}", data.train: "${{data}}/train.jsonl", data.val: null,
           max_steps: 2, batch_size: 4}}
  - {{name: eval_base, kind: eval, with: {{model: "${{base}}", data: "${{data}}/test.jsonl",
      max_new_tokens: 4}}}}
  - {{name: eval_tuned, kind: eval, with: {{model: "${{tuned}}", data: "${{data}}/test.jsonl",
      max_new_tokens: 4}}}}
  - name: report
    kind: report
    with: {{runs: ["${{eval_base}}", "${{eval_tuned}}"], names: [base, tuned], baseline: base}}
"""


def test_run_skip_and_partial_rerun(tmp_path):
    file = tmp_path / "small.yaml"
    recipe = ROOT / "recipes" / "tiny" / "sft_instruct.yaml"
    file.write_text(SMALL.format(workdir=tmp_path / "run", recipe=recipe))
    first = run_pipeline(load_pipeline(file), echo=lambda _: None)
    assert set(first.seconds) == {"data", "base", "tuned", "eval_base", "eval_tuned", "report"}
    assert (tmp_path / "run" / "report" / "report.html").is_file()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [s["status"] for s in manifest["steps"]] == ["ran"] * 6
    again = run_pipeline(load_pipeline(file), echo=lambda _: None)
    assert again.seconds == {}  # everything up to date
    edited = load_pipeline(file, ["tuned.learning_rate=5e-4"])
    assert [p.step.name for p in plan(edited) if not p.up_to_date] == [
        "tuned",
        "eval_tuned",
        "report",
    ]
    third = run_pipeline(edited, echo=lambda _: None)
    assert set(third.seconds) == {"tuned", "eval_tuned", "report"}


def test_bad_pipelines_name_the_problem(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text("steps:\n  - {name: a, kind: bake}\n")
    with pytest.raises(ConfigError, match="unknown kind 'bake'; kinds: phantom"):
        plan(load_pipeline(file))
    file.write_text(
        "steps:\n  - {name: a, kind: tiny, with: {family: '${later}'}}\n"
        "  - {name: later, kind: phantom}\n"
    )
    with pytest.raises(ConfigError, match=r"\$\{later\} names no earlier step"):
        load_pipeline(file)
    file.write_text("steps:\n  - {name: a, kind: phantom}\n")
    with pytest.raises(ConfigError, match="no step 'b'"):
        load_pipeline(file, ["b.n=3"])


def test_eval_step_applies_a_prompt_template_and_scores_the_original_answers(tmp_path):
    from medvl.data.jsonl import read_records

    file = tmp_path / "prompted.yaml"
    file.write_text(
        f"name: prompted\nworkdir: {tmp_path / 'run'}\nsteps:\n"
        "  - {name: data, kind: phantom, with: {n: 24, seed: 2}}\n"
        "  - {name: base, kind: tiny, with: {family: qwen2_vl}}\n"
        '  - {name: ev, kind: eval, with: {model: "${base}", data: "${data}/test.jsonl",\n'
        "      max_new_tokens: 2, prompt: short_answer, system: Be brief.}}\n"
    )
    run_pipeline(load_pipeline(file), echo=lambda _: None)
    run = tmp_path / "run"
    original = read_records(run / "data" / "test.jsonl")
    rows = [json.loads(line) for line in (run / "ev" / "predictions.jsonl").open()]
    assert [row["id"] for row in rows] == [r.id for r in original]
    prompts = [
        row["prompt"]
        for row, r in zip(rows, original, strict=True)
        if r.lang == "en" and r.question_type != "report" and not r.options
    ]
    assert prompts and all(
        "Be brief." in prompt and "Answer the question using a single word or phrase." in prompt
        for prompt in prompts
    )
    described = json.loads((run / "ev" / "run.json").read_text())["prompt"]
    assert (described["name"], described["system"]) == ("short_answer", "Be brief.")
    scored = (run / "ev" / "scores.jsonl").read_text().splitlines()
    assert len(scored) == len(original)
    metrics = json.loads((run / "ev" / "metrics.json").read_text())
    assert metrics["settings"]["protocol"]["name"] == "medvl"  # the default, recorded
    with pytest.raises(MedvlError, match="unknown protocol 'lmms'"):  # before any prediction
        run_pipeline(load_pipeline(file, ["ev.protocol=lmms"]), echo=lambda _: None)
    with pytest.raises(MedvlError, match="unknown prompt 'cot'"):
        bad = load_pipeline(file, ["ev.prompt=cot"])
        run_pipeline(bad, echo=lambda _: None)


def test_a_killed_eval_step_resumes_from_its_prediction_cache(tmp_path):
    file = tmp_path / "resume.yaml"
    file.write_text(
        f"name: resume\nworkdir: {tmp_path / 'run'}\nsteps:\n"
        "  - {name: data, kind: phantom, with: {n: 24, seed: 2}}\n"
        "  - {name: base, kind: tiny, with: {family: qwen2_vl}}\n"
        '  - {name: ev, kind: eval, with: {model: "${base}", data: "${data}/test.jsonl",\n'
        "      max_new_tokens: 2}}\n"
    )
    run_pipeline(load_pipeline(file), echo=lambda _: None)
    step = tmp_path / "run" / "ev"
    cache = Path(json.loads((step / "run.json").read_text())["cache"]["path"])
    lines = cache.read_text().splitlines()
    assert len(lines) >= 2
    (step / DONE).unlink()  # killed while predicting the second record:
    cache.write_text(f"{lines[0]}\n{lines[1][:20]}")
    resumed = run_pipeline(load_pipeline(file), echo=lambda _: None)
    assert set(resumed.seconds) == {"ev"}
    again = json.loads((step / "run.json").read_text())["cache"]
    assert again["status"] == "resumed" and again["path"] == str(cache)
    assert (again["reused"], again["predicted"]) == (1, len(lines) - 1)


def test_headline_table_keeps_multiple_choice_apart_from_closed_accuracy() -> None:
    """Closed accuracy is the scorer's (no options); MCQ accuracy is its own column."""
    est = lambda x: {"mean": x}  # noqa: E731
    report = {
        "runs": [{"name": "a"}, {"name": "b"}],
        "overall": {
            "accuracy": {"a": est(0.5), "b": est(0.6)},
            "closed_accuracy": {"a": est(0.9), "b": est(0.8)},
            "mcq_accuracy": {"a": est(0.25), "b": None},
        },
        "breakdowns": {
            "answer_type": {
                "closed": {"accuracy": {"a": est(0.7), "b": est(0.7)}},
                "open": {"token_f1": {"a": est(0.4)}},
            }
        },
    }
    assert headline_table(report) == [
        {
            "run": "a",
            "accuracy": 0.5,
            "closed_accuracy": 0.9,
            "mcq_accuracy": 0.25,
            "open_token_f1": 0.4,
        },
        {
            "run": "b",
            "accuracy": 0.6,
            "closed_accuracy": 0.8,
            "mcq_accuracy": None,
            "open_token_f1": None,
        },
    ]

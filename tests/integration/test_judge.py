"""The LLM judge against a real local server: a FastAPI stub on a loopback port that answers
deterministically (CORRECT when the prediction contains the reference), driven end to end
through ``medvl eval score|run --judge-url``; verdict parsing, cache keys, resume, Cohen's kappa
against a hand computation and scikit-learn, and one-line errors. A slow test asks
``medvl serve`` with a tiny random model, whose babble must be counted as unparsed.
"""

from __future__ import annotations

import csv
import json
import re
import socket
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import medvl.eval.judge as judge_module
from medvl.cli.main import main
from medvl.data.jsonl import write_records
from medvl.data.record import Record
from medvl.errors import ConfigError
from medvl.eval.agreement import binary_agreement, cohen_kappa
from medvl.eval.judge import (
    PROMPT_VERSION,
    JudgeConfig,
    cache_key,
    judge_messages,
    parse_verdict,
    record_texts,
    run_judge,
)
from medvl.infer.server import BackgroundServer

SERVED = ("judge-stub", "boom")
_TAG = r"<{0}>\n(.*?)\n</{0}>"


def _reply(model: str, text: str) -> dict:
    message = {"role": "assistant", "content": text}
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status)


def stub_app(log: list) -> FastAPI:
    """Judge stub: CORRECT when the answer contains the reference (case-insensitive), "maybe"
    for the answer "babble", 400 for "too long", 500 for model "boom". A request with no
    <reference> is a model prediction and gets "liver lobe"."""
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict:
        log.append(("models", None))
        return {"object": "list", "data": [{"id": m, "object": "model"} for m in SERVED]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        log.append(("chat", body))
        if body.get("model") not in SERVED:
            return _error(404, f"model {body.get('model')!r} not found")
        if body["model"] == "boom":
            return _error(500, "engine crashed")
        user = body["messages"][-1]["content"]
        user = user if isinstance(user, str) else " ".join(p.get("text", "") for p in user)
        reference = re.search(_TAG.format("reference"), user, re.DOTALL)
        if reference is None:
            return _reply(body["model"], "liver lobe")
        answer = re.search(_TAG.format("answer"), user, re.DOTALL).group(1)
        if answer == "too long":
            return _error(400, "prompt is too long")
        if answer == "babble":
            return _reply(body["model"], "maybe")
        correct = reference.group(1).lower() in answer.lower()
        return _reply(body["model"], "CORRECT" if correct else "INCORRECT")

    return app


@pytest.fixture(scope="module")
def stub():
    log: list = []
    with BackgroundServer(stub_app(log)) as server:
        server.log = log
        yield server


def chats(log: list) -> list[dict]:
    return [body for kind, body in log if kind == "chat"]


def record(record_id: str, answer: str, answer_type: str = "open") -> Record:
    return Record(
        id=record_id,
        dataset="toy",
        split="test",
        lang="en",
        images=[],
        messages=[{"role": "user", "content": f"Question {record_id}: what is shown?"}],
        answer=answer,
        answer_type=answer_type,
        question_type="organ",
    )


#: id -> (reference, prediction or None for missing); rule = exact_match, judge = the stub.
CASES = {
    "o1": ("liver", "liver"),  # rule 1, judge correct
    "o2": ("liver", "liver lobe"),  # rule 0, judge correct
    "o3": ("kidney", "spleen"),  # rule 0, judge incorrect
    "o4": ("brain", "left brain"),  # rule 0, judge correct
    "o5": ("heart", "Heart"),  # rule 1, judge correct
    "o6": ("lung", "babble"),  # rule 0, judge unparsed (left out of accuracy and kappa)
    "o7": ("bone", None),  # rule 0, no prediction: incorrect without a request
}


def write_run_inputs(tmp_path: Path, cases: dict = CASES) -> tuple[Path, Path]:
    records = [record(i, ref) for i, (ref, _) in cases.items()] + [record("c1", "yes", "closed")]
    data, pred = tmp_path / "data.jsonl", tmp_path / "pred.jsonl"
    write_records(data, records)
    lines = [{"id": i, "prediction": p} for i, (_, p) in cases.items() if p is not None]
    lines.append({"id": "c1", "prediction": "yes"})
    pred.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return data, pred


def score_cli(data: Path, pred: Path, out: Path, *judge: str) -> int:
    args = ["eval", "score", "--data", str(data), "--pred", str(pred), "--out", str(out)]
    return main([*args, "--resamples", "50", *judge])


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("CORRECT", "correct"),
        ("incorrect", "incorrect"),
        ("Correct.", "correct"),
        ("**INCORRECT**", "incorrect"),
        ("Verdict: correct", "correct"),
        ("\n\n  Incorrect\nThe reference says left.", "incorrect"),
        ("<think>it might be incorrect</think>\nCORRECT", "correct"),
        ("<think>still thinking", "unparsed"),
        ("The answer is correct", "unparsed"),
        ("Not correct", "unparsed"),
        ("Correctly identified", "unparsed"),
        ("CORRECT or INCORRECT", "unparsed"),
        ("1", "unparsed"),
        ("", "unparsed"),
        (None, "unparsed"),
    ],
)
def test_parse_verdict_reads_the_first_word_and_never_guesses(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_cache_key_changes_with_every_part(monkeypatch):
    base = ("What organ?", "liver", "liver lobe", "qwen")
    key = cache_key(*base)
    assert key == cache_key(*base) and len(key) == 64
    for i in range(4):
        changed = list(base)
        changed[i] += "x"
        assert cache_key(*changed) != key
    monkeypatch.setattr(judge_module, "PROMPT_VERSION", "medvl-judge/999")
    assert cache_key(*base) != key  # a new prompt version never reuses old verdicts


def test_prompt_is_fixed_and_carries_the_three_texts():
    system, user = judge_messages(" What organ? ", "liver", "the liver\n")
    assert system["role"] == "system" and "CORRECT or INCORRECT" in system["content"]
    assert user["content"].startswith("<question>\nWhat organ?\n</question>\n<reference>\nliver")
    assert "<answer>\nthe liver\n</answer>" in user["content"]


def test_record_texts_give_mcq_options_and_the_gold_option():
    mcq = Record(
        id="m1",
        dataset="toy",
        split="test",
        lang="en",
        images=["a.png"],
        messages=[{"role": "user", "content": "<image>Which modality?"}],
        answer="B",
        options={"A": "CT", "B": "MRI"},
    )
    assert record_texts(mcq) == ("Which modality?\nOptions:\nA. CT\nB. MRI", "B. MRI")
    assert record_texts(record("o1", "liver")) == ("Question o1: what is shown?", "liver")


def test_other_kinds_are_judged_when_asked(stub, tmp_path):
    data, pred = write_run_inputs(tmp_path, {"o1": ("liver", "liver")})
    out = tmp_path / "run"
    assert score_cli(data, pred, out) == 0
    config = JudgeConfig(url=f"{stub.url}/v1", model="judge-stub", kinds=("open", "closed"))
    result = run_judge(out, config)
    rows = [json.loads(line) for line in result.verdicts_path.open()]
    assert [(r["id"], r["kind"], r["verdict"]) for r in rows] == [
        ("o1", "open", "correct"),
        ("c1", "closed", "correct"),
    ]
    assert result.section["kinds"] == ["open", "closed"]


def test_cohen_kappa_by_hand_and_against_sklearn():
    rule = [1, 0, 0, 0, 1, 0]
    judge = [1, 1, 0, 1, 1, 0]
    # p_o = 4/6; p_e = (2/6)(4/6) + (4/6)(2/6) = 4/9; kappa = (2/3 - 4/9) / (1 - 4/9) = 0.4
    assert cohen_kappa(rule, judge) == pytest.approx(0.4)
    assert cohen_kappa([1, 1, 0], [1, 1, 0]) == pytest.approx(1.0)
    assert cohen_kappa([1, 0], [0, 1]) == pytest.approx(-1.0)
    assert cohen_kappa([1, 1], [1, 1]) is None and cohen_kappa([], []) is None
    found = binary_agreement(rule, judge)
    assert found["table"] == {
        "both_correct": 2,
        "judge_only": 2,
        "rule_only": 0,
        "both_incorrect": 2,
    }
    assert found["agreement"] == pytest.approx(4 / 6)
    sklearn = pytest.importorskip("sklearn.metrics")
    for a, b in [(rule, judge), ([1, 0, 1, 1, 0, 0, 1], [1, 1, 1, 0, 0, 0, 0])]:
        assert cohen_kappa(a, b) == pytest.approx(sklearn.cohen_kappa_score(a, b))


def test_config_refuses_bad_values(monkeypatch):
    with pytest.raises(ConfigError, match="not an http"):
        JudgeConfig(url="localhost:8000")
    with pytest.raises(ConfigError, match="judge-kinds"):
        JudgeConfig(url="http://127.0.0.1:1/v1", kinds=("opne",))
    monkeypatch.delenv("MEDVL_TEST_JUDGE_KEY", raising=False)
    config = JudgeConfig(url="http://127.0.0.1:1/v1", api_key_env="MEDVL_TEST_JUDGE_KEY")
    with pytest.raises(ConfigError, match="export MEDVL_TEST_JUDGE_KEY"):
        config.api_key()


# ---------------------------------------------------------------- end to end


def test_eval_score_with_judge_end_to_end_then_fully_cached(stub, tmp_path, capsys):
    data, pred = write_run_inputs(tmp_path)
    out = tmp_path / "run"
    judge = ["--judge-url", f"{stub.url}/v1", "--judge-model", "judge-stub", "--judge-sample", "5"]
    start = len(stub.log)
    assert score_cli(data, pred, out, *judge) == 0
    sent = chats(stub.log[start:])
    assert len(sent) == 6  # o1..o6; o7 has no prediction, c1 is closed
    assert all(body["temperature"] == 0 and body["model"] == "judge-stub" for body in sent)
    assert ("models", None) in stub.log[start:]  # the model name was checked

    verdicts = {r["id"]: r for r in map(json.loads, (out / "judge.jsonl").open())}
    assert list(verdicts) == ["o1", "o2", "o3", "o4", "o5", "o6", "o7"]
    assert {i: r["verdict"] for i, r in verdicts.items()} == {
        "o1": "correct",
        "o2": "correct",
        "o3": "incorrect",
        "o4": "correct",
        "o5": "correct",
        "o6": "unparsed",
        "o7": "incorrect",
    }
    assert verdicts["o6"]["reply"] == "maybe" and verdicts["o7"]["source"] == "no prediction"
    question = "Question o2: what is shown?"
    assert verdicts["o2"]["key"] == cache_key(question, "liver", "liver lobe", "judge-stub")

    section = json.loads((out / "metrics.json").read_text())["judge"]
    assert section["prompt_version"] == PROMPT_VERSION and section["model"] == "judge-stub"
    assert section["url"] == f"{stub.url}/v1" and section["requests"] == 6
    assert section["rule_protocol"] == "medvl"
    assert (section["records"], section["n"], section["unparsed"]) == (7, 6, 1)
    assert section["accuracy"]["mean"] == pytest.approx(4 / 6)  # o1 o2 o4 o5 of 6 with a verdict
    assert section["rule_accuracy"]["mean"] == pytest.approx(2 / 6)  # exact match: o1 o5
    low, high = section["accuracy"]["ci_low"], section["accuracy"]["ci_high"]
    assert 0 <= low < 4 / 6 < high <= 1
    agreement = section["agreement"]
    assert agreement["n"] == 6 and agreement["kappa"] == pytest.approx(0.4)  # hand: see above
    assert agreement["table"]["judge_only"] == 2 and agreement["table"]["rule_only"] == 0

    with (out / "judge_review.csv").open(encoding="utf-8", newline="") as handle:
        review = list(csv.DictReader(handle))
    assert len(review) == 5
    assert {r["id"] for r in review[:2]} == {"o2", "o4"}  # disagreements first
    assert review[2]["id"] == "o6" and review[2]["judge_verdict"] == "unparsed"
    assert review[0]["rule_verdict"] == "incorrect" and review[0]["judge_verdict"] == "correct"
    assert review[0]["question"].startswith("Question o")
    printed = capsys.readouterr().out
    assert "judge accuracy" in printed and "kappa 0.400" in printed

    start = len(stub.log)
    assert score_cli(data, pred, out, *judge) == 0
    assert stub.log[start:] == []  # everything cached: not even the model check
    again = json.loads((out / "metrics.json").read_text())["judge"]
    assert again["requests"] == 0 and again["accuracy"] == section["accuracy"]
    assert again["agreement"] == agreement

    boom = ["--judge-url", f"{stub.url}/v1", "--judge-model", "boom"]
    assert score_cli(data, pred, out, *boom) == 2  # a failed judge leaves no stale verdicts
    assert not (out / "judge.jsonl").exists() and not (out / "judge_review.csv").exists()


def test_scoring_again_without_a_judge_drops_the_old_verdicts(stub, tmp_path, capsys):
    data, pred = write_run_inputs(tmp_path)
    out = tmp_path / "run"
    judge = ["--judge-url", f"{stub.url}/v1", "--judge-model", "judge-stub"]
    assert score_cli(data, pred, out, *judge) == 0
    assert (out / "judge.jsonl").exists() and (out / "judge_review.csv").exists()
    assert score_cli(data, pred, out) == 0
    assert "judge" not in json.loads((out / "metrics.json").read_text())
    assert not (out / "judge.jsonl").exists() and not (out / "judge_review.csv").exists()
    assert "removed judge.jsonl, judge_review.csv" in capsys.readouterr().out
    assert (out / "judge_cache.jsonl").exists()  # judging again sends nothing


def test_a_killed_run_resumes_from_the_cache(stub, tmp_path):
    data, pred = write_run_inputs(tmp_path)
    out = tmp_path / "run"
    assert score_cli(data, pred, out) == 0  # scored without the judge
    cache = tmp_path / "cache.jsonl"
    done = [  # two verdicts written before the kill, then a line cut short
        {
            "key": cache_key("Question o1: what is shown?", "liver", "liver", "judge-stub"),
            "verdict": "correct",
        },
        {
            "key": cache_key("Question o3: what is shown?", "kidney", "spleen", "judge-stub"),
            "verdict": "incorrect",
        },
    ]
    cache.write_text("".join(json.dumps(d) + "\n" for d in done) + '{"key": "ab')
    config = JudgeConfig(url=f"{stub.url}/v1", model="judge-stub", cache=cache)
    start = len(stub.log)
    result = run_judge(out, config)
    assert result.requests == 4 and len(chats(stub.log[start:])) == 4  # o2 o4 o5 o6
    lines = cache.read_text().splitlines()
    assert len(lines) == 7 and lines[2] == '{"key": "ab'  # the torn line is closed, not reused
    added = [json.loads(line) for line in lines[3:]]
    assert all(a["prompt_version"] == PROMPT_VERSION and a["model"] == "judge-stub" for a in added)
    verdicts = {r["id"]: r for r in map(json.loads, result.verdicts_path.open())}
    assert verdicts["o1"]["source"] == "cache" and verdicts["o2"]["source"] == "judge"
    assert run_judge(out, config).requests == 0


def test_a_refused_request_is_an_error_verdict_and_asked_again(stub, tmp_path):
    cases = {"o1": ("liver", "liver"), "o2": ("liver", "too long")}
    data, pred = write_run_inputs(tmp_path, cases)
    out = tmp_path / "run"
    assert score_cli(data, pred, out) == 0
    config = JudgeConfig(url=f"{stub.url}/v1", model="judge-stub")
    first = run_judge(out, config)
    assert first.section["errors"] == 1 and first.section["n"] == 1
    rows = [json.loads(line) for line in first.verdicts_path.open()]
    assert rows[1]["verdict"] == "error" and "400" in rows[1]["source"]
    assert run_judge(out, config).requests == 1  # the refused one, again


def test_eval_run_with_judge_through_a_served_model(stub, tmp_path):
    data, _ = write_run_inputs(tmp_path, {"o1": ("liver", "x"), "o2": ("kidney", "x")})
    out = tmp_path / "run"
    url = f"{stub.url}/v1"
    argv = ["eval", "run", "--bench", "custom", "--data", str(data), "--out", str(out)]
    argv += ["--engine", "openai", "--base-url", url, "--model", "judge-stub"]
    assert (
        main([*argv, "--resamples", "20", "--judge-url", url, "--judge-model", "judge-stub"]) == 0
    )
    verdicts = {r["id"]: r["verdict"] for r in map(json.loads, (out / "judge.jsonl").open())}
    assert verdicts == {"o1": "correct", "o2": "incorrect"}  # the stub predicts "liver lobe"
    section = json.loads((out / "metrics.json").read_text())["judge"]
    assert section["accuracy"]["mean"] == pytest.approx(0.5)
    assert section["rule_accuracy"]["mean"] == 0.0 and section["agreement"]["kappa"] == 0.0


# ---------------------------------------------------------------- errors


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("model", "fragments"),
    [
        ("nope", ["model 'nope' is not served there", "judge-stub, boom", "--judge-model"]),
        ("boom", ["answered 500", "engine crashed", "rerun to resume"]),
    ],
)
def test_server_errors_are_one_line(stub, tmp_path, capsys, model, fragments):
    data, pred = write_run_inputs(tmp_path)
    judge = ["--judge-url", f"{stub.url}/v1", "--judge-model", model]
    assert score_cli(data, pred, tmp_path / "run", *judge) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"judge {stub.url}/v1" in err
    for fragment in fragments:
        assert fragment in err


def test_a_dead_port_is_one_line_naming_the_url(tmp_path, capsys):
    data, pred = write_run_inputs(tmp_path)
    url = f"http://127.0.0.1:{_free_port()}/v1"
    assert score_cli(data, pred, tmp_path / "run", "--judge-url", url) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and url in err and "start the judge server" in err


# ---------------------------------------------------------------- medvl serve


@pytest.mark.slow
def test_medvl_serve_babble_is_counted_unparsed(tiny_model_dirs, tmp_path):
    from medvl.infer.engine import GenerationSettings
    from medvl.infer.hf_engine import HFEngine
    from medvl.infer.protocol import ServerConfig
    from medvl.infer.server import create_app
    from medvl.models.loading import load_model

    engine = HFEngine(load_model(tiny_model_dirs("qwen2_vl")), batch_size=2, num_workers=1)
    data, pred = write_run_inputs(tmp_path, {k: CASES[k] for k in ("o1", "o2", "o3", "o7")})
    out = tmp_path / "run"
    assert score_cli(data, pred, out) == 0
    config = ServerConfig(model_name="tiny", defaults=GenerationSettings(max_new_tokens=8))
    with BackgroundServer(create_app(engine, config)) as server:
        judge = JudgeConfig(url=f"{server.url}/v1", model="tiny", max_tokens=8, workers=2)
        result = run_judge(out, judge)
    rows = [json.loads(line) for line in result.verdicts_path.open()]
    asked = [r for r in rows if r["source"] != "no prediction"]
    assert len(asked) == 3 and all(isinstance(r["reply"], str) for r in asked)
    assert all(r["verdict"] == parse_verdict(r["reply"]) for r in asked)  # never guessed
    unparsed = sum(r["verdict"] == "unparsed" for r in rows)
    assert unparsed == result.section["unparsed"] and unparsed >= 1  # a random model babbles
    assert result.section["n"] == len(rows) - unparsed

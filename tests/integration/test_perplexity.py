"""Answer perplexity: masking and batching checked against a hand-written per-record loop, CLI.

The reference computation in :func:`expected_nll` shares no code with the library: it tokenizes
the generation prompt alone and the prompt followed by the answer text, takes the extra ids as
the answer, runs one unpadded forward pass and gathers ``log_softmax(logits[t - 1])[id_t]`` for
each answer position t. Equality with the batched, right-padded result proves that only the
answer tokens are scored (no prompt, image, padding or ``<|im_end|>`` token) and that the shift
is right.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from medvl.cli.main import main
from medvl.data.jsonl import read_records, write_records
from medvl.data.record import Record
from medvl.data.tokens import chat_messages
from medvl.eval.perplexity import (
    NO_ANSWER,
    PerplexityError,
    answer_perplexity,
    group_perplexity,
    reference_record,
)


def extra_records() -> list[Record]:
    """Text-only, system + multi-turn, and answer-field-only records (no images needed)."""
    common = {"dataset": "t", "split": "test", "images": []}
    return [
        Record(
            id="text-only",
            lang="en",
            messages=[
                {"role": "user", "content": "Which side is the lesion on?"},
                {"role": "assistant", "content": "The lesion is on the left side."},
            ],
            answer_type="open",
            **common,
        ),
        Record(
            id="multi-turn",
            lang="en",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Is it CT?"},
                {"role": "assistant", "content": "yes"},
                {"role": "user", "content": "Which organ?"},
                {"role": "assistant", "content": "liver"},
            ],
            answer_type="open",
            **common,
        ),
        Record(
            id="answer-field",
            lang="zh",
            messages=[{"role": "user", "content": "这是什么检查？"}],
            answer="磁共振成像",
            answer_type="open",
            **common,
        ),
        Record(
            id="no-answer",
            lang="en",
            messages=[{"role": "user", "content": "What is shown?"}],
            **common,
        ),
    ]


def missing_image_record() -> Record:
    return Record(
        id="img",
        dataset="t",
        split="test",
        lang="en",
        images=["nowhere.png"],
        messages=[
            {"role": "user", "content": "<image>\nWhat?"},
            {"role": "assistant", "content": "CT"},
        ],
    )


def load(model_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    return model.eval(), AutoProcessor.from_pretrained(model_dir)


def expected_nll(model, processor, record: Record, base_dir) -> tuple[float, int]:
    """Summed nll of the answer tokens and their number, by a plain per-record loop."""
    from medvl.data.medimage import load_image

    record = reference_record(record)
    answer = record.messages[-1].content
    prompt = processor.apply_chat_template(
        chat_messages(record, with_answer=False), tokenize=False, add_generation_prompt=True
    )
    images = [load_image(p) for p in record.image_paths(base_dir)] or None
    short = processor(text=[prompt], images=images, return_tensors="pt")["input_ids"][0]
    full = processor(text=[prompt + answer], images=images, return_tensors="pt")
    ids = full["input_ids"][0]
    assert torch.equal(ids[: len(short)], short), "prompt tokens change when the answer follows"
    with torch.no_grad():
        logits = model(**full).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    positions = range(len(short), len(ids))
    nll = -sum(float(logp[t - 1, ids[t]]) for t in positions)
    return nll, len(positions)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_batched_result_equals_a_hand_computed_loop(family, tiny_model_dirs, phantom_dir):
    model, processor = load(tiny_model_dirs(family))
    records = read_records(phantom_dir / "train.jsonl")[:6] + extra_records()
    result = answer_perplexity(model, processor, records, phantom_dir, batch_size=4)

    assert result.skipped == {"no-answer": NO_ANSWER}
    got = {r.id: r for r in result.records}
    assert list(got) == [r.id for r in records if r.id != "no-answer"]  # input order
    total_nll = total_tokens = 0
    for record in records[:-1]:
        nll, tokens = expected_nll(model, processor, record, phantom_dir)
        assert got[record.id].tokens == tokens, record.id
        assert got[record.id].nll == pytest.approx(nll, rel=1e-4), record.id
        total_nll, total_tokens = total_nll + nll, total_tokens + tokens
    assert result.tokens == total_tokens
    assert result.perplexity == pytest.approx(math.exp(total_nll / total_tokens), rel=1e-4)
    mean = sum(r.perplexity for r in result.records) / len(result.records)
    assert result.mean_record_perplexity == pytest.approx(mean)


def test_only_the_answer_text_is_scored(tiny_model_dirs):
    """Answer tokens only: ``<|im_end|>`` and the earlier assistant turn carry no label."""
    from medvl.data.features import IGNORE_INDEX, FeatureBuilder, final_answer_span

    _, processor = load(tiny_model_dirs("qwen2_vl"))
    record = extra_records()[1]  # multi-turn: "yes" is context, "liver" the answer
    sample = FeatureBuilder(processor, spans=final_answer_span)(record, ".")
    scored = sample.labels[sample.labels != IGNORE_INDEX]
    assert processor.tokenizer.decode(scored) == "liver"


def test_batch_size_does_not_change_the_result(tiny_model_dirs, phantom_dir):
    model, processor = load(tiny_model_dirs("qwen2_5_vl"))
    records = read_records(phantom_dir / "train.jsonl")[:8]
    calls = []
    one = answer_perplexity(model, processor, records, phantom_dir, batch_size=1)
    four = answer_perplexity(
        model, processor, records, phantom_dir, batch_size=4, progress=lambda *a: calls.append(a)
    )
    assert calls == [(4, 8), (8, 8)]
    assert four.tokens == one.tokens
    assert four.perplexity == pytest.approx(one.perplexity, rel=1e-5)
    for a, b in zip(one.records, four.records, strict=True):
        assert (a.id, a.tokens) == (b.id, b.tokens)
        assert a.nll == pytest.approx(b.nll, rel=1e-4, abs=1e-4)


def test_groups_pool_their_tokens(tiny_model_dirs, phantom_dir):
    model, processor = load(tiny_model_dirs("qwen2_vl"))
    records = read_records(phantom_dir / "train.jsonl")[:6]
    result = answer_perplexity(model, processor, records, phantom_dir)
    groups = group_perplexity(result, records, ["lang", "modality"])
    for key in ("lang", "modality"):
        assert sum(g["records"] for g in groups[key].values()) == len(records)
        assert sum(g["tokens"] for g in groups[key].values()) == result.tokens
    by_id = {r.id: r for r in result.records}
    en = [by_id[r.id] for r in records if r.lang == "en"]
    pooled = math.exp(sum(v.nll for v in en) / sum(v.tokens for v in en))
    assert groups["lang"]["en"]["perplexity"] == pytest.approx(pooled)


def test_cli_writes_perplexity_json_with_groups(tiny_model_dirs, phantom_dir, tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    records = read_records(phantom_dir / "train.jsonl")[:5]
    absolute = [
        Record.from_dict({**r.to_dict(), "images": [str(p) for p in r.image_paths(phantom_dir)]})
        for r in records
    ]
    write_records(data, [*absolute, extra_records()[-1]])
    out = tmp_path / "run"
    argv = ["eval", "perplexity", "--model", str(tiny_model_dirs("qwen2_vl")), "--data", str(data)]
    code = main([*argv, "--out", str(out), "--batch-size", "2", "--breakdown", "modality"])
    stdout = capsys.readouterr().out
    assert code == 0
    body = json.loads((out / "perplexity.json").read_text())
    assert body["counts"] == {"records": 6, "scored": 5, "skipped": 1}
    assert body["skipped"] == {"no-answer": NO_ANSWER}
    assert set(body["groups"]) == {"answer_type", "question_type", "lang", "modality"}
    assert sum(g["tokens"] for g in body["groups"]["modality"].values()) == body["tokens"]
    assert len(body["records"]) == 5 and body["model"]["id"].startswith("sha256:")
    pooled = math.exp(sum(r["nll"] for r in body["records"]) / body["tokens"])
    assert body["perplexity"] == pytest.approx(pooled)
    assert "pooled perplexity" in stdout and "5 of 6 records" in stdout

    assert main([*argv, "--out", str(tmp_path / "lim"), "--limit", "2"]) == 0
    limited = json.loads((tmp_path / "lim" / "perplexity.json").read_text())
    assert limited["counts"]["records"] == 2


def test_bad_input_is_one_readable_line(tiny_model_dirs, tmp_path, capsys):
    model = str(tiny_model_dirs("qwen2_vl"))

    def run(*extra: str) -> str:
        code = main(["eval", "perplexity", "--model", model, "--out", str(tmp_path), *extra])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith("medvl: error: ") and len(err.strip().splitlines()) == 1, err
        return err

    assert "no such file" in run("--data", str(tmp_path / "missing.jsonl"))
    data = tmp_path / "unanswered.jsonl"
    write_records(data, [extra_records()[-1]])
    assert "none of the 1 records has a reference answer" in run("--data", str(data))
    assert "must be positive" in run("--data", str(data), "--batch-size", "0")
    write_records(data, [missing_image_record()])
    assert "record 'img': image" in run("--data", str(data))
    assert not (tmp_path / "perplexity.json").exists()


def test_the_library_refuses_unscorable_records(tiny_model_dirs, tmp_path):
    model, processor = load(tiny_model_dirs("qwen2_vl"))
    with pytest.raises(PerplexityError, match="none of the 1 records has a reference answer"):
        answer_perplexity(model, processor, extra_records()[-1:], ".")
    with pytest.raises(PerplexityError, match=r"record 'img': .*nowhere\.png"):
        answer_perplexity(model, processor, [missing_image_record()], tmp_path)

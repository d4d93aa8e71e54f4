"""The local engine: batched greedy equals batch size 1, errors stay per record, streaming."""

from __future__ import annotations

import pytest

from medvl.data.jsonl import read_records
from medvl.data.record import Record
from medvl.errors import ConfigError
from medvl.infer.engine import ChatRequest, GenerationSettings
from medvl.infer.hf_engine import HFEngine
from medvl.models.loading import load_model

GREEDY = GenerationSettings(max_new_tokens=6)


def _extra_records() -> list[Record]:
    """A system turn, a text-only question, a multi-turn chat and a missing image."""
    base = {"dataset": "t", "split": "test", "lang": "en"}
    return [
        Record(
            id="system",
            images=["images/phantom-00001.png"],
            messages=[
                {"role": "system", "content": "You are a radiologist."},
                {"role": "user", "content": "<image>\nDescribe the image."},
                {"role": "assistant", "content": "GOLD-ANSWER"},
            ],
            **base,
        ),
        Record(id="text", images=[], messages=[{"role": "user", "content": "What is CT?"}], **base),
        Record(
            id="multi",
            images=["images/phantom-00002.png"],
            messages=[
                {"role": "user", "content": "<image>\nWhich organ?"},
                {"role": "assistant", "content": "liver"},
                {"role": "user", "content": "Any lesion?"},
            ],
            **base,
        ),
        Record(
            id="missing",
            images=["images/gone.png"],
            messages=[{"role": "user", "content": "<image>\nAnything?"}],
            **base,
        ),
    ]


@pytest.fixture(scope="module")
def requests(phantom_dir):
    root = phantom_dir
    records = read_records(root / "test.jsonl")[:4] + _extra_records()
    return [ChatRequest.from_record(record, root) for record in records]


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_batched_greedy_equals_batch_size_one(family, tiny_model_dirs, requests):
    loaded = load_model(tiny_model_dirs(family))
    single = HFEngine(loaded, batch_size=1, num_workers=0).generate(requests, GREEDY)
    batched = HFEngine(loaded, batch_size=3, num_workers=2, lookahead=2).generate(requests, GREEDY)
    assert [g.id for g in batched] == [r.id for r in requests]
    for one, many in zip(single, batched, strict=True):
        assert one.text == many.text, one.id
        assert one.prompt_tokens == many.prompt_tokens
    missing = batched[-1]
    assert missing.error is not None and "gone.png" in missing.error
    assert missing.finish_reason == "error"
    assert all(g.error is None and g.text for g in batched[:-1])


def test_prompt_drops_the_answer_and_keeps_the_system_turn(tiny_model_dirs, requests):
    engine = HFEngine(load_model(tiny_model_dirs("qwen2_vl")), num_workers=0)
    [generation] = engine.generate([r for r in requests if r.id == "system"], GREEDY)
    assert generation.prompt.startswith("<|im_start|>system\nYou are a radiologist.<|im_end|>")
    assert "GOLD-ANSWER" not in generation.prompt
    assert generation.prompt.endswith("<|im_start|>assistant\n")
    assert generation.completion_tokens == 6 and generation.finish_reason == "length"


def test_stream_gives_the_same_text_as_generate(tiny_model_dirs, requests):
    engine = HFEngine(load_model(tiny_model_dirs("qwen2_vl")), num_workers=0)
    [expected] = engine.generate(requests[:1], GREEDY)
    stream = engine.stream(requests[0], GREEDY)
    pieces = list(stream)
    assert pieces  # how many depends on the text: the streamer flushes at spaces and whole chars
    assert "".join(pieces) == expected.text == stream.result.text
    assert stream.result.completion_tokens == 6


def test_sampling_with_a_seed_repeats(tiny_model_dirs, requests):
    engine = HFEngine(load_model(tiny_model_dirs("qwen2_vl")), num_workers=0)
    sampled = GenerationSettings(max_new_tokens=6, do_sample=True, temperature=1.5, seed=7)
    first = [g.text for g in engine.generate(requests[:2], sampled)]
    assert first == [g.text for g in engine.generate(requests[:2], sampled)]
    assert first != [g.text for g in engine.generate(requests[:2], GREEDY)]


def test_adapter_changes_outputs_and_loads_as_the_model(tiny_model_dirs, tiny_adapter, requests):
    base = tiny_model_dirs("qwen2_vl")
    adapter = tiny_adapter()
    plain = HFEngine(load_model(base), num_workers=0).generate(requests[:4], GREEDY)
    tuned_loaded = load_model(adapter)  # the adapter folder names its base
    assert tuned_loaded.base == str(base) and tuned_loaded.adapters == (str(adapter),)
    tuned = HFEngine(tuned_loaded, num_workers=0).generate(requests[:4], GREEDY)
    assert [g.text for g in plain] != [g.text for g in tuned]
    explicit = load_model(base, [adapter])
    assert explicit.fingerprint() == tuned_loaded.fingerprint() != load_model(base).fingerprint()
    stacked = load_model(base, [adapter, adapter])  # the first is merged, the second applied
    twice = HFEngine(stacked, num_workers=0).generate(requests[:4], GREEDY)
    assert [g.text for g in twice] != [g.text for g in tuned]


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="max_new_tokens"):
        GenerationSettings(max_new_tokens=0)
    with pytest.raises(ConfigError, match="--temperature 0"):
        GenerationSettings(do_sample=True, temperature=0)
    assert GenerationSettings.from_temperature(0).do_sample is False
    assert GenerationSettings.from_temperature(0.7).hf_kwargs()["temperature"] == 0.7
    assert GenerationSettings().hf_kwargs()["top_p"] is None  # greedy clears checkpoint sampling


def test_request_image_count_must_match():
    request = ChatRequest.from_question("q?", ["a.png"])
    request.images.append("b.png")
    assert "1 image part(s)" in request.check()

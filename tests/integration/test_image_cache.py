"""The processed-image cache: inputs equal the processor's, predictions equal, bounded, fresh."""

from __future__ import annotations

import shutil

import pytest
import torch

from medvl.data.jsonl import read_records
from medvl.data.medimage import load_image
from medvl.infer.engine import ChatRequest, GenerationSettings
from medvl.infer.hf_engine import HFEngine
from medvl.infer.image_cache import (
    ProcessedImageCache,
    encode_cached,
    file_key,
    settings_digest,
)
from medvl.models.loading import load_model

GREEDY = GenerationSettings(max_new_tokens=6)


def _requests(root, n: int = 4) -> list[ChatRequest]:
    return [ChatRequest.from_record(r, root) for r in read_records(root / "test.jsonl")[:n]]


def _two_image_request(root) -> ChatRequest:
    images = [p for r in read_records(root / "test.jsonl")[:2] for p in r.image_paths(root)]
    return ChatRequest.from_question("Compare the two images.", images, id="two")


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_cached_inputs_equal_the_processors(family, tiny_model_dirs, phantom_dir):
    processor = load_model(tiny_model_dirs(family)).processor
    cache = ProcessedImageCache(64 * 1024 * 1024)
    digest = settings_digest(processor)
    assert digest is not None
    for request in [*_requests(phantom_dir, 2), _two_image_request(phantom_dir)]:
        prompt = processor.apply_chat_template(
            request.messages, tokenize=False, add_generation_prompt=True
        )
        images = [load_image(p) for p in request.images]
        expected = dict(processor(text=[prompt], images=images, return_tensors="pt"))
        for _ in range(2):  # a miss, then a hit
            got = encode_cached(processor, prompt, request.images, cache, digest)
            assert list(got) == list(expected)
            for key, value in expected.items():
                assert torch.equal(got[key], value), (family, key)
    assert cache.hits > 0 and cache.misses > 0
    assert cache.checked(digest) and cache.usable(digest)  # built, not the processor's fallback


def test_predictions_with_the_cache_equal_those_without(tiny_model_dirs, phantom_dir):
    loaded = load_model(tiny_model_dirs("qwen2_vl"))
    requests = _requests(phantom_dir, 6)
    off = HFEngine(loaded, batch_size=3, image_cache=ProcessedImageCache(0))
    cache = ProcessedImageCache(64 * 1024 * 1024)
    on = HFEngine(loaded, batch_size=3, image_cache=cache)
    plain = {g.id: g.text for g in off.generate(requests, GREEDY)}
    first = {g.id: g.text for g in on.generate(requests, GREEDY)}
    assert cache.misses == len(requests) and cache.hits == 0
    second = {g.id: g.text for g in on.generate(requests, GREEDY)}  # a second prompt's pass
    assert cache.hits == len(requests)
    assert plain == first == second


def test_the_cache_is_bounded_by_bytes_and_least_recently_used_goes_first():
    entry = {"pixel_values": torch.zeros(256), "image_grid_thw": torch.zeros(3, dtype=torch.int64)}
    size = 256 * 4 + 3 * 8
    cache = ProcessedImageCache(3 * size)
    for name in "abc":
        cache.put((name,), entry)
    assert cache.get(("a",)) is not None  # "a" is now the most recent
    cache.put(("d",), entry)
    assert cache.get(("b",)) is None and cache.get(("a",)) is not None
    assert len(cache) == 3 and cache.bytes == 3 * size
    cache.put(("huge",), {"pixel_values": torch.zeros(4 * 256)})  # larger than the bound
    assert cache.get(("huge",)) is None and len(cache) == 3
    assert not ProcessedImageCache(0).enabled


def test_a_rewritten_image_misses(tiny_model_dirs, phantom_dir, tmp_path):
    processor = load_model(tiny_model_dirs("qwen2_vl")).processor
    request = _requests(phantom_dir, 1)[0]
    image = tmp_path / "image.png"
    shutil.copyfile(request.images[0], image)
    key = file_key(image)
    load_image(image).rotate(90).save(image)  # same name, new content
    assert file_key(image) != key
    cache = ProcessedImageCache(64 * 1024 * 1024)
    digest = settings_digest(processor)
    prompt = processor.apply_chat_template(
        request.messages, tokenize=False, add_generation_prompt=True
    )
    encode_cached(processor, prompt, [image], cache, digest)
    encode_cached(processor, prompt, [image], cache, digest)
    assert (cache.misses, cache.hits) == (1, 1)


def test_a_pixel_range_changed_in_place_changes_the_key(tiny_model_dirs):
    from medvl.models.processing import set_pixel_budget

    processor = load_model(tiny_model_dirs("qwen2_vl")).processor
    before = settings_digest(processor)
    set_pixel_budget(processor, max_pixels=28 * 28 * 4)
    assert settings_digest(processor) != before

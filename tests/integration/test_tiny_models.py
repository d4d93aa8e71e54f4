"""Tiny random models of the real architectures: load offline, process images, generate."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from medvl.errors import UnknownNameError
from medvl.models.registry import FAMILIES, get_family
from medvl.models.tiny import SIZES, build_tiny_model, scale_mrope_section
from medvl.models.tokenizer import SPECIAL_TOKENS, _train_bpe, build_tokenizer

FILES = {
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "processor_config.json",
    "chat_template.jinja",
    "README.md",
}
TEXTS = (
    "The left lung shows a 12 mm spiculated nodule; answer: A.",
    "左肺上叶可见一个约12毫米的毛刺状结节。答案：是",
    "  Mixed 中英 text\twith tabs, émigré accents and emoji 🩻\n",
)


def load(folder):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(folder)
    return model, AutoProcessor.from_pretrained(folder)


def noise_image(width: int, height: int) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def image_prompt(processor, question: str = "Is there a nodule?") -> str:
    content = [{"type": "image"}, {"type": "text", "text": question}]
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def image_inputs(processor, image: Image.Image) -> dict:
    """Processor outputs (torch tensors) for one chat prompt holding ``image``."""
    return processor(text=[image_prompt(processor)], images=[image], return_tensors="pt")


@pytest.mark.parametrize("family", FAMILIES)
def test_folder_is_complete_and_offline_loadable(family, tiny_model_dirs):
    folder = tiny_model_dirs(family)
    assert set(os.listdir(folder)) >= FILES
    assert not list(folder.glob("*.bin"))
    model, processor = load(folder)
    spec = get_family(family)
    assert type(model).__name__ == spec.model_class
    assert type(processor).__name__ == spec.processor_class
    assert "Random weights written by medvl" in (folder / "README.md").read_text()


@pytest.mark.parametrize("family", FAMILIES)
def test_special_token_ids_match_config(family, tiny_model_dirs):
    model, processor = load(tiny_model_dirs(family))
    tok, config = processor.tokenizer, model.config
    ids = dict(zip(SPECIAL_TOKENS, tok.convert_tokens_to_ids(list(SPECIAL_TOKENS)), strict=True))
    assert config.image_token_id == ids["<|image_pad|>"] == processor.image_token_id
    assert config.video_token_id == ids["<|video_pad|>"]
    assert config.vision_start_token_id == ids["<|vision_start|>"]
    assert config.vision_end_token_id == ids["<|vision_end|>"]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert model.generation_config.eos_token_id[0] == ids["<|im_end|>"]
    assert model.generation_config.pad_token_id == ids["<|endoftext|>"]
    assert len(tok) <= config.text_config.vocab_size < len(tok) + 64
    assert sorted(ids.values()) == list(range(min(ids.values()), min(ids.values()) + 14))


@pytest.mark.parametrize("family", FAMILIES)
def test_mrope_section_fits_head_dim(family, tiny_model_dirs):
    text = json.loads((tiny_model_dirs(family) / "config.json").read_text())["text_config"]
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    assert sum(text["rope_parameters"]["mrope_section"]) == head_dim // 2


def test_scale_mrope_section_keeps_real_proportions():
    assert scale_mrope_section([16, 24, 24], 128) == [16, 24, 24]
    assert scale_mrope_section([16, 24, 24], 16) == [2, 3, 3]
    assert scale_mrope_section([24, 20, 20], 16) == [4, 2, 2]
    assert scale_mrope_section([24, 20, 20], 32) == [6, 5, 5]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("size", [(56, 56), (100, 60)])
def test_processor_and_forward_on_images(family, size, tiny_model_dirs):
    import torch

    model, processor = load(tiny_model_dirs(family))
    image = noise_image(*size)
    inputs = image_inputs(processor, image)
    grid = inputs["image_grid_thw"][0]
    n_image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens == int(grid.prod()) // 4 >= 4
    with torch.no_grad():
        out = model(**inputs, labels=inputs["input_ids"])
    assert out.logits.shape[:2] == inputs["input_ids"].shape
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_stops_at_im_end(family, tiny_model_dirs):
    model, processor = load(tiny_model_dirs(family))
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    inputs = image_inputs(processor, noise_image(56, 56))
    prompt_len = inputs["input_ids"].shape[1]
    free = model.generate(**inputs, max_new_tokens=4)
    assert 1 <= free.shape[1] - prompt_len <= 4
    # Make <|im_end|> the likeliest token: generation must stop there, from generation_config.
    forced = model.generate(**inputs, max_new_tokens=8, sequence_bias={(im_end,): 1e4})
    assert forced[0, prompt_len:].tolist() == [im_end]
    reply = processor.batch_decode(forced[:, prompt_len:], skip_special_tokens=True)
    assert reply == [""]


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_round_trips_english_and_chinese(family, tiny_model_dirs):
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(tiny_model_dirs(family))
    fresh = build_tokenizer(family)
    assert 2000 <= len(saved) <= 4100
    for text in TEXTS:
        ids = saved(text)["input_ids"]
        assert ids == fresh(text)["input_ids"]
        assert saved.decode(ids) == text
    chinese = saved(TEXTS[1])["input_ids"]
    assert len(chinese) < len(TEXTS[1].encode("utf-8")) / 2  # the corpus taught it Chinese


def test_chat_templates_follow_the_family(tiny_model_dirs):
    messages = [{"role": "user", "content": "hi"}]
    rendered = {}
    for family in FAMILIES:
        tok = build_tokenizer(family)
        rendered[family] = tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
    default = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    turn = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert rendered["qwen2_vl"] == rendered["qwen2_5_vl"] == default + turn
    assert rendered["qwen3_vl"] == turn
    think = build_tokenizer("qwen3_vl").tokenize("<think>x</think>")
    assert think == ["<think>", "x", "</think>"]


def test_tokenizer_training_is_deterministic():
    assert _train_bpe.__wrapped__(3000) == _train_bpe.__wrapped__(3000)


def test_build_is_byte_for_byte_deterministic(tiny_model_dirs, tmp_path):
    first = tiny_model_dirs("qwen3_vl")
    again = build_tiny_model("qwen3_vl", tmp_path / "again", seed=0)
    other = build_tiny_model("qwen3_vl", tmp_path / "other", seed=1)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    assert (first / "model.safetensors").read_bytes() != (other / "model.safetensors").read_bytes()


def test_small_size_builds_and_runs(tiny_model_dirs):
    import torch

    model, processor = load(tiny_model_dirs("qwen2_5_vl", "small"))
    assert model.config.text_config.hidden_size == SIZES["small"].text_hidden
    inputs = image_inputs(processor, noise_image(60, 60))
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_unknown_family_and_size_are_named(tmp_path):
    with pytest.raises(UnknownNameError, match="qwen3_vl"):
        build_tiny_model("qwen9", tmp_path / "x")
    with pytest.raises(UnknownNameError, match="small"):
        build_tiny_model("qwen2_vl", tmp_path / "x", size="huge")


def test_shrunk_real_qwen2_vl_runs_with_real_tokenizer(qwen2_vl_fixture_dir, tmp_path):
    from medvl.models.tiny import build_from_real_config

    folder = build_from_real_config(qwen2_vl_fixture_dir, tmp_path / "shrunk")
    model, processor = load(folder)
    assert model.config.text_config.vocab_size == 151936
    assert processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") == 151655
    inputs = image_inputs(processor, noise_image(56, 56))
    assert int((inputs["input_ids"] == 151655).sum()) == 4
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3 or out[0, -1] in (151645, 151643)

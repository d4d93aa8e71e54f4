"""Packed batches give the same loss as unpacked ones, and no sample attends to another."""

from __future__ import annotations

import pytest
import torch

from medvl.data.features import IGNORE_INDEX, FeatureBuilder
from medvl.data.record import Record
from medvl.train.collate import PackingCollator, PaddingCollator, balance_rows


def test_labels_cover_the_answer_im_end_and_its_newline(tiny_model_dirs, sft_samples):
    processor, samples = sft_samples(tiny_model_dirs("qwen2_vl"))
    decoded = processor.tokenizer.decode(samples[1].labels[samples[1].labels != IGNORE_INDEX])
    assert decoded == "Two small nodules in the left lung. No effusion.<|im_end|>\n"
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (samples[0].labels[samples[0].input_ids == image_pad] == IGNORE_INDEX).all()


def test_multi_turn_masks_every_user_turn(tiny_model_dirs, tmp_path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dirs("qwen3_vl"))
    record = Record(
        id="m",
        dataset="t",
        split="train",
        lang="en",
        images=[],
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Is it CT?"},
            {"role": "assistant", "content": "yes"},
            {"role": "user", "content": "Which organ?"},
            {"role": "assistant", "content": "liver"},
        ],
    )
    sample = FeatureBuilder(processor)(record, tmp_path)
    kept = processor.tokenizer.decode(sample.labels[sample.labels != IGNORE_INDEX])
    assert kept == "yes<|im_end|>\nliver<|im_end|>\n"


def summed_loss(model, batch):
    """Sum of token losses (the model averages; multiply back by the labelled count)."""
    out = model(**batch)
    n = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
    return out.loss * n, out.logits


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_packed_loss_equals_unpacked_loss(family, tiny_model_dirs, sft_samples, fp32_model):
    model_dir = tiny_model_dirs(family)
    _, samples = sft_samples(model_dir)
    model = fp32_model(model_dir)
    pad = model.config.text_config.pad_token_id or 0
    with torch.no_grad():
        separate = sum(summed_loss(model, PaddingCollator(pad)([s]))[0] for s in samples)
        padded, _ = summed_loss(model, PaddingCollator(pad)(samples))
        packer = PackingCollator(model.model.get_rope_index, pad, rows=2)
        packed, _ = summed_loss(model, packer(samples))
    # fp32 on CPU: measured differences are ~1e-7 relative; 1e-5 leaves room for BLAS order.
    assert torch.allclose(packed, separate, rtol=1e-5), (packed, separate)
    assert torch.allclose(padded, separate, rtol=1e-5)


def test_no_sample_attends_to_another(tiny_model_dirs, sft_samples, fp32_model):
    model_dir = tiny_model_dirs("qwen2_vl")
    _, samples = sft_samples(model_dir)
    model = fp32_model(model_dir)
    packer = PackingCollator(model.model.get_rope_index, 0, rows=1)
    with torch.no_grad():
        base = model(**packer(samples)).logits
        changed = list(samples)
        first = changed[0]
        ids = first.input_ids.clone()
        text_positions = (first.mm_token_type_ids == 0).nonzero().flatten()
        ids[text_positions[-3]] = 7  # perturb a token of sample 0
        changed[0] = type(first)(**{**first.__dict__, "input_ids": ids})
        other = model(**packer(changed)).logits
    n0 = len(samples[0])
    assert not torch.equal(base[0, :n0], other[0, :n0])
    assert torch.equal(base[0, n0:], other[0, n0:])  # exactly unchanged after sample 0


def test_balance_rows_is_deterministic_and_balanced():
    assert balance_rows([5, 1, 4, 2], 2) == [[0, 1], [2, 3]]
    assert balance_rows([3], 4) == [[0]]

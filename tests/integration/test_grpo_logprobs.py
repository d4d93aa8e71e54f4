"""GRPO's per-token log-probabilities: medvl's compact override equals TRL's own CPU path.

TRL 1.16's fused LM head (``add_fused_lm_head``) projects every position on the CPU;
:func:`medvl.train.grpo.score_completions_only` makes it project only the labelled ones. The
log-probs, entropies, loss and every gradient must not change (fp32, rtol 1e-5).
"""

from __future__ import annotations

import pytest
import torch

trl_utils = pytest.importorskip("trl.trainer.utils")


def _inputs(processor, phantom_dir):
    from medvl.data.jsonl import read_records
    from medvl.data.medimage import load_image

    records = read_records(phantom_dir / "test.jsonl")[:2]
    texts, images = [], []
    for record in records:
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which?"}]}
        ]
        texts.append(processor.apply_chat_template(messages, add_generation_prompt=True))
        images.append(load_image(record.image_paths(phantom_dir)[0]))
    processor.tokenizer.padding_side = "left"
    batch = dict(processor(text=texts, images=images, padding=True, return_tensors="pt"))
    completion = torch.randint(10, 200, (2, 5))
    batch["input_ids"] = torch.cat([batch["input_ids"], completion], dim=1)
    batch["attention_mask"] = torch.cat(
        [batch["attention_mask"], torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])], dim=1
    )
    batch["mm_token_type_ids"] = torch.cat(
        [batch["mm_token_type_ids"], torch.zeros_like(completion)], dim=1
    )
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    labels[:, :-5] = -100  # only the completion is scored, as in GRPOTrainer
    return batch, labels


def _run(model, batch, labels):
    model.zero_grad()
    out = model(**batch, labels=labels, fused_lm_head=True)
    (out.log_probs.sum() + out.entropy.sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


def test_compact_scoring_equals_trls_own_path(tiny_model_dirs, phantom_dir, monkeypatch):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from medvl.train.grpo import score_completions_only

    path = tiny_model_dirs("qwen2_vl")
    processor = AutoProcessor.from_pretrained(path)
    base = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    trl_utils.add_fused_lm_head(base, temperature=0.9, outputs=("log_probs", "entropy"))
    batch, labels = _inputs(processor, phantom_dir)

    # TRL's own function, also when an earlier GRPO run in this process already wrapped it
    original = getattr(trl_utils._use_triton, "__wrapped__", trl_utils._use_triton)
    monkeypatch.setattr(trl_utils, "_use_triton", original)  # restored after the test
    assert not original(torch.device("cpu"))  # TRL's own path: every position on the CPU
    expected, expected_grads = _run(base, batch, labels)

    score_completions_only()
    wrapped = trl_utils._use_triton
    assert wrapped(torch.device("cpu")) and not wrapped(torch.device("meta"))
    score_completions_only()  # idempotent: no wrapper around the wrapper
    assert trl_utils._use_triton is wrapped
    got, grads = _run(base, batch, labels)  # same weights: nothing stepped

    assert int((labels[:, 1:] != -100).sum()) == 8
    torch.testing.assert_close(got.log_probs, expected.log_probs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.entropy, expected.entropy, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == expected_grads.keys() and grads
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)

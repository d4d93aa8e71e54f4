"""The chunked loss (output layer only where a label is, a few rows at a time) is exact:
the same loss and the same gradient of every trainable parameter as the full-logits path."""

from __future__ import annotations

import pytest
import torch

from medvl.data.features import IGNORE_INDEX
from medvl.models.output_layer import final_hidden_states, output_layer, scored_rows, token_nll
from medvl.models.registry import get_family, lora_target_regex
from medvl.train.collate import PackingCollator, PaddingCollator
from medvl.train.loss import chunked_lm_loss, weighted_lm_loss

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]
#: Few rows per chunk, so every batch spans several chunks (and one ends part-full).
CHUNK = 5


def full_loss(model, batch, average: str) -> torch.Tensor:
    """Today's path: logits for every position, then the model's own loss or the weighted one."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if average == "token":
        return model(**inputs, labels=batch["labels"]).loss
    positions = batch.get("position_ids")
    text = positions[0] if positions is not None and positions.dim() == 3 else None
    return weighted_lm_loss(model(**inputs).logits, batch["labels"], text, average)


def chunked_loss(model, batch, average: str) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return chunked_lm_loss(model, inputs, batch["labels"], average, chunk_rows=CHUNK)


def loss_and_grads(model, batch, average: str, fn) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    loss = fn(model, batch, average)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads


def batches(model, samples) -> dict[str, dict]:
    pad = model.config.text_config.pad_token_id or 0
    base = getattr(model, "get_base_model", lambda: model)()
    return {
        "padded": PaddingCollator(pad)(samples),
        "packed": PackingCollator(base.model.get_rope_index, pad, rows=2)(samples),
    }


def assert_same(model, samples, average: str) -> None:
    for layout, batch in batches(model, samples).items():
        want, want_grads = loss_and_grads(model, batch, average, full_loss)
        got, got_grads = loss_and_grads(model, batch, average, chunked_loss)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=0.0, msg=f"{layout} loss")
        assert got_grads.keys() == want_grads.keys()
        assert want_grads, "no trainable parameter"
        for name, grad in want_grads.items():
            # rtol 1e-5 of the tensor's scale: single elements near zero differ by summation order.
            scale = float(grad.abs().max())
            torch.testing.assert_close(
                got_grads[name], grad, rtol=1e-5, atol=1e-5 * scale, msg=f"{layout} {name}"
            )


@pytest.mark.parametrize("family", FAMILIES)
def test_full_fine_tuning_loss_and_gradients_equal_the_full_logits_path(
    family, tiny_model_dirs, sft_samples, fp32_model
):
    model_dir = tiny_model_dirs(family)
    _, samples = sft_samples(model_dir)
    model = fp32_model(model_dir)
    for average in ("token", "sample"):
        assert_same(model, samples, average)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_loss_and_gradients_equal_the_full_logits_path(
    family, tiny_model_dirs, sft_samples, fp32_model
):
    from peft import LoraConfig, get_peft_model

    model_dir = tiny_model_dirs(family)
    _, samples = sft_samples(model_dir)
    model = fp32_model(model_dir)
    config = LoraConfig(
        r=4,
        target_modules=lora_target_regex(get_family(family), ("language", "vision")),
        modules_to_save=["lm_head"],  # the output layer wrapped by peft, trained in full
        init_lora_weights=False,  # non-zero B: every LoRA matrix gets a gradient
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    assert_same(model, samples, "square")


def test_per_token_nll_equals_the_log_softmax_of_the_full_logits(
    tiny_model_dirs, sft_samples, fp32_model
):
    model_dir = tiny_model_dirs("qwen2_vl")
    _, samples = sft_samples(model_dir)
    model = fp32_model(model_dir)
    batch = PaddingCollator(0)(samples)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        logits = model(**inputs).logits
        rows, targets = scored_rows(final_hidden_states(model, inputs), batch["labels"])
        nll = token_nll(rows, targets, output_layer(model), chunk_rows=CHUNK)
    keep = batch["labels"][:, 1:] != IGNORE_INDEX
    logp = torch.log_softmax(logits[:, :-1][keep], dim=-1)
    expected = -logp.gather(1, batch["labels"][:, 1:][keep][:, None]).squeeze(1)
    torch.testing.assert_close(nll, expected, rtol=1e-5, atol=1e-6)


def test_a_batch_without_labels_gives_zero_with_a_graph(tiny_model_dirs, sft_samples, fp32_model):
    model_dir = tiny_model_dirs("qwen2_vl")
    _, samples = sft_samples(model_dir)
    model = fp32_model(model_dir)
    batch = PaddingCollator(0)(samples[:1])
    batch["labels"][:] = IGNORE_INDEX
    loss = chunked_loss(model, batch, "token")
    assert loss.item() == 0.0
    loss.backward()
    assert model.lm_head.weight.grad is not None


@pytest.mark.parametrize("average", ["token", "sample"])
def test_the_trainer_scales_the_chunked_loss_like_the_full_one(
    average, tiny_model_dirs, sft_samples, fp32_model, tmp_path
):
    """Through ``MedvlSFTTrainer.compute_loss``: the same value with ``loss_impl`` chunked or
    full, including transformers' division by ``num_items_in_batch`` for the token average."""
    from transformers import TrainingArguments

    from medvl.config import load_config
    from medvl.train.arguments import training_arguments
    from medvl.train.callbacks import ThroughputCallback
    from medvl.train.sft_config import SFTConfig
    from medvl.train.sft_trainer import MedvlSFTTrainer, SFTRunState

    model_dir = tiny_model_dirs("qwen2_vl")
    _, samples = sft_samples(model_dir)
    model = fp32_model(model_dir)
    losses = {}
    for impl in ("full", "chunked"):
        cfg = load_config(
            SFTConfig,
            None,
            [
                f"model={model_dir}",
                "data.train=t.jsonl",
                f"output_dir={tmp_path}",
                f"loss_average={average}",
                f"loss_impl={impl}",
                "precision=fp32",
            ],
        )
        trainer = MedvlSFTTrainer(
            model=model,
            args=TrainingArguments(**training_arguments(cfg, report_to=[])),
            state=SFTRunState(cfg, spec=None, throughput=ThroughputCallback()),
        )
        batch = PackingCollator(model.model.get_rope_index, 0, rows=2)(samples)
        batch["sample_ids"] = [f"s{i}" for i in range(len(samples))]
        with torch.no_grad():
            losses[impl] = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(40))
    torch.testing.assert_close(losses["chunked"], losses["full"], rtol=1e-5, atol=0.0)

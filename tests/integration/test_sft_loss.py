"""Loss averaging: token (transformers' own loss), sample and square, padded or packed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from medvl.config import load_config
from medvl.data.features import IGNORE_INDEX
from medvl.errors import ConfigError
from medvl.train.collate import PackingCollator, PaddingCollator
from medvl.train.loss import sample_index, token_weights, weighted_lm_loss
from medvl.train.sft_config import SFTConfig

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def per_sample_mean_nll(model, sample, pad) -> tuple[float, int]:
    """One sample alone: its mean answer-token nll, computed by hand from the logits."""
    batch = PaddingCollator(pad)([sample])
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
    labels = batch["labels"][0]
    scored = [t for t in range(1, len(labels)) if labels[t] != IGNORE_INDEX]
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll = [-logp[t - 1, labels[t]].item() for t in scored]
    return sum(nll) / len(nll), len(nll)


def test_token_average_equals_the_models_own_loss(tiny_model_dirs, sft_samples, fp32_model):
    model_dir = tiny_model_dirs("qwen2_vl")
    _, samples = sft_samples(model_dir)
    model = fp32_model(model_dir)
    batch = PaddingCollator(0)(samples)
    with torch.no_grad():
        out = model(**batch)
        ours = weighted_lm_loss(out.logits, batch["labels"], None, "token")
    assert ours.item() == pytest.approx(out.loss.item(), rel=1e-6)


@pytest.mark.parametrize("average", ["sample", "square"])
def test_sample_and_square_averages_match_a_hand_computation(
    average, tiny_model_dirs, sft_samples, fp32_model
):
    model_dir = tiny_model_dirs("qwen2_vl")
    _, samples = sft_samples(model_dir)
    model = fp32_model(model_dir)
    pad = model.config.text_config.pad_token_id or 0
    with torch.no_grad():
        alone = [per_sample_mean_nll(model, s, pad) for s in samples]
        weight = {"sample": lambda n: 1.0, "square": lambda n: n / math.sqrt(n)}[average]
        expected = sum(weight(n) * mean for mean, n in alone) / sum(weight(n) for _, n in alone)
        padded = PaddingCollator(pad)(samples)
        from_padded = weighted_lm_loss(model(**padded).logits, padded["labels"], None, average)
        packed = PackingCollator(model.model.get_rope_index, pad, rows=2)(samples)
        logits = model(**{k: v for k, v in packed.items() if k != "labels"}).logits
        from_packed = weighted_lm_loss(logits, packed["labels"], packed["position_ids"][0], average)
    assert from_padded.item() == pytest.approx(expected, rel=1e-5)
    assert from_packed.item() == pytest.approx(expected, rel=1e-5)


def test_sample_index_follows_packed_segments():
    labels = torch.tensor([[5, 6, 7, 8, 9, 1], [1, 2, 3, 4, 5, 6]])
    positions = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 1]])
    assert sample_index(labels, positions).tolist() == [[0, 0, 0, 1, 1, 2], [3, 3, 3, 3, 4, 4]]
    assert sample_index(labels, None).tolist() == [[0] * 6, [1] * 6]
    masked = torch.tensor([[IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9, IGNORE_INDEX]])
    weights = token_weights(masked, torch.tensor([[0, 1, 2, 0, 1, 0]]), "sample")
    assert weights.tolist() == [[0.0, 0.5, 0.5, 0.0, 1.0, 0.0]]


def test_an_unknown_average_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ConfigError, match=r"token.*sample.*square"):
        load_config(
            SFTConfig,
            RECIPES / "tiny" / "sft_instruct.yaml",
            ["loss_average=mean"],
        )

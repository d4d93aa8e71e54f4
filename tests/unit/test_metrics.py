"""Answer-matching metrics, the METRICS table, MCQ helpers and perplexity on literal cases."""

from __future__ import annotations

import inspect
import math

import pytest

from medvl.eval.extract import Extraction
from medvl.eval.metrics import (
    KINDS,
    METRICS,
    closed_accuracy,
    count_unparsed,
    exact_match,
    mcq_accuracy,
    open_recall_llava,
    perplexity_from_logits,
    rule_counts,
    soft_match,
    substring_match,
    token_f1,
    token_precision,
    token_recall,
    unparsed_rate,
)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("Yes", "yes", 1.0),
        ("Yes, the lesion is in the liver.", "Yes", 1.0),
        ("No.", "no", 1.0),
        ("There is no fracture.", "No", 1.0),
        ("Not present", "No", 1.0),
        ("yes", "No", 0.0),
        ("Yes and no", "yes", 0.0),  # both signals: wrong, unlike LLaVA-Med's substring test
        ("Yes and no", "no", 0.0),
        ("normal", "no", 0.0),  # "normal" is not "no"
        ("A nodule", "no", 0.0),  # nor is "nodule"
        ("", "yes", 0.0),
        ("", "no", 0.0),
        ("是", "是", 1.0),
        ("没有", "否", 1.0),
        ("有", "没有", 0.0),
        ("是否", "是", 0.0),
        ("这是什么结构", "是", 0.0),  # 这是 is a question word, not 是
        ("对比增强CT", "是", 0.0),  # 对比 is not 对
        ("答案是：否", "否", 1.0),  # the answer phrase decides
        ("The answer is yes", "yes", 1.0),
        ("CT", "ct", 1.0),  # closed but not yes/no: normalised exact match
        ("Computed tomography", "CT", 1.0),  # ... after the synonym table
        ("X ray", "X-Ray", 1.0),
        ("The left.", "Left", 1.0),
        ("left lung", "left", 0.0),
    ],
)
def test_closed_accuracy(prediction, reference, expected):
    assert closed_accuracy(prediction, reference) == expected


def test_closed_accuracy_returns_a_float_for_empty_prediction():
    value = closed_accuracy("", "yes")
    assert isinstance(value, float) and value == 0.0


@pytest.mark.parametrize(
    ("fn", "prediction", "reference", "expected"),
    [
        (exact_match, "The Liver.", "liver", 1.0),
        (exact_match, "liver and spleen", "liver", 0.0),
        (exact_match, "two", "2", 1.0),
        (exact_match, "", "", 0.0),
        (exact_match, "肝脏。", "肝脏", 1.0),
        (substring_match, "It is in the left lung.", "Left lung", 1.0),
        (substring_match, "lungs", "lung", 0.0),  # word boundaries
        (substring_match, "normal", "no", 0.0),
        (substring_match, "病变位于左肺上叶", "左肺", 1.0),
        (substring_match, "", "liver", 0.0),
        (soft_match, "liver", "liver", 1.0),
        (soft_match, "", "liver", 0.0),
        (soft_match, "livers", "liver", 2 * 5 / 11),
        (token_precision, "left lung lung", "left lung", 2 / 3),
        (token_recall, "left lung lung", "left lung", 1.0),
        (token_f1, "left lung lung", "left lung", 2 * 2 / 5),
        (token_recall, "lung", "lung lung", 0.5),  # multisets: one "lung" found of two
        (token_precision, "", "lung", 0.0),
        (token_f1, "", "lung", 0.0),
        (token_f1, "heart", "lung", 0.0),
        (token_f1, "左肺", "右肺", 0.5),  # characters for Chinese
        (token_recall, "肺部正常", "肺", 1.0),
    ],
)
def test_open_metrics(fn, prediction, reference, expected):
    assert fn(prediction, reference) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("left lung", "left lung", 1.0),
        ("the lung on the left", "left lung", 1.0),
        ("lung", "left lung", 0.5),
        # tp sums the prediction's counts: upstream gives 2/3 here, not 1/2
        ("lung lung", "left lung", 2 / 3),
        ("two", "2", 1.0),  # number words -> digits
        ("heart", "left lung", 0.0),
        ("", "left lung", 0.0),
        ("left lung", "", 0.0),
    ],
)
def test_open_recall_llava(prediction, reference, expected):
    assert open_recall_llava(prediction, reference) == pytest.approx(expected)


def test_metrics_table_is_consistent():
    assert len(METRICS) >= 20
    for name, spec in METRICS.items():
        assert spec.name == name
        assert spec.kind in KINDS
        assert spec.level in ("record", "corpus")
        assert spec.description
        params = inspect.signature(spec.fn).parameters
        assert params["lang"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["lang"].default == "en"


def test_metrics_table_names_the_interface():
    names = set(METRICS)
    assert {
        "closed_accuracy",
        "mcq_accuracy",
        "exact_match",
        "substring_match",
        "soft_match",
    } <= names
    assert {"token_precision", "token_recall", "token_f1", "open_recall_llava"} <= names
    assert {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "corpus_bleu", "rouge_l", "meteor"} <= names
    assert {"cider_d", "embedding_similarity", "chexpert_f1", "chexpert_record_f1"} <= names
    assert not METRICS["corpus_bleu"].per_record and not METRICS["cider_d"].per_record
    assert METRICS["embedding_similarity"].languages == ("en",)
    assert "not comparable" in METRICS["embedding_similarity"].description.lower()


@pytest.mark.parametrize(
    "name", [n for n, s in METRICS.items() if s.per_record and s.kind in ("closed", "open")]
)
def test_every_record_metric_gives_0_for_an_empty_prediction(name, monkeypatch):
    if name == "meteor":
        pytest.importorskip("nltk")
        monkeypatch.setattr("medvl.eval.metrics_ngram._wordnet", lambda: None)
    if name == "embedding_similarity":
        assert METRICS[name].fn("", "a reference") == 0.0  # no model load for empty input
        return
    value = METRICS[name].fn("", "a reference")
    assert isinstance(value, float) and value == 0.0


@pytest.mark.parametrize(
    ("letter", "gold", "expected"),
    [
        ("B", "B", 1.0),
        ("B", "C", 0.0),
        (None, "B", 0.0),
        ("", "B", 0.0),
        ("b", "B", 1.0),
        ("C", "<answer> C </answer>", 1.0),
    ],
)
def test_mcq_accuracy(letter, gold, expected):
    assert mcq_accuracy(letter, gold) == expected


def test_unparsed_helpers():
    found = [Extraction("A", "phrase"), Extraction(None, "unparsed"), Extraction("B", "phrase")]
    assert count_unparsed(found) == 1
    assert unparsed_rate(found) == pytest.approx(1 / 3)
    assert unparsed_rate([]) == 0.0
    assert rule_counts(found) == {"phrase": 2, "unparsed": 1}


# ---- perplexity --------------------------------------------------------------------------------


def _logits_from_probs(rows):
    import torch

    return torch.log(torch.tensor(rows, dtype=torch.float32))


def test_perplexity_is_shifted_by_one():
    """logits[t] predicts labels[t+1]: NLL = -log 0.5 (label 0 at t=1) - log 0.8 (label 1 at t=2),
    so ppl = exp((log 2 + log 1.25) / 2) = sqrt(2.5). labels[0] is never scored."""
    import torch

    logits = _logits_from_probs([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    labels = torch.tensor([2, 0, 1])
    assert perplexity_from_logits(logits, labels) == pytest.approx(math.sqrt(2.5), rel=1e-6)
    # batched shape gives the same value
    assert perplexity_from_logits(logits[None], labels[None]) == pytest.approx(math.sqrt(2.5))
    # an unshifted (wrong) computation would give exp(-(log .25 + log .1 + log .8) / 3)
    unshifted = math.exp(-(math.log(0.25) + math.log(0.1) + math.log(0.8)) / 3)
    assert perplexity_from_logits(logits, labels) != pytest.approx(unshifted)


def test_perplexity_ignores_minus_100():
    import torch

    logits = _logits_from_probs([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    assert perplexity_from_logits(logits, torch.tensor([-100, 0, -100])) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no token to score"):
        perplexity_from_logits(logits, torch.tensor([1, -100, -100]))


def test_perplexity_pools_tokens_over_the_batch():
    import torch

    from medvl.eval.metrics_lm import token_nll

    logits = _logits_from_probs([[[0.5, 0.5], [0.5, 0.5]], [[0.25, 0.75], [0.5, 0.5]]])
    labels = torch.tensor([[-100, 0], [-100, 1]])
    total, count = token_nll(logits, labels)
    assert count == 2 and total == pytest.approx(math.log(2) + math.log(4 / 3))
    with pytest.raises(ValueError, match="do not align"):
        token_nll(logits, labels[:, :1])

"""BLEU, ROUGE-L, METEOR and CIDEr-D, cross-checked against nltk, sacrebleu, rouge-score and
pycocoevalcap on the same inputs, plus hand-computed cases."""

from __future__ import annotations

import math

import pytest

from medvl.errors import MedvlError
from medvl.eval import metrics_ngram
from medvl.eval.metrics_ngram import (
    bleu_1,
    bleu_4,
    cider_d,
    cider_d_scores,
    corpus_bleu,
    meteor,
    rouge_l,
    sentence_bleu,
)
from medvl.eval.normalize import tokenize

PAIRS = [
    ("There is a small left pleural effusion.", "Small left pleural effusion is present."),
    ("yes", "yes"),
    ("The heart is enlarged.", "Cardiomegaly."),
    ("left lung", "lung"),
    ("No acute cardiopulmonary abnormality.", "No acute cardiopulmonary process."),
    ("Mild cardiomegaly, no edema.", "Cardiomegaly with mild pulmonary edema."),
    ("lung lung lung", "lung"),
    ("The lungs are clear without focal consolidation", "Lungs are clear. No consolidation."),
    ("x", "y"),
]
LONG_PAIRS = [
    ("there is a small left pleural effusion", "small left pleural effusion is present"),
    ("no acute cardiopulmonary abnormality is seen", "no acute cardiopulmonary process"),
    ("the lungs are clear without focal consolidation", "lungs are clear with no consolidation"),
    ("heart size is normal and lungs are clear", "the heart size is normal lungs are clear"),
]
ZH_PAIRS = [
    ("左侧少量胸腔积液", "左侧胸腔少量积液"),
    ("心影增大双肺纹理增多", "心影增大"),
    ("未见明显异常", "双肺未见明显异常"),
]


def _joined(texts):
    return [" ".join(tokenize(t)) for t in texts]


# ---- BLEU ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize(("prediction", "reference"), PAIRS + ZH_PAIRS)
def test_sentence_bleu_equals_nltk_method1(prediction, reference, n):
    bleu = pytest.importorskip("nltk.translate.bleu_score")
    expected = bleu.sentence_bleu(
        [tokenize(reference)],
        tokenize(prediction),
        weights=(1 / n,) * n,
        smoothing_function=bleu.SmoothingFunction().method1,
    )
    assert sentence_bleu(prediction, reference, max_n=n) == pytest.approx(expected, abs=1e-12)


def test_bleu_hand_computed():
    # one-token exact match: BLEU-4 = 0.1 ** (3/4) (three smoothed empty orders), BLEU-1 = 1
    assert bleu_1("Yes", "yes") == 1.0
    assert bleu_4("Yes.", "yes") == pytest.approx(0.1**0.75)
    # "left lung" vs "lung": p1 = 1/2, no brevity penalty (2 > 1)
    assert bleu_1("left lung", "lung") == pytest.approx(0.5)
    # "lung" vs "left lung": p1 = 1, BP = exp(1 - 2/1)
    assert bleu_1("lung", "left lung") == pytest.approx(math.exp(-1))
    assert bleu_4("", "lung") == 0.0 and bleu_4("heart", "lung") == 0.0


def test_sentence_bleu_intended_difference_from_sacrebleu():
    """sacrebleu is case-sensitive and keeps punctuation as tokens; we are not and do not."""
    sacrebleu = pytest.importorskip("sacrebleu")
    assert sacrebleu.sentence_bleu("Yes", ["yes"]).score == 0.0
    assert sacrebleu.sentence_bleu("yes.", ["yes"]).score == pytest.approx(50.0)
    assert bleu_1("Yes", "yes") == 1.0 and bleu_1("yes.", "yes") == 1.0


def test_corpus_bleu_equals_sacrebleu_without_smoothing():
    sacrebleu = pytest.importorskip("sacrebleu")
    preds, refs = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    expected = sacrebleu.corpus_bleu(
        _joined(preds), [_joined(refs)], tokenize="none", smooth_method="none"
    )
    assert corpus_bleu(preds, refs) == pytest.approx(expected.score / 100, abs=1e-12)
    assert corpus_bleu(preds, refs) == pytest.approx(0.241527, abs=1e-6)


def test_corpus_bleu_chinese_equals_sacrebleu_zh_tokenizer():
    sacrebleu = pytest.importorskip("sacrebleu")
    preds, refs = [p for p, _ in ZH_PAIRS], [r for _, r in ZH_PAIRS]
    expected = sacrebleu.corpus_bleu(preds, [refs], tokenize="zh", smooth_method="none")
    assert corpus_bleu(preds, refs, lang="zh") == pytest.approx(expected.score / 100, abs=1e-12)


def test_corpus_bleu_equals_nltk_when_hypotheses_have_four_tokens():
    """nltk counts max(1, n-grams) per sentence, so it differs only for hypotheses < 4 tokens."""
    bleu = pytest.importorskip("nltk.translate.bleu_score")
    preds, refs = [p for p, _ in LONG_PAIRS], [r for _, r in LONG_PAIRS]
    expected = bleu.corpus_bleu([[tokenize(r)] for r in refs], [tokenize(p) for p in preds])
    assert corpus_bleu(preds, refs) == pytest.approx(expected, abs=1e-12)


def test_corpus_bleu_edge_cases():
    assert corpus_bleu([], []) == 0.0
    assert corpus_bleu(["heart"], ["lung"]) == 0.0
    with pytest.raises(ValueError, match="aligned"):
        corpus_bleu(["a"], [])


# ---- ROUGE-L -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("prediction", "reference"), PAIRS)
def test_rouge_l_equals_rouge_score_on_english(prediction, reference):
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    expected = scorer.score(reference, prediction)["rougeL"].fmeasure
    assert rouge_l(prediction, reference) == pytest.approx(expected, abs=1e-12)


def test_rouge_l_chinese_by_character():
    # LCS("左侧少量胸腔积液", "左侧胸腔少量积液") = 左侧胸腔积液 (6 of 8 on both sides): F = 0.75
    assert rouge_l("左侧少量胸腔积液", "左侧胸腔少量积液", lang="zh") == pytest.approx(0.75)
    assert rouge_l("心影增大", "心影增大", lang="zh") == 1.0
    assert rouge_l("", "心影增大", lang="zh") == 0.0


# ---- METEOR --------------------------------------------------------------------------------------

NLTK_HYP = (
    "It is a guide to action which ensures that the military always obeys the commands of the party"
)
NLTK_REF = "It is a guide to action that ensures that the military will forever heed Party commands"


def _wordnet_or_skip():
    try:
        metrics_ngram._wordnet()
    except MedvlError:
        pytest.skip("WordNet is not installed: run `bash scripts/install_wordnet.sh .venv`")


def test_meteor_nltk_documented_example():
    _wordnet_or_skip()
    assert meteor(NLTK_HYP, NLTK_REF) == pytest.approx(0.6944, abs=1e-4)


def test_meteor_synonyms_and_stems():
    _wordnet_or_skip()
    assert meteor("pleural effusion", "pleural effusion") == pytest.approx(0.9375)
    assert meteor("two nodules", "2 nodule") > meteor("three nodules", "2 nodule")
    assert meteor("", "pleural effusion") == 0.0


def test_meteor_without_wordnet_names_the_install_script(monkeypatch):
    nltk = pytest.importorskip("nltk")

    def missing(resource, *args, **kwargs):
        raise LookupError(resource)

    metrics_ngram._wordnet.cache_clear()
    monkeypatch.setattr(nltk.data, "find", missing)
    try:
        with pytest.raises(MedvlError, match=r"scripts/install_wordnet\.sh"):
            meteor("a", "b")
    finally:
        metrics_ngram._wordnet.cache_clear()


# ---- CIDEr-D -------------------------------------------------------------------------------------


def test_cider_d_equals_pycocoevalcap():
    cider = pytest.importorskip("pycocoevalcap.cider.cider")
    preds, refs = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    gts = {i: [t] for i, t in enumerate(_joined(refs))}
    res = {i: [t] for i, t in enumerate(_joined(preds))}
    mean, per_record = cider.Cider().compute_score(gts, res)
    assert cider_d_scores(preds, refs) == pytest.approx(list(per_record), abs=1e-12)
    assert cider_d(preds, refs) == pytest.approx(mean, abs=1e-12)
    assert cider_d(preds, refs) == pytest.approx(2.154588, abs=1e-6)


def test_cider_d_chinese_equals_pycocoevalcap_on_characters():
    cider = pytest.importorskip("pycocoevalcap.cider.cider")
    preds, refs = [p for p, _ in ZH_PAIRS], [r for _, r in ZH_PAIRS]
    gts = {i: [t] for i, t in enumerate(_joined(refs))}
    res = {i: [t] for i, t in enumerate(_joined(preds))}
    _, per_record = cider.Cider().compute_score(gts, res)
    assert cider_d_scores(preds, refs, lang="zh") == pytest.approx(list(per_record), abs=1e-12)


def test_cider_d_hand_computed_and_set_dependence():
    # A one-word exact match among 4 distinct references: only the unigram order is non-zero,
    # cosine 1, so the score is 10 * (1 + 0 + 0 + 0) / 4 = 2.5.
    preds = ["effusion", "pneumothorax", "edema", "cardiomegaly"]
    assert cider_d_scores(preds, preds)[0] == pytest.approx(2.5)
    # a single-record set has IDF log(1) - log(1) = 0 everywhere: every score is 0
    assert cider_d(["effusion"], ["effusion"]) == 0.0
    assert cider_d([], []) == 0.0

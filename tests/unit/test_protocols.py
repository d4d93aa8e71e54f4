"""Scoring protocols: each tool's rules on literal (prediction, gold, options) rows.

Every expected value below was worked out by hand from the upstream rule the protocol module
cites; rows marked "medvl differs" are cases where medvl's own scorer gives another answer.
"""

from __future__ import annotations

import dataclasses

import pytest

from medvl.errors import MedvlError, UnknownNameError
from medvl.eval.metrics_text import open_recall_llava
from medvl.eval.protocols import (
    PROTOCOLS,
    Answer,
    Judgment,
    ProtocolError,
    ScoringProtocol,
    get_protocol,
    list_protocols,
)

FIVE = {"A": "Hemorrhage", "B": "Infarct", "C": "Tumor", "D": "Edema", "E": "Normal"}
FOUR = {"A": "CT", "B": "MRI", "C": "X-ray", "D": "Ultrasound"}


def judge(name, prediction, gold, *, kind="closed", options=None, bench=None, lang="en"):
    answer = Answer(
        kind=kind,
        question="q?",
        prediction=prediction,
        gold=gold,
        options=options,
        lang=lang,
        benchmark=bench,
    )
    return get_protocol(name).judge(answer)


# --- registry ------------------------------------------------------------------------------


def test_registry_lists_medvl_first_and_every_protocol_is_complete():
    names = [p.name for p in list_protocols()]
    assert names == [
        "medvl",
        "lmms-eval",
        "vlmevalkit",
        "medevalkit",
        "llava-med",
        "medvlm-r1",
        "huatuogpt-vision",
    ]
    for protocol in PROTOCOLS.values():
        assert isinstance(protocol, ScoringProtocol)
        assert protocol.title and protocol.follows and protocol.notes and protocol.benchmarks


def test_benchmarks_are_medvl_benchmark_names():
    from medvl.eval.benchmarks import BENCHMARKS

    for protocol in PROTOCOLS.values():
        assert set(protocol.benchmarks) <= set(BENCHMARKS), protocol.name


def test_unknown_protocol_lists_the_names():
    with pytest.raises(UnknownNameError, match="medvl, lmms-eval"):
        get_protocol("lmms")


def test_answer_is_frozen_keyword_only_with_light_defaults():
    answer = Answer(kind="open", prediction="lung", gold="lung")
    assert (answer.question, answer.options, answer.lang, answer.benchmark) == (
        "",
        None,
        "en",
        None,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        answer.gold = "liver"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Answer("open", "lung", "lung")  # type: ignore[misc]


def test_uncovered_benchmark_and_kind_are_refused_readably():
    with pytest.raises(ProtocolError, match=r"no rules for benchmark 'vqa_rad'.*slake, slake_zh"):
        judge("lmms-eval", "yes", "yes", bench="vqa_rad")
    with pytest.raises(MedvlError, match="no rule for 'mcq'"):
        judge("llava-med", "A", "A", kind="mcq", options=FOUR, bench="vqa_rad")
    with pytest.raises(MedvlError, match="no rule for 'report'"):
        judge("medvlm-r1", "text", "text", kind="report", bench="medvlm_r1")


# --- lmms-eval (SLAKE) ---------------------------------------------------------------------

LMMS_ROWS = [
    # prediction, gold, correct, extracted
    ("Yes", "Yes", 1.0, "yes"),
    ("yes.", "Yes", 1.0, "yes"),
    ("Yes, it is.", "Yes", 0.0, "yes it is"),  # the yes/no map needs the whole answer
    ("true", "Yes", 1.0, "yes"),
    ("正常", "是", 1.0, "yes"),  # 正常 ("normal") counts as yes; medvl differs
    ("异常", "否", 1.0, "no"),  # 异常 ("abnormal") counts as no
    ("没有", "无", 1.0, "no"),
    ("X-ray", "X-Ray", 1.0, "xray"),
    ("Lung (left)", "Lung", 1.0, "lung"),
    ("肺（左）", "肺", 1.0, "肺"),
    ("CT.", "CT", 1.0, "ct"),
    ("The liver", "Liver", 0.0, "the liver"),
    ("The correct answer is (B)", "B", 0.0, "the correct answer is"),
    ("", "No", 0.0, ""),
]


@pytest.mark.parametrize(("prediction", "gold", "correct", "extracted"), LMMS_ROWS)
def test_lmms_eval_slake_rows(prediction, gold, correct, extracted):
    result = judge("lmms-eval", prediction, gold, bench="slake")
    assert result == Judgment(correct, extracted, "normalized_exact_match")


def test_lmms_eval_differs_from_medvl_on_zheng_chang():
    assert judge("lmms-eval", "正常", "是", bench="slake_zh", lang="zh").correct == 1.0
    assert judge("medvl", "正常", "是", bench="slake_zh", lang="zh").correct == 0.0


# --- VLMEvalKit ----------------------------------------------------------------------------

VLM_ROWS = [
    # prediction, gold, correct, extracted, rule
    ("B", "B", 1.0, "B", "option_letter"),
    ("(B) Infarct", "B", 1.0, "B", "option_letter"),
    ("The answer is C.", "B", 0.0, "C", "option_letter"),
    ("The correct answer is (E)", "E", 1.0, "E", "option_letter"),
    # E is too far from the end and the "answer is" regex knows only A-D: medvl differs (E)
    (
        "The correct answer is E because the lesion shows a typical pattern of normal anatomy",
        "E",
        0.0,
        None,
        "needs_llm_judge",
    ),
    (
        "I believe the correct answer is **D** given the swelling seen around the lesion",
        "D",
        1.0,
        "D",
        "answer_is_regex",
    ),
    # case-insensitive regex: the article "a" is read as option A
    (
        "the answer is a benign lesion in the left lobe with no signs of bleeding",
        "C",
        0.0,
        "A",
        "answer_is_regex",
    ),
    ("Sorry, I can't help with images of people yet.", "A", 0.0, "Z", "refusal"),
    ("Z", "A", 0.0, "Z", "option_letter"),
    ("Infarct", "B", 1.0, "B", "option_text"),
    ("acute infarct", "B", 1.0, "B", "option_text"),
    ("Tumor or edema", "C", 0.0, None, "needs_llm_judge"),
    ("A and B are both possible", "A", 0.0, None, "needs_llm_judge"),
    ("", "A", 0.0, None, "needs_llm_judge"),
]


@pytest.mark.parametrize(("prediction", "gold", "correct", "extracted", "rule"), VLM_ROWS)
def test_vlmevalkit_mcq_rows(prediction, gold, correct, extracted, rule):
    result = judge("vlmevalkit", prediction, gold, kind="mcq", options=FIVE, bench="gmai_mmbench")
    assert result == Judgment(correct, extracted, rule)


def test_vlmevalkit_pathvqa_needs_the_judge_and_is_left_out():
    for kind in ("closed", "open"):
        result = judge("vlmevalkit", "yes", "yes", kind=kind, bench="pathvqa")
        assert result == Judgment(None, None, "needs_llm_judge")


def test_vlmevalkit_differs_from_medvl_on_a_late_letter_e():
    text = VLM_ROWS[4][0]
    medvl = judge("medvl", text, "E", kind="mcq", options=FIVE, bench="gmai_mmbench")
    assert medvl.correct == 1.0 and medvl.extracted == "E"


# --- MedEvalKit ----------------------------------------------------------------------------

MEK_YES_NO = [
    # prediction, gold, correct, extracted
    ("Yes", "yes", 1.0, "yes"),
    ("No, there is no fracture.", "no", 1.0, "no, there is no fracture"),
    ("Yes, no doubt.", "yes", 0.0, "yes, no doubt"),  # both substrings
    ("not sure", "no", 1.0, "not sure"),  # "no" inside "not"
    ("The answer is normal", "no", 1.0, " normal"),  # "no" inside "normal"
    ("<answer>yes</answer>", "yes", 1.0, "yes"),
    ("\\boxed{no}", "yes", 0.0, "no"),
]


@pytest.mark.parametrize(("prediction", "gold", "correct", "extracted"), MEK_YES_NO)
def test_medevalkit_vqa_rad_yes_no_rows(prediction, gold, correct, extracted):
    result = judge("medevalkit", prediction, gold, bench="vqa_rad")
    assert result == Judgment(correct, extracted, "yes_no_substring")


def test_medevalkit_open_rule_and_swapped_f1_names():
    exact = judge("medevalkit", "Left lung", "left lung", kind="open", bench="vqa_rad")
    assert exact.correct == 1.0 and exact.rule == "open_exact_match"
    assert exact.metrics == {"em": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    # "answer is" split leaves a leading space: not equal, though every token matches
    phrase = judge(
        "medevalkit", "The answer is left lung", "left lung", kind="open", bench="vqa_rad"
    )
    assert (phrase.correct, phrase.extracted) == (0.0, " left lung")
    # true precision 1, recall 1/2, F1 2/3 -> reported as precision=F1, recall=P, f1=R
    part = judge("medevalkit", "lung", "left lung", kind="open", bench="vqa_rad")
    assert part.correct == 0.0
    assert part.metrics == pytest.approx({"em": 0.0, "precision": 2 / 3, "recall": 1.0, "f1": 0.5})
    empty = judge("medevalkit", "", "left lung", kind="open", bench="vqa_rad")
    assert (empty.correct, empty.rule) == (0.0, "open_empty")


def test_medevalkit_vqa_rad_splits_by_gold_not_kind():
    result = judge("medevalkit", "left", "Left", kind="closed", bench="vqa_rad")
    assert (result.correct, result.rule) == (1.0, "open_exact_match")


SLAKE_ROWS = [
    # prediction, gold, kind, correct, rule
    ("Yes.", "Yes", "closed", 1.0, "closed_exact_match"),  # "Yes" is not in ["yes", "no"]
    ("Yes, it is.", "Yes", "closed", 0.0, "closed_exact_match"),
    ("yes it is", "yes", "closed", 1.0, "yes_no_substring"),
    ("是", "是", "closed", 1.0, "closed_exact_match"),
    ("lung", "Lung", "open", 1.0, "open_exact_match"),
    ("the lung", "Lung", "open", 0.0, "open_exact_match"),
]


@pytest.mark.parametrize(("prediction", "gold", "kind", "correct", "rule"), SLAKE_ROWS)
def test_medevalkit_slake_rows(prediction, gold, kind, correct, rule):
    result = judge("medevalkit", prediction, gold, kind=kind, bench="slake")
    assert (result.correct, result.rule) == (correct, rule)


MEK_MCQ = [
    # prediction, gold, correct, extracted, rule
    ("B", "B", 1.0, "B", "exact"),
    ("A. CT", "B", 0.0, "A", "letter"),
    ("<answer>C</answer>", "C", 1.0, "C", "exact"),
    ("The answer is D", "D", 1.0, "D", "exact"),
    ("", "A", 1.0, "A", "similarity"),  # every ratio is 0: index 0, so empty is "A"
    ("", "B", 0.0, "A", "similarity"),
    ("d. ultrasound", "D", 1.0, "D", "exact"),
]


@pytest.mark.parametrize(("prediction", "gold", "correct", "extracted", "rule"), MEK_MCQ)
def test_medevalkit_omnimedvqa_rows(prediction, gold, correct, extracted, rule):
    result = judge("medevalkit", prediction, gold, kind="mcq", options=FOUR, bench="omnimedvqa")
    assert result == Judgment(correct, extracted, rule)


def test_medevalkit_mcq_similarity_matches_difflib_by_hand():
    import difflib

    text = "magnetic resonance"
    choices = [f"{k.lower()}. {v.lower()}" for k, v in FOUR.items()]
    ratios = [difflib.SequenceMatcher(None, c, text).ratio() for c in choices]
    best = "ABCD"[ratios.index(max(ratios))]
    result = judge("medevalkit", text, best, kind="mcq", options=FOUR, bench="omnimedvqa")
    assert (result.correct, result.extracted, result.rule) == (1.0, best, "similarity")


def test_medevalkit_pmc_vqa_uses_colon_choices():
    # "b:mri" is split at ":" to "mri", which is no whole choice ("b:mri"): similarity decides
    result = judge("medevalkit", "b:mri", "B", kind="mcq", options=FOUR, bench="pmc_vqa")
    assert (result.correct, result.extracted, result.rule) == (1.0, "B", "similarity")
    dotted = judge("medevalkit", "c. x-ray", "C", kind="mcq", options=FOUR, bench="pmc_vqa")
    assert (dotted.correct, dotted.extracted, dotted.rule) == (1.0, "C", "exact")


# --- LLaVA-Med -----------------------------------------------------------------------------

LLAVA_CLOSED = [
    # prediction, gold, correct, rule
    ("yes", "yes", 1.0, "yes_no_substring"),
    ("Yes, there is.", "yes", 1.0, "yes_no_substring"),
    ("no", "yes", None, "dropped_wrong_yes_no"),  # wrong yes/no answers leave the denominator
    ("normal", "no", 1.0, "yes_no_substring"),  # "normal" holds "no"; medvl differs
    ("normal", "yes", None, "dropped_wrong_yes_no"),
    ("left", "left", 0.0, "no_yes_no_word"),  # closed non-yes/no answers need yes/no inside
    ("left nodule", "left", 1.0, "yes_no_substring"),  # "nodule" holds "no"
    ("", "no", 0.0, "no_yes_no_word"),
]


@pytest.mark.parametrize(("prediction", "gold", "correct", "rule"), LLAVA_CLOSED)
def test_llava_med_closed_rows(prediction, gold, correct, rule):
    result = judge("llava-med", prediction, gold, bench="vqa_rad")
    assert (result.correct, result.rule) == (correct, rule)


def test_llava_med_normal_differs_from_medvl():
    assert judge("medvl", "normal", "no", bench="vqa_rad").correct == 0.0


LLAVA_OPEN = [
    # prediction, gold, recall, precision, f1, exact_match
    ("left lung", "left lung", 1.0, 1.0, 1.0, 1.0),
    ("lung lung", "left lung", 2 / 3, 1.0, 0.8, 0.5),
    ("the right kidney", "kidney", 1.0, 0.5, 2 / 3, 0.5),
    ("liver", "left lung", 0.0, 0.0, 0.0, 0.0),
]


@pytest.mark.parametrize(("prediction", "gold", "recall", "precision", "f1", "em"), LLAVA_OPEN)
def test_llava_med_open_rows(prediction, gold, recall, precision, f1, em):
    result = judge("llava-med", prediction, gold, kind="open", bench="slake")
    assert (result.correct, result.rule) == (None, "open_recall")
    expected = {"recall": recall, "precision": precision, "f1": f1, "exact_match": em}
    assert result.metrics == pytest.approx(expected)
    assert result.metrics["recall"] == pytest.approx(open_recall_llava(prediction, gold))


# --- MedVLM-R1 -----------------------------------------------------------------------------

R1_ROWS = [
    # prediction, gold, correct, extracted, rule
    ("<think>MRI shows a mass.</think>\n<answer>B</answer>", "B", 1.0, "B", "answer_tag"),
    ("<answer> C </answer>", "B", 0.0, "C", "answer_tag"),
    ("<answer>b</answer>", "B", 0.0, None, "no_answer_tag"),
    ("<answer>B. Infarct</answer>", "B", 0.0, None, "no_answer_tag"),
    ("The answer is B", "B", 0.0, None, "no_answer_tag"),  # medvl differs (phrase rule)
    ("<answer>A</answer> no, <answer>B</answer>", "B", 0.0, "A", "answer_tag"),
    ("<answer>B", "B", 0.0, None, "no_answer_tag"),
]


@pytest.mark.parametrize(("prediction", "gold", "correct", "extracted", "rule"), R1_ROWS)
def test_medvlm_r1_rows(prediction, gold, correct, extracted, rule):
    result = judge("medvlm-r1", prediction, gold, kind="mcq", options=FIVE, bench="medvlm_r1")
    assert result == Judgment(correct, extracted, rule)


def test_medvlm_r1_miss_differs_from_medvl():
    medvl = judge("medvl", "The answer is B", "B", kind="mcq", options=FIVE, bench="medvlm_r1")
    assert medvl.correct == 1.0

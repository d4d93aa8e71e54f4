"""The ``huatuogpt-vision`` protocol on literal rows, worked out by hand from ``match_choice3``.

Rule 1 is the first match of HuatuoGPT-Vision's letter regex (any standalone letter a-n/A-N,
"A " excluded); rule 2 the option text whose last occurrence starts latest; rule 3 the
difflib-nearest option (last one on ties). The gold letter must be equal, case included.
Rows marked "medvl differs" are checked against medvl's own extractor below.
"""

from __future__ import annotations

import difflib

import pytest

from medvl.eval.protocols import Answer, Judgment, ProtocolError, get_protocol
from medvl.eval.protocols.huatuogpt_vision import match_choice3

FIVE = {"A": "Hemorrhage", "B": "Infarct", "C": "Tumor", "D": "Edema", "E": "Normal"}
FOUR = {"A": "CT", "B": "MRI", "C": "X-ray", "D": "Ultrasound"}


def judge(name, prediction, gold, options=FIVE, *, bench="huatuo", kind="mcq"):
    answer = Answer(
        kind=kind,
        question="What is apparent in this image?",
        prediction=prediction,
        gold=gold,
        options=options,
        lang="en",
        benchmark=bench,
    )
    return get_protocol(name).judge(answer)


ROWS = [
    # prediction, gold, correct, extracted, rule
    ("B", "B", 1.0, "B", "letter_regex"),
    ("(B) Infarct", "B", 1.0, "B", "letter_regex"),
    ("A. Hemorrhage", "A", 1.0, "A", "letter_regex"),
    ("**C**", "C", 1.0, "C", "letter_regex"),
    ("The answer is D.", "D", 1.0, "D", "letter_regex"),  # "a" of "answer" is followed by "n"
    ("<answer>B</answer>", "B", 1.0, "B", "letter_regex"),  # ">" and "<" are non-word
    ("答案是B", "B", 1.0, "B", "letter_regex"),  # 是 before the letter
    # the pronoun I is a letter A-N at the start: medvl differs (B)
    ("I think A is wrong, the answer is B", "B", 0.0, "I", "letter_regex"),
    # the first standalone capital wins: medvl differs (B)
    ("Option C is wrong; the answer is B", "B", 0.0, "C", "letter_regex"),
    ("Hepatitis C virus; the answer is B", "B", 0.0, "C", "letter_regex"),
    # "A " never counts, so the first hit is the B at the end
    ("A is wrong; the answer is B", "B", 1.0, "B", "letter_regex"),
    # lower-case letter read, then compared case-sensitively: medvl differs (B, right)
    ("the answer is b", "B", 0.0, "b", "letter_regex"),
    # letters in the reasoning count: medvl differs (reads the <answer> tag)
    ("<think>C looks possible</think><answer>B</answer>", "B", 0.0, "C", "letter_regex"),
    ("K", "B", 0.0, "K", "letter_regex"),  # no such option, still a letter; medvl: unparsed
    ("Infarct", "B", 1.0, "B", "option_text"),  # "I" followed by "n": no letter hit
    ("A Hemorrhage", "A", 1.0, "A", "option_text"),  # "A " excluded, then the option text
    ("The lesion is a tumor", "C", 1.0, "C", "option_text"),  # "a " excluded
    # two option texts: the one found last wins; medvl differs (unparsed)
    ("acute infarct with edema", "B", 0.0, "D", "option_text"),
    # no letter, no option text: hemorrhage 2*9/21 = 0.857 beats the rest
    ("hemorrhagic", "A", 1.0, "A", "nearest_option"),
    # empty: every ratio is 0 and ">=" keeps the last option; medvl differs (unparsed)
    ("", "A", 0.0, "E", "nearest_option"),
]


@pytest.mark.parametrize(("prediction", "gold", "correct", "extracted", "rule"), ROWS)
def test_huatuogpt_vision_rows(prediction, gold, correct, extracted, rule):
    assert judge("huatuogpt-vision", prediction, gold) == Judgment(correct, extracted, rule)


FOUR_ROWS = [
    # "ct" (option A, CT) occurs inside "correct", later than "ultrasound": medvl differs (D)
    ("Ultrasound is not correct", "D", 0.0, "A", "option_text"),
    ("Correct answer: ultrasound", "D", 1.0, "D", "option_text"),
    ("A is correct", "B", 0.0, "A", "option_text"),  # no letter hit; "ct" in "correct"
]


@pytest.mark.parametrize(("prediction", "gold", "correct", "extracted", "rule"), FOUR_ROWS)
def test_huatuogpt_vision_plain_substring_rows(prediction, gold, correct, extracted, rule):
    result = judge("huatuogpt-vision", prediction, gold, FOUR, bench="medvlm_r1")
    assert result == Judgment(correct, extracted, rule)


@pytest.mark.parametrize(
    ("prediction", "gold", "options", "huatuo", "medvl"),
    [
        ("I think A is wrong, the answer is B", "B", FIVE, 0.0, 1.0),
        ("Option C is wrong; the answer is B", "B", FIVE, 0.0, 1.0),
        ("the answer is b", "B", FIVE, 0.0, 1.0),
        ("<think>C looks possible</think><answer>B</answer>", "B", FIVE, 0.0, 1.0),
        ("Ultrasound is not correct", "D", FOUR, 0.0, 1.0),
    ],
)
def test_huatuogpt_vision_differs_from_medvl(prediction, gold, options, huatuo, medvl):
    assert judge("huatuogpt-vision", prediction, gold, options).correct == huatuo
    assert judge("medvl", prediction, gold, options).correct == medvl


def test_medvl_leaves_unparsed_where_huatuo_always_picks():
    for prediction in ("K", "acute infarct with edema", ""):
        assert judge("medvl", prediction, "B").extracted is None
        assert judge("huatuogpt-vision", prediction, "B").extracted is not None


def test_nearest_option_matches_difflib_by_hand():
    reply = "a hemorrhagic lesion"  # "a " is no letter, and no whole option text is inside
    ratios = [difflib.SequenceMatcher(None, v.lower(), reply).ratio() for v in FIVE.values()]
    best = max(i for i, r in enumerate(ratios) if r == max(ratios))  # the last of the best
    assert match_choice3(reply, FIVE) == ("ABCDE"[best], "nearest_option")


def test_records_without_options_are_left_out_and_other_kinds_refused():
    assert judge("huatuogpt-vision", "B", "B", None) == Judgment(None, None, "no_options")
    with pytest.raises(ProtocolError, match="no rule for 'closed'"):
        judge("huatuogpt-vision", "yes", "yes", None, kind="closed")
    with pytest.raises(ProtocolError, match=r"no rules for benchmark 'slake'.*huatuo, medvlm_r1"):
        judge("huatuogpt-vision", "B", "B", bench="slake")

"""Closed answers from a random model: babble that quotes training answers is not an answer.

The strings below are the shape of what the demo's random-weight tiny Qwen2-VL writes for closed
questions (fragments of its training corpus run together, 64 tokens). With negations read
anywhere and answer phrases read to the end of their run-on sentence, such babble scored 0.147
closed accuracy on the demo's test split; the old substring code had 0.029. Each case here was
read as yes/no by that version. Known limit: a *short* run-on text (under 160 characters)
that contains a negation is still read as "no"; on the demo the rule leaves 3 of 245 closed
records of random babble right (closed accuracy 0.012, the old substring code 0.029).
"""

from __future__ import annotations

import pytest

from medvl.eval.closed import ANSWER_SENTENCE_CHARS, extract_yes_no
from medvl.eval.metrics_text import closed_accuracy

BABBLE = (
    # a negative sentence quoted deep inside a run-on text (a demo prediction, 243 characters)
    "病理切片 sp six病理切片 sp sixhe bteroanhe b b主动cess sp six病理切片 sp sixumor sp six疾病"
    "umberumortterhe spnor：这张超声：积液的最大直径是多少：异常 spnor pink sp sixIn：积液的最大"
    "直径是多少Hounsfieldollow：没有发现边界清楚的水肿4内是否有结节Hounsfieldhe sp sixatehe病理"
    "诊断teroanhenores是否umber<think ma sp six疾病umberumortterhe spnor：这张超声 sp six",
    # an answer phrase followed by something that is not a yes/no answer
    "ix：囊肿he，因此答案是he c MRIhe：梗死位于哪一侧：没有发现圆形的结节",
    "heumor spumor spIn sp six In sp six none of the spumor umorumor sp six lung present lung "
    "heumor spumor spIn sp six In sp six umorumor sp six lung spumor spIn sp six In sp six umor "
    "sp six lung spumor spIn sp six",
)


@pytest.mark.parametrize("text", BABBLE)
def test_babble_is_no_answer(text):
    found = extract_yes_no(text)
    assert found.answer is None, found
    assert closed_accuracy(text, "no") == 0.0 and closed_accuracy(text, "yes") == 0.0


@pytest.mark.parametrize(
    ("text", "answer", "rule"),
    [
        # the answer sentence (first, short) still carries a negation or affirmation
        ("There is no evidence of pneumothorax. The lungs are clear.", "no", "negation"),
        ("肺部未见明显异常。", "no", "negation"),
        ("The mass is present in the left lobe.", "yes", "affirmation"),
        # an answer phrase decides when the answer opens what follows it
        ("Looking at the image. Therefore, the answer is no, there is no mass.", "no", None),
        ("因此答案是：没有发现边界清楚的水肿。", "no", "answer_phrase"),
        ("答案是：否", "no", "answer_phrase"),
        # ... and says nothing when it does not
        ("The answer is the liver, which has no lesion.", None, None),
    ],
)
def test_answer_sentences_still_read(text, answer, rule):
    found = extract_yes_no(text)
    assert found.answer == answer, found
    if rule is not None:
        assert found.rule == rule


def test_a_negation_past_the_answer_sentence_is_not_read():
    explanation = "The image shows the chest in a frontal view with both lungs visible"
    assert extract_yes_no(f"{explanation}. There is no pneumothorax.").answer is None
    long_first = "x " * ANSWER_SENTENCE_CHARS + "no mass"
    assert extract_yes_no(long_first).answer is None

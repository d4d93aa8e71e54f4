"""GRPO rewards on literal completion strings: every reward, the tricky answers, and the table."""

from __future__ import annotations

import inspect

import pytest

from medvl.train.rewards import (
    REWARDS,
    answer_span,
    closed_accuracy_reward,
    completion_text,
    format_reward,
    length_penalty_reward,
    mcq_accuracy_reward,
    medvlm_r1_accuracy_reward,
    open_f1_reward,
    reward_kind,
    soft_format_reward,
)

TISSUE = {"A": "Adipose tissue", "B": "Breast tissue", "C": "Muscle", "D": "Skin"}


def msg(text: str) -> list[dict[str, str]]:
    """TRL's conversational completion form."""
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>reasoning</think><answer>B</answer>", 1.0),
        ("<think>line one\nline two\n</think>\n<answer>B</answer>", 1.0),  # DOTALL
        ("  \n<think>x</think> <answer>B</answer>\n  ", 1.0),  # whitespace around the whole
        ("<think></think><answer></answer>", 1.0),
        ("Sure! <think>x</think><answer>B</answer>", 0.0),  # text before
        ("<think>x</think><answer>B</answer> Hope this helps.", 0.0),  # text after
        ("<answer>B</answer>", 0.0),
        ("<think>x</think>", 0.0),
        ("<answer>B</answer><think>x</think>", 0.0),  # wrong order
        ("<think>x</think>\nSo: <answer>B</answer>", 0.0),  # text between the blocks
        ("B", 0.0),
        ("", 0.0),
    ],
)
def test_format_reward(text, expected):
    assert format_reward([text]) == [expected]
    assert format_reward([msg(text)]) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>x</think><answer>B</answer>", 1.0),
        ("Sure! <think>a\nb</think> <answer>B</answer> done", 1.0),
        ("The answer: <answer>B</answer>", 0.5),
        ("<think>only thinking</think>", 0.0),
        ("B", 0.0),
    ],
)
def test_soft_format_reward(text, expected):
    assert soft_format_reward([text]) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>fatty glandular tissue</think><answer>B</answer>", 1.0),
        ("<answer>(B)</answer>", 1.0),
        ("<answer>B.</answer>", 1.0),
        ("<answer>B) Breast tissue</answer>", 1.0),  # MedVLM-R1 scores this 0
        ("<answer>Breast tissue</answer>", 1.0),
        ("<answer>the answer is B</answer>", 1.0),
        ("B", 1.0),
        ("(B)", 1.0),
        ("B. Breast tissue", 1.0),
        ("Breast tissue", 1.0),
        ("The answer is B.", 1.0),
        ("<think>A looks wrong, C too.</think><answer>B</answer>", 1.0),  # letters in think
        ("<answer>C</answer>", 0.0),
        ("<answer>Adipose tissue</answer>", 0.0),
        ("<answer>B or C</answer>", 0.0),
        ("I am not sure.", 0.0),
        ("", 0.0),
    ],
)
def test_mcq_accuracy_reads_answers_like_the_evaluator(text, expected):
    assert mcq_accuracy_reward([msg(text)], answer=["B"], options=[TISSUE]) == [expected]


def test_mcq_accuracy_skips_records_without_options():
    scores = mcq_accuracy_reward(
        ["B", "yes", "B"], answer=["B", "yes", None], options=[TISSUE, None, TISSUE]
    )
    assert scores == [1.0, None, None]


@pytest.mark.parametrize(
    ("text", "gold", "expected"),
    [
        ("<think>x</think><answer>B</answer>", "B", 1.0),
        ("<answer> B </answer>", "B", 1.0),
        ("<answer>b</answer>", "B", 1.0),
        ("<answer>(B)</answer>", "B", 0.5),
        ("<answer>B.</answer>", "B", 0.5),
        ("<answer>B) Breast tissue</answer>", "B", 0.0),  # uppercase holds B, R, E, A, ...
        ("<answer>Breast tissue</answer>", "B", 0.0),
        ("<answer>C</answer>", "B", 0.0),
        ("<answer>BB</answer>", "B", 0.0),  # a repeated letter
        ("B", "B", 0.0),  # no answer tag
        ("<answer>B</answer>", "<answer> B </answer>", 1.0),  # Med-R1 style solution
        ("<answer>\nB\n</answer>", "B", 1.0),
        ("<ANSWER>B</ANSWER>", "B", 1.0),  # IGNORECASE on the tag
        ("<answer>1</answer>", "B", 0.0),
    ],
)
def test_medvlm_r1_compat_reproduces_their_rule(text, gold, expected):
    assert medvlm_r1_accuracy_reward([msg(text)], answer=[gold], options=[TISSUE]) == [expected]


@pytest.mark.parametrize(
    ("text", "gold", "lang", "expected"),
    [
        ("yes", "yes", "en", 1.0),
        ("Yes.", "yes", "en", 1.0),
        ("Yes, there is a nodule.", "yes", "en", 1.0),
        ("<think>no effusion, but yes a nodule</think><answer>yes</answer>", "yes", "en", 1.0),
        ("yes and no", "yes", "en", 0.0),  # both signals: never counted right
        ("Yes, there is no nodule.", "yes", "en", 0.0),
        ("no", "yes", "en", 0.0),
        ("normal", "no", "en", 0.0),  # "normal" is not "no"
        ("not present", "no", "en", 1.0),
        ("是", "是", "zh", 1.0),
        ("没有", "是", "zh", 0.0),
        ("CT", "CT", "en", 1.0),
        ("<answer>ct.</answer>", "CT", "en", 1.0),
        ("MRI", "CT", "en", 0.0),
        ("the left side", "left", "en", 0.0),  # other closed answers need an exact match
        ("Left", "left", "en", 1.0),
        ("", "yes", "en", 0.0),
    ],
)
def test_closed_accuracy(text, gold, lang, expected):
    scores = closed_accuracy_reward(
        [text], answer=[gold], options=[None], answer_type=["closed"], lang=[lang]
    )
    assert scores == [expected]


def test_closed_accuracy_skips_mcq_and_open_records():
    scores = closed_accuracy_reward(
        ["B", "lung", "yes"],
        answer=["B", "lung", "yes"],
        options=[TISSUE, None, None],
        answer_type=["closed", "open", "closed"],
        lang=["en", "en", "en"],
    )
    assert scores == [None, None, 1.0]


@pytest.mark.parametrize(
    ("text", "gold", "expected"),
    [
        ("right lower lobe", "right lower lobe", 1.0),
        ("<think>x</think><answer>The right lower lobe.</answer>", "right lower lobe", 1.0),
        ("lower lobe", "right lower lobe", 0.8),  # P 1, R 2/3
        ("liver", "right lower lobe", 0.0),
        ("", "lung", 0.0),
    ],
)
def test_open_f1(text, gold, expected):
    scores = open_f1_reward([text], answer=[gold], options=[None], answer_type=["open"])
    assert scores == [pytest.approx(expected)]


def test_open_f1_skips_closed_and_mcq_records_and_scores_unlabelled_ones():
    scores = open_f1_reward(
        ["lung", "lung", "lung"],
        answer=["lung", "lung", "lung"],
        options=[None, None, TISSUE],
        answer_type=["closed", None, None],
    )
    assert scores == [None, 1.0, None]


def test_length_penalty_uses_token_ids_and_falls_to_minus_one():
    ids = [[1] * n for n in (10, 384, 448, 512, 600)]
    scores = length_penalty_reward(["x"] * 5, completion_ids=ids, max_tokens=512, soft_tokens=128)
    assert scores == [0.0, 0.0, -0.5, -1.0, -1.0]


def test_length_penalty_counts_words_without_token_ids():
    assert length_penalty_reward(["a b c d", "a b"], max_tokens=4, soft_tokens=2) == [-1.0, 0.0]


def test_answer_span_and_completion_text():
    assert answer_span("<think>yes?</think><answer> no </answer>") == "no"
    assert answer_span("<think>maybe yes</think> no") == "no"
    assert answer_span("<think>only</think>") == "<think>only</think>"
    assert completion_text(msg("hi")) == "hi"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}]}])
    assert completion_text([]) == ""


def test_rewards_are_pure_and_positionally_aligned():
    """Each value belongs to its own completion and record, whatever the batch order."""
    completions = ["B", "A", "yes", "no"]
    columns = {
        "answer": ["B", "B", "yes", "yes"],
        "options": [TISSUE, TISSUE, None, None],
        "answer_type": ["closed"] * 4,
        "lang": ["en"] * 4,
    }
    forward = mcq_accuracy_reward(completions, **columns)
    backward = mcq_accuracy_reward(completions[::-1], **{k: v[::-1] for k, v in columns.items()})
    assert forward == [1.0, 0.0, None, None] and backward == forward[::-1]
    assert closed_accuracy_reward(completions, **columns) == [None, None, 1.0, 0.0]


def test_reward_table_has_trl_signatures():
    assert set(REWARDS) == {
        "format",
        "soft_format",
        "mcq_accuracy",
        "medvlm_r1_compat",
        "closed_accuracy",
        "open_f1",
        "length_penalty",
    }
    for name, spec in REWARDS.items():
        params = inspect.signature(spec.fn).parameters
        assert next(iter(params)) == "completions", name
        assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()), name
        assert set(spec.verifies) <= {"mcq", "closed", "open"}
    assert reward_kind(TISSUE, "closed") == "mcq"
    assert reward_kind(None, "closed") == "closed"
    assert reward_kind(None, None) == "open"

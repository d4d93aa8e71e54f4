"""Normalisation and tokenisation on literal answers (yes/no reading: tests/unit/test_closed.py)."""

from __future__ import annotations

import pytest

from medvl.eval.normalize import (
    has_cjk,
    normalize_answer,
    normalize_llava,
    tokenize,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes.", "yes"),
        ("The Left Lung!", "left lung"),
        ("  An   X-ray  ", "xray"),
        ("x ray", "xray"),
        ("Two", "2"),
        ("twenty nodules", "20 nodules"),
        ("2.5 cm", "2.5 cm"),
        ("1,000 ml", "1000 ml"),
        ("The end.", "end"),
        ("left-sided effusion", "left sided effusion"),
        ("It isn't", "it is not"),
        ("肺 部", "肺部"),
        ("答案：肝脏。", "答案肝脏"),
        ("CT 平扫", "ct 平扫"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World 2.5", ["hello", "world", "2.5"]),
        ("左肺上叶", ["左", "肺", "上", "叶"]),
        ("CT显示肺炎", ["ct", "显", "示", "肺", "炎"]),
        ("snake_case", ["snake", "case"]),
        ("", []),
    ],
)
def test_tokenize(text, expected):
    assert tokenize(text) == expected


def test_has_cjk():
    assert has_cjk("CT显示") and not has_cjk("CT scan") and not has_cjk("")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # punctuation touching a space is deleted, otherwise it becomes a space
        ("left-sided (mild)", "left sided mild"),
        ("left - right", "left right"),
        ("The two lungs.", "2 lungs"),
        ("none", "0"),
        ("3.5 cm.", "3.5 cm"),
        ("1,000 cells", "1000 cells"),
        ("a/b", "b"),
    ],
)
def test_normalize_llava_reproduces_upstream(text, expected):
    # "a/b": "/" touches no space -> "a b"; the article "a" is then dropped.
    # "left - right": "-" touches a space, so it is deleted; the split/join drops the gap.
    assert normalize_llava(text) == expected

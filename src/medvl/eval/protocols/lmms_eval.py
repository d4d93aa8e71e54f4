"""``lmms-eval``: SLAKE scoring as lmms-eval 0.7.3 does it.

Follows: ``lmms_eval/tasks/slake/utils.py`` of lmms-eval 0.7.3 (PyPI wheel
``lmms_eval-0.7.3-py3-none-any.whl``), functions ``normalize_answer``, ``_normalize_yes_no``,
``_normalize_medical_aliases`` and ``slake_process_results``.

Covers: ``slake`` and ``slake_zh`` (closed and open questions alike).

Rules (one, for every record): prediction and gold are normalised and must be equal.
Normalisation: strip and lower-case; drop ``(...)`` and full-width ``（...）`` with their contents;
every ASCII punctuation mark and the Chinese marks of lmms-eval's list become spaces; whitespace
collapsed; then, on the *whole* answer only, ``x ray``/``xray`` -> ``xray`` and the yes/no map:
yes/yeah/yep/true and 是, 是的, 有, 包含, 可以, 能, 会, 正常 -> ``yes``; no/nope/false and 否, 不是,
没有, 无, 不包含, 不能, 不会, 不可以, 不正常, 异常 -> ``no``.

Quirks reproduced: 正常 ("normal") counts as yes and 异常 ("abnormal") as no; "Yes, it is" is not
"yes" (the map applies to the whole answer); "x-ray" becomes "x ray" then "xray" only when it
is the whole answer. No known bug is left out. MedQA (text-only, not a medvl benchmark) is not
reproduced: its parser falls back to ``random.choice`` when no letter is found.
"""

from __future__ import annotations

import re
import string

from medvl.eval.protocols.base import Answer, Judgment, check_supported

EN_YES = frozenset({"yes", "yeah", "yep", "true"})
EN_NO = frozenset({"no", "nope", "false"})
ZH_YES = frozenset({"是", "是的", "有", "包含", "可以", "能", "会", "正常"})
ZH_NO = frozenset(
    {"否", "不是", "没有", "无", "不包含", "不能", "不会", "不可以", "不正常", "异常"}
)
#: lmms-eval's Chinese punctuation string (duplicates kept out: a translate table is a set).
ZH_PUNCTUATION = (
    "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～、，。；：《》？【】（）"
)
_TO_SPACE = str.maketrans(dict.fromkeys(string.punctuation + ZH_PUNCTUATION, " "))
_ASCII_PARENS = re.compile(r"\([^)]*\)")
_WIDE_PARENS = re.compile(r"（[^）]*）")
_SPACES = re.compile(r"\s+")


def normalize_slake(answer: object) -> str:
    """lmms-eval's SLAKE ``normalize_answer`` (see the module docstring for the steps)."""
    text = "" if answer is None else str(answer)
    text = text.strip().lower()
    text = _ASCII_PARENS.sub(" ", text)
    text = _WIDE_PARENS.sub(" ", text)
    text = _SPACES.sub(" ", text.translate(_TO_SPACE)).strip()
    if text in {"x ray", "xray"}:
        text = "xray"
    if text in EN_YES or text in ZH_YES:
        return "yes"
    if text in EN_NO or text in ZH_NO:
        return "no"
    return text


class LmmsEvalProtocol:
    """lmms-eval 0.7.3's SLAKE rule: normalised exact match."""

    name = "lmms-eval"
    title = "lmms-eval 0.7.3: SLAKE normalised exact match with its yes/no map"
    follows = "lmms-eval 0.7.3 (PyPI): lmms_eval/tasks/slake/utils.py"
    benchmarks = ("slake", "slake_zh")
    notes = (
        "Exact match after lmms-eval's normalisation, closed and open alike; 正常 counts as yes "
        "and 异常 as no, as upstream. No LLM is involved. MedQA is not reproduced (random "
        "fallback)."
    )

    def judge(self, answer: Answer) -> Judgment:
        """1.0 when the normalised prediction equals the normalised gold answer."""
        check_supported(self, answer, ("closed", "open"))
        pred = normalize_slake(answer.prediction)
        correct = float(pred == normalize_slake(answer.gold))
        return Judgment(correct, pred, "normalized_exact_match")

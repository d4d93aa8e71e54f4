"""``vlmevalkit``: VLMEvalKit's rule-based multiple-choice matching, without its LLM judge.

Follows: ``vlmeval/utils/matching_util.py`` (``can_infer``, ``can_infer_option``,
``can_infer_text``) and ``vlmeval/dataset/utils/multiple_choice.py`` (``extract_answer_from_item``,
``eval_vanilla``) of open-compass/VLMEvalKit as of commit d21c5e96 (2025; the version that added
the "answer is" regex and the near-the-end and length guards), and
``vlmeval/dataset/image_shortqa.py`` for PathVQA. VLMEvalKit is not on PyPI, so these rules are
tested on literal cases only.

Covers: ``gmai_mmbench``, ``omnimedvqa``, ``medxpertqa_mm`` (MCQ) and ``pathvqa`` (short answers).

Rules, in order, on the stripped prediction (the first that answers wins):

1. ``api_failure``: "Failed to obtain answer via API" in the text -> no letter (falls through).
2. ``refusal``: one of VLMEvalKit's four refusal sentences -> ``Z`` (wrong).
3. ``option_letter``: ``.()[],:;!*#{}`` become spaces; the text is split on whitespace; exactly one
   option letter must be a token and, for that letter, its first position must be among the last
   four tokens ("B", "(B) Lung", "I think the answer is B"). ``Z`` alone as a token (and no
   option letter) -> ``Z``.
4. ``answer_is_regex``: ``(?i)(?:correct\\s+)?answer\\s+is\\s+\\**([ABCD])\\**`` - case-insensitive,
   limited to A-D: "The correct answer is (E) ..." is missed (the parenthesis also blocks it), and
   "the answer is a benign cyst" reads as ``A``.
5. ``option_text``: when the text is at most twice as long as all option texts together, the
   option whose lower-cased text occurs in the lower-cased prediction (plain substring), if
   exactly one does.
6. ``needs_llm_judge``: VLMEvalKit would ask its judge LLM here. We do not: the record scores 0
   as in VLMEvalKit's ``exact_matching`` mode ("Failed in Prefetch", option ``Z``).

PathVQA is a short-answer set (``ImageShortQADataset``): every record goes to the LLM judge, and
``exact_matching`` mode scores nothing there (``ans_map`` stays empty). So closed and open records
get ``correct=None`` and rule ``needs_llm_judge``: left out until a judge scores them.

Not reproduced: the ``VERBOSE`` environment switch that rejects answers holding the token "A"
(off by default upstream); circular evaluation (not used by the covered medical sets).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from medvl.eval.protocols.base import (
    Answer,
    Judgment,
    check_benchmark,
    option_letters,
    refuse_kind,
)

API_FAILURE = "Failed to obtain answer via API"
REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_SPLIT_CHARS = ".()[],:;!*#{}"
_TO_SPACE = str.maketrans(dict.fromkeys(_SPLIT_CHARS, " "))
ANSWER_IS_RE = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")
NEEDS_LLM_JUDGE = "needs_llm_judge"


def infer_option(answer: str, letters: list[str]) -> tuple[str | None, str]:
    """VLMEvalKit's ``can_infer_option``: ``(letter or None, rule)``."""
    if API_FAILURE in answer:
        return None, "api_failure"
    if any(sentence in answer for sentence in REFUSALS):
        return "Z", "refusal"
    tokens = answer.translate(_TO_SPACE).split()
    found = [c for c in letters if c in tokens]
    if len(found) == 1:
        letter = found[0]
        if tokens.index(letter) > len(tokens) - 5:
            return letter, "option_letter"
    elif not found and "Z" in tokens:
        return "Z", "option_letter"
    match = ANSWER_IS_RE.search(answer)
    if match and match.group(1).upper() in letters:
        return match.group(1).upper(), "answer_is_regex"
    return None, "unmatched"


def infer_text(answer: str, options: Mapping[str, str]) -> str | None:
    """VLMEvalKit's ``can_infer_text``: the one option whose text is in the answer."""
    answer = answer.lower()
    if len(answer) > 2 * sum(len(str(v)) for v in options.values()):
        return None
    found = [k for k in option_letters(options) if str(options[k]).lower() in answer]
    return found[0] if len(found) == 1 else None


def infer_choice(prediction: str, options: Mapping[str, str]) -> tuple[str | None, str]:
    """``can_infer`` on the stripped prediction: letter rules, then option text."""
    answer = prediction.strip()
    letter, rule = infer_option(answer, option_letters(options))
    if letter:
        return letter, rule
    letter = infer_text(answer, options)
    return (letter, "option_text") if letter else (None, NEEDS_LLM_JUDGE)


class VLMEvalKitProtocol:
    """VLMEvalKit's exact-matching MCQ rules; LLM-judge cases marked and scored 0."""

    name = "vlmevalkit"
    title = "VLMEvalKit: can_infer option/text matching (exact_matching mode, no judge LLM)"
    follows = (
        "open-compass/VLMEvalKit d21c5e96: vlmeval/utils/matching_util.py, "
        "vlmeval/dataset/utils/multiple_choice.py, vlmeval/dataset/image_shortqa.py"
    )
    benchmarks = ("gmai_mmbench", "omnimedvqa", "medxpertqa_mm", "pathvqa")
    notes = (
        "Where VLMEvalKit would call its judge LLM (rule needs_llm_judge) the MCQ record scores "
        "0, as its exact_matching mode does ('Failed in Prefetch'); PathVQA short answers always "
        "need the judge and are left out (correct=None) until one scores them. The 'answer is' "
        "regex only knows A-D."
    )

    def judge(self, answer: Answer) -> Judgment:
        """MCQ: the letter ``can_infer`` finds must equal the gold letter."""
        check_benchmark(self, answer.benchmark)
        if answer.kind in ("closed", "open"):
            return Judgment(None, None, NEEDS_LLM_JUDGE)
        if answer.kind != "mcq" or not answer.options:
            raise refuse_kind(self, answer.kind, answer.benchmark)
        letter, rule = infer_choice(answer.prediction or "", answer.options)
        right = letter is not None and letter == answer.gold.strip()
        return Judgment(float(right), letter, rule)

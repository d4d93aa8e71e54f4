"""``medvlm-r1``: MedVLM-R1's answer regex.

Follows: JZPeterPan/MedVLM-R1 commit 2eee4210, ``src/eval/test_qwen2vl_med.py``
(``extract_letter_answer`` and the accuracy loop, ``--prompt_type complex``, the setting of the
paper's numbers).

Covers: ``medvlm_r1`` (its 300 MRI + 300 CT + 300 X-ray multiple-choice questions).

Rule: the first match of ``<answer>\\s*([A-Z])\\s*</answer>`` (case-sensitive, one capital letter,
any letter A-Z) is the answer; it must equal the gold letter. No match (no tags, a lower-case
letter, "<answer>B. Lung</answer>", an unclosed tag) is wrong (rule ``no_answer_tag``); the
record stays in the denominator. ``<think>`` content is not removed, so an ``<answer>`` tag
written inside the reasoning counts when it comes first.

Not reproduced: ``--prompt_type simple``, which compares the raw output with the gold string.
"""

from __future__ import annotations

import re

from medvl.eval.protocols.base import Answer, Judgment, check_supported

ANSWER_RE = re.compile(r"<answer>\s*([A-Z])\s*</answer>")


class MedVLMR1Protocol:
    """MedVLM-R1's ``<answer>X</answer>`` regex; a miss is wrong."""

    name = "medvlm-r1"
    title = "MedVLM-R1: letter inside <answer></answer> tags, miss = wrong"
    follows = "JZPeterPan/MedVLM-R1 2eee4210: src/eval/test_qwen2vl_med.py"
    benchmarks = ("medvlm_r1",)
    notes = "Only the first <answer>X</answer> with one capital letter counts; no LLM involved."

    def judge(self, answer: Answer) -> Judgment:
        """1.0 when the tagged letter equals the gold letter."""
        check_supported(self, answer, ("mcq",))
        match = ANSWER_RE.search(answer.prediction or "")
        if match is None:
            return Judgment(0.0, None, "no_answer_tag")
        letter = match.group(1)
        return Judgment(float(letter == answer.gold), letter, "answer_tag")

"""``medevalkit``: MedEvalKit's (Lingshu's) rule scoring, without its GPT-4.1 judge.

Follows: alibaba-damo-academy/MedEvalKit (2025, the release behind the Lingshu paper):
``utils/utils.py`` (``parse_response``, ``judge_judgement``, ``judge_close_end_vqa``,
``judge_open_end_vqa``, ``calculate_f1``, ``judge_multi_choice``, ``extract``),
``utils/VQA_RAD/VQA_RAD.py``, ``utils/PATH_VQA/PATH_VQA.py``, ``utils/SLAKE/SLAKE.py``,
``utils/OmniMedVQA/OmniMedVQA.py``, ``utils/PMC_VQA/PMC_VQA.py`` (``cal_metrics``), and
``mathruler.grader.extract_boxed_content``.

Covers: ``vqa_rad``, ``pathvqa``, ``slake``, ``slake_zh``, ``omnimedvqa``, ``pmc_vqa``.
MedXpertQA-MM and MMMU are left out: their MedEvalKit files are not in the reference index,
so their choice formats could not be checked.

Rules:

- First the response's last ``\\boxed{...}`` (brace-balanced) is taken when present, else the
  text of its ``<answer>...</answer>`` tags when ``<answer>`` occurs. ``parse_response`` then
  lower-cases, does the same again (any "boxed" without a closed ``\\boxed{`` gives "None") and
  keeps what follows the last of "**answer**:", "**answer**", "*answer*:", "**answer:**",
  "answer is", "answer:", "答案:", "final answer", "final answer is", applied in that order.
- VQA-RAD and PathVQA split by the *gold answer*, not the question type: gold yes/no (after
  lower/strip) -> ``judge_judgement``: after removing newlines and periods, exactly one of the
  substrings "yes"/"no" must occur and the gold must be a substring ("not sure" holds "no";
  "normal" holds "no"; "yes, no doubt" holds both -> wrong). Any other gold -> open rule.
- SLAKE splits by ``answer_type``. Closed: gold exactly "yes"/"no" (case-sensitive; SLAKE ships
  "Yes"/"No") -> ``judge_judgement``, else ``judge_close_end_vqa``: the parsed response without
  newlines and periods must equal the lower-cased gold ("Yes." is right, "Yes, it is." wrong).
  Open -> the open rule.
- Open rule (no LLM judge, as MedEvalKit without ``use_llm_judge``): right when the parsed
  response equals the lower-cased gold exactly (no strip, so "The answer is lung" -> " lung" is
  wrong). Metrics ``precision``/``recall``/``f1`` reproduce the ``calculate_f1`` unpacking bug:
  it returns ``(f1, precision, recall)`` and the caller unpacks ``precision, recall, f1``, so
  "precision" holds F1, "recall" holds precision and "f1" holds recall (token sets, whitespace
  split). Upstream crashes on an empty response there (``return 0`` cannot be unpacked); we
  give 0s with rule ``open_empty``. BLEU and ROUGE are not computed.
- MCQ (``judge_multi_choice``): choices are written as upstream builds them (OmniMedVQA
  ``"A. text"``, PMC-VQA ``"A:text"``, the CSV cell). The response (OmniMedVQA: its ``<answer>``
  text first) is lower-cased, cut to a lone first/last paragraph letter, parsed as above, and
  ``split(".")[0].split(":")[-1]`` decides: equal to the gold letter -> right; another letter ->
  wrong; a whole choice string -> its letter; anything else -> the choice most similar by
  ``difflib.SequenceMatcher(None, choice, response).ratio()``, first on ties, index 0 when all
  are 0 - so an empty answer counts as "A".
- ``benchmark=None`` (data of no named benchmark): closed/open records follow the VQA-RAD rule
  (split by the gold answer), MCQ the OmniMedVQA one.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from medvl.eval.protocols.base import (
    Answer,
    Judgment,
    check_benchmark,
    option_letters,
    refuse_kind,
)

ANSWER_PATTERNS = (
    "**answer**:",
    "**answer**",
    "*answer*:",
    "**answer:**",
    "answer is",
    "answer:",
    "答案:",
    "final answer",
    "final answer is",
)
BOXED = "\\boxed{"
YES_NO_SPLIT = ("vqa_rad", "pathvqa")
MCQ_FORMATS = {"omnimedvqa": "{letter}. {text}", "pmc_vqa": "{letter}:{text}"}


def extract_boxed(text: str) -> str:
    """``mathruler.grader.extract_boxed_content``: the last balanced ``\\boxed{}``, or "None"."""
    start = text.rfind(BOXED)
    if start == -1:
        return "None"
    content, depth = text[start + len(BOXED) :], 0
    for i, char in enumerate(content):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == -1:
            return content[:i].strip()
    return "None"


def extract_tag(text: str, tag: str = "answer") -> str:
    """MedEvalKit's ``extract(text, tag)``: all closed ``<tag>`` contents joined, else the text."""
    start_tag, end_tag = f"<{tag}>", f"</{tag}>"
    parts, start = [], text.find(start_tag)
    while start != -1:
        end = text.find(end_tag, start + len(start_tag))
        if end == -1:
            break
        parts.append(text[start + len(start_tag) : end])
        start = text.find(start_tag, end + len(end_tag))
    joined = " ".join(parts).strip() if parts else ""
    return joined or text


def pre_extract(response: str) -> str:
    """The ``cal_metrics`` step before judging: boxed content, else ``<answer>`` text."""
    boxed = extract_boxed(response)
    if boxed != "None":
        return boxed
    return extract_tag(response) if "<answer>" in response else response


def parse_response(response: str) -> str:
    """MedEvalKit's ``parse_response`` (see the module docstring)."""
    response = response.lower()
    if "boxed" in response:
        response = extract_boxed(response)
    elif "<answer>" in response:
        response = extract_tag(response)
    for pattern in ANSWER_PATTERNS:
        if pattern in response:
            response = response.split(pattern)[-1]
    return response


def _cleaned(response: str) -> str:
    return parse_response(response).replace("\n", "").replace(".", "")


def judge_judgement(answer: str, response: str) -> bool:
    """Yes/no rule: exactly one of "yes"/"no" as substrings, and the gold as a substring."""
    answer, text = answer.lower(), _cleaned(response)
    return (("yes" in text) != ("no" in text)) and answer in text


def judge_close_end(answer: str, response: str) -> bool:
    """SLAKE's other closed rule: cleaned response equals the lower-cased gold."""
    return _cleaned(response) == answer.lower()


def calculate_f1_as_reported(response: str, answer: str) -> dict[str, float]:
    """``calculate_f1`` on token sets, with the caller's swapped unpacking reproduced."""
    pred, gold = set(response.lower().split()), set(answer.lower().split())
    common = pred & gold
    precision = len(common) / len(pred)
    recall = len(common) / len(gold)
    if precision + recall == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    f1 = 2 * precision * recall / (precision + recall)
    return {"precision": f1, "recall": precision, "f1": recall}


def judge_open(answer: str, response: str) -> Judgment:
    """Open rule without the LLM judge: exact equality of the parsed response."""
    answer, parsed = answer.lower(), parse_response(response)
    correct = float(parsed == answer)
    if not parsed.split() or not answer.split():
        zeros = {"em": correct, "precision": 0.0, "recall": 0.0, "f1": 0.0}
        return Judgment(correct, parsed, "open_empty", zeros)
    metrics = {"em": correct, **calculate_f1_as_reported(parsed, answer)}
    return Judgment(correct, parsed, "open_exact_match", metrics)


def judge_multi_choice(choices: list[str], answer: str, response: str) -> tuple[bool, str, str]:
    """MedEvalKit's ``judge_multi_choice``: ``(right, letter it settled on, rule)``."""
    alphas = [chr(ord("a") + i) for i in range(len(choices))]
    response = response.lower()
    paragraphs = response.split("\n\n")
    if paragraphs[0] in alphas:
        response = paragraphs[0]
    elif paragraphs[-1].split(".")[0] in alphas:
        response = paragraphs[-1].split(".")[0]
    response = parse_response(response).strip().lower().replace("\n", "")
    choices = [c.lower() for c in choices]
    head = response.split(".")[0].split(":")[-1]
    answer = answer.strip().lower()
    if head == answer:
        return True, head.upper(), "exact"
    if head in alphas:
        return choices[alphas.index(head)] == answer, head.upper(), "letter"
    if head in choices:
        letter = alphas[choices.index(head)]
        right = answer in alphas and head == choices[alphas.index(answer)]
        return right, letter.upper(), "option_text"
    best, index = 0.0, 0
    for i, choice in enumerate(choices):
        ratio = difflib.SequenceMatcher(None, choice, response).ratio()
        if ratio > best:
            best, index = ratio, i
    right = alphas[index] == answer or choices[index] == answer
    return right, alphas[index].upper(), "similarity"


class MedEvalKitProtocol:
    """MedEvalKit's closed/open/MCQ rules as run without its LLM judge."""

    name = "medevalkit"
    title = "MedEvalKit (Lingshu): yes/no substring rule, exact open match, similarity MCQ"
    follows = (
        "alibaba-damo-academy/MedEvalKit 2025: utils/utils.py and the cal_metrics of "
        "VQA_RAD, PATH_VQA, SLAKE, OmniMedVQA, PMC_VQA; mathruler extract_boxed_content"
    )
    benchmarks = ("vqa_rad", "pathvqa", "slake", "slake_zh", "omnimedvqa", "pmc_vqa")
    notes = (
        "Open questions: MedEvalKit's published numbers use a GPT-4.1 judge; without it (this "
        "protocol) an open answer is right only on exact equality, so open accuracy is near 0 "
        "(MedEvalKit issue #37). The calculate_f1 precision/recall/f1 swap is reproduced; "
        "BLEU/ROUGE are not computed. MedXpertQA-MM and MMMU are not covered."
    )

    def judge(self, answer: Answer) -> Judgment:
        """Dispatch as each benchmark's ``cal_metrics`` does (see the module docstring)."""
        kind, gold, benchmark = answer.kind, answer.gold, answer.benchmark
        check_benchmark(self, benchmark)
        prediction = answer.prediction or ""
        if kind == "mcq" and answer.options:
            return self._mcq(prediction, gold, answer.options, benchmark)
        if kind not in ("closed", "open"):
            raise refuse_kind(self, kind, benchmark)
        response = pre_extract(prediction)
        if benchmark in YES_NO_SPLIT or benchmark is None:
            answer, response = gold.lower().strip(), response.lower().strip()
            if answer in ("yes", "no"):
                return _closed(judge_judgement(answer, response), response, "yes_no_substring")
            return judge_open(answer, response)
        if kind == "closed" and gold in ("yes", "no"):
            return _closed(judge_judgement(gold, response), response, "yes_no_substring")
        if kind == "closed":
            return _closed(judge_close_end(gold, response), response, "closed_exact_match")
        return judge_open(gold, response)

    def _mcq(
        self, prediction: str, gold: str, options: Mapping[str, str], benchmark: str | None
    ) -> Judgment:
        template = MCQ_FORMATS.get(benchmark or "", MCQ_FORMATS["omnimedvqa"])
        letters = option_letters(options)
        choices = [template.format(letter=k, text=options[k]) for k in letters]
        response = prediction if benchmark == "pmc_vqa" else extract_tag(prediction)
        right, letter, rule = judge_multi_choice(choices, gold, response)
        return Judgment(float(right), letter, rule)


def _closed(right: bool, response: str, rule: str) -> Judgment:
    return Judgment(float(right), _cleaned(response), rule)

"""GRPO rewards: pure functions of the completions and the record's columns, one table of names.

Every reward has TRL's signature ``fn(completions, **columns) -> list[float | None]``: one value
per completion, ``None`` where the reward does not apply to that record (an MCQ reward on an open
question); TRL then leaves that reward out for that completion instead of counting a 0. A
completion is a string, or TRL's conversational form ``[{"role": "assistant", "content": text}]``.
Columns come from the dataset :mod:`medvl.train.grpo_data` builds from canonical records:
``answer`` (option letter for MCQ, else the reference text), ``options`` (``{"A": text}`` or
None), ``answer_type`` (``closed``/``open``/None) and ``lang``; TRL adds ``completion_ids``.

Answers are read the way the evaluator reads them, with the same code:

- ``mcq_accuracy``: :func:`medvl.eval.extract.extract_choice` (``<answer>`` content first, then
  phrases such as "the answer is B", a lone letter "B", "(B)", "B.", "B) Breast tissue", or the
  text of exactly one option) and :func:`medvl.eval.metrics.mcq_accuracy`;
- ``closed_accuracy`` / ``open_f1``: :func:`medvl.eval.metrics_text.closed_accuracy` (normalised
  match; a yes/no reference needs exactly one of yes/no in the answer) and ``token_f1``, applied
  to the ``<answer>`` content when there is one, else to the text outside ``<think>`` blocks.

``medvlm_r1_compat`` reproduces MedVLM-R1's accuracy reward exactly (its 1.0 / 0.5 / 0 rule and
its quirks) for faithful reproductions; ``mcq_accuracy`` is the one to train with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from medvl.eval.extract import extract_choice, extract_tag
from medvl.eval.metrics import mcq_accuracy
from medvl.eval.metrics_text import closed_accuracy, token_f1

Reward = Callable[..., list[float | None]]

#: MedVLM-R1 / R1-V's format: the whole completion is one think block then one answer block.
FORMAT_RE = re.compile(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", re.DOTALL)
_SOFT_FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_ANSWER_BLOCK_RE = re.compile(r"<answer>.*?</answer>", re.DOTALL)
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_R1_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or the content of TRL's last assistant message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else ""
        if isinstance(content, list):  # structured content blocks
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return content or ""
    return ""


def answer_span(text: str) -> str:
    """What a closed/open answer is judged on: the ``<answer>`` content, else the text outside
    ``<think>`` blocks (the whole text when nothing else is left)."""
    tag = extract_tag(text)
    if tag is not None:
        return tag
    body = _THINK_RE.sub(" ", text).strip()
    return body or text.strip()


def _column(columns: dict[str, Any], name: str, n: int) -> list[Any]:
    values = columns.get(name)
    return list(values) if values is not None else [None] * n


def format_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """1.0 when the whole completion is ``<think>...</think> <answer>...</answer>`` (DOTALL, so
    the reasoning may span lines; whitespace around the whole is allowed), else 0.0."""
    del columns
    return [float(bool(FORMAT_RE.fullmatch(completion_text(c)))) for c in completions]


def soft_format_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """Partial credit for the format: 1.0 when a think block followed by an answer block appears
    anywhere (text around them allowed), 0.5 for an answer block alone, else 0.0."""
    del columns
    scores: list[float | None] = []
    for completion in completions:
        text = completion_text(completion)
        if _SOFT_FORMAT_RE.search(text):
            scores.append(1.0)
        else:
            scores.append(0.5 if _ANSWER_BLOCK_RE.search(text) else 0.0)
    return scores


def mcq_accuracy_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """1.0 when the option the completion chooses (evaluator's extraction) is the gold letter,
    0.0 otherwise (also when nothing can be extracted); None for records without options."""
    n = len(completions)
    answers, options = _column(columns, "answer", n), _column(columns, "options", n)
    scores: list[float | None] = []
    for completion, gold, opts in zip(completions, answers, options, strict=True):
        if not opts or not gold:
            scores.append(None)
            continue
        found = extract_choice(completion_text(completion), opts)
        scores.append(mcq_accuracy(found.letter, str(gold)))
    return scores


def medvlm_r1_accuracy_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """MedVLM-R1's accuracy reward, reproduced exactly (``open_r1/grpo.py``).

    Gold: the ``<answer>`` content of the solution if any, else the solution, uppercased with
    whitespace removed. Student: the first ``<answer>...</answer>`` content (none -> 0.0),
    uppercased; every character A-J in it counts as a letter. Exactly one letter equal to the
    gold: 1.0 when nothing is left after removing it once, else 0.5 ("(B)", "B."). Anything
    else 0.0, including "B) Breast tissue" (its uppercase holds several A-J letters). None for
    records without options.
    """
    n = len(completions)
    answers, options = _column(columns, "answer", n), _column(columns, "options", n)
    scores: list[float | None] = []
    for completion, gold, opts in zip(completions, answers, options, strict=True):
        if not opts or not gold:
            scores.append(None)
            continue
        scores.append(_r1_score(completion_text(completion), str(gold)))
    return scores


def _r1_score(content: str, solution: str) -> float:
    match = _R1_TAG_RE.search(solution)
    gold = re.sub(r"\s+", "", (match.group(1) if match else solution).strip().upper())
    match = _R1_TAG_RE.search(content)
    student = match.group(1).strip() if match else ""
    letters = re.findall(r"[A-J]", student.upper())
    if len(letters) != 1 or letters[0] != gold:
        return 0.0
    leftover = re.sub(r"(?i)" + letters[0], "", student, count=1)
    return 0.5 if leftover.strip() else 1.0


def closed_accuracy_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """1.0 when a closed (non-MCQ) answer is right: yes/no must match exactly one of yes/no,
    other closed answers ("CT", "left") a normalised exact match; None for MCQ or open records."""
    n = len(completions)
    answers, options = _column(columns, "answer", n), _column(columns, "options", n)
    types, langs = _column(columns, "answer_type", n), _column(columns, "lang", n)
    scores: list[float | None] = []
    for completion, gold, opts, kind, lang in zip(
        completions, answers, options, types, langs, strict=True
    ):
        if opts or kind != "closed" or not gold:
            scores.append(None)
            continue
        span = answer_span(completion_text(completion))
        scores.append(closed_accuracy(span, str(gold), lang=lang or "en"))
    return scores


def open_f1_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """Token F1 of the answer against the reference for open (and unlabelled) questions; None
    for MCQ and closed records."""
    n = len(completions)
    answers, options = _column(columns, "answer", n), _column(columns, "options", n)
    types, langs = _column(columns, "answer_type", n), _column(columns, "lang", n)
    scores: list[float | None] = []
    for completion, gold, opts, kind, lang in zip(
        completions, answers, options, types, langs, strict=True
    ):
        if opts or kind == "closed" or not gold:
            scores.append(None)
            continue
        span = answer_span(completion_text(completion))
        scores.append(token_f1(span, str(gold), lang=lang or "en"))
    return scores


def length_penalty_reward(
    completions: Sequence[Any],
    completion_ids: Sequence[Sequence[int]] | None = None,
    *,
    max_tokens: int = 512,
    soft_tokens: int = 128,
    **columns: Any,
) -> list[float | None]:
    """DAPO's soft overlong penalty: 0.0 up to ``max_tokens - soft_tokens`` tokens, falling
    linearly to -1.0 at ``max_tokens`` and beyond. Lengths come from TRL's ``completion_ids``;
    without them (plain strings) whitespace-separated words are counted."""
    del columns
    start = max_tokens - soft_tokens
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        if completion_ids is not None:
            length = len(completion_ids[i])
        else:
            length = len(completion_text(completion).split())
        if length <= start:
            scores.append(0.0)
        else:
            scores.append(-min(1.0, (length - start) / max(soft_tokens, 1)))
    return scores


@dataclass(frozen=True)
class RewardSpec:
    """One reward: its function, what it checks, and which records it can verify."""

    fn: Reward
    description: str
    #: Record kinds (``mcq``, ``closed``, ``open``) whose answer it verifies; () for shape
    #: rewards (format, length) that verify nothing.
    verifies: tuple[str, ...] = ()


REWARDS: dict[str, RewardSpec] = {
    "format": RewardSpec(format_reward, "<think>...</think><answer>...</answer>, full match"),
    "soft_format": RewardSpec(soft_format_reward, "think+answer anywhere 1.0, answer only 0.5"),
    "mcq_accuracy": RewardSpec(
        mcq_accuracy_reward, "chosen option (evaluator's extraction) == gold letter", ("mcq",)
    ),
    "medvlm_r1_compat": RewardSpec(
        medvlm_r1_accuracy_reward, "MedVLM-R1's exact 1.0/0.5/0 letter rule", ("mcq",)
    ),
    "closed_accuracy": RewardSpec(
        closed_accuracy_reward, "closed answer: yes/no or normalised exact match", ("closed",)
    ),
    "open_f1": RewardSpec(open_f1_reward, "token F1 against the reference", ("open",)),
    "length_penalty": RewardSpec(
        length_penalty_reward, "0 below max_tokens - soft_tokens, down to -1 at max_tokens"
    ),
}


def reward_kind(options: Any, answer_type: str | None) -> str:
    """The kind of answer a record asks for, as rewards see it: ``mcq``, ``closed`` or ``open``."""
    if options:
        return "mcq"
    return "closed" if answer_type == "closed" else "open"

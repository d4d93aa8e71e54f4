"""Prompt templates for benchmark runs: how a canonical record's question is put to the model.

A template rewrites the record's **last user turn** (the question being asked) and may add a
**system turn**; everything else (earlier turns, images, gold answer) stays. The ``<image>``
placeholders of the rewritten turn are kept and put first, as the data readers write them.

- ``as_is``: the record's own prompt, unchanged. The data readers already write HuatuoGPT's MCQ
  prompt (question, ``A. text`` lines, "Answer with the option's letter from the given choices
  directly."), so converted records keep it.
- ``huatuo``: that MCQ prompt rebuilt from the record's stem and options (for records written by
  other tools); closed/open questions unchanged.
- ``short_answer``: lmms-eval's SLAKE post-prompt ("Answer the question using a single word or
  phrase." / "请用一个词或短语回答问题。") after a closed/open question; MCQ unchanged.
- ``reasoning``: MedVLM-R1's template (its wording verbatim, without the indentation of their
  source file); the problem is the stem then one ``A) text`` line per option, as MedVLM-R1 builds
  it. Multiple choice only.
- ``custom`` (:func:`resolve_prompt`): the benchmark's default plus ``--system`` text in the
  system role and/or a ``--user-template`` with ``{question}``, ``{options}``, ``{instruction}``.

Every resolved template has a :meth:`PromptTemplate.digest` over all its fields; the prediction
cache is keyed by it, so changing any wording makes a new cache entry.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace
from types import MappingProxyType
from typing import Any

from medvl.data.formats.base import MCQ_INSTRUCTION
from medvl.data.record import IMAGE_PLACEHOLDER, Message, Record
from medvl.errors import ConfigError, UnknownNameError

#: MedVLM-R1's Huatuo/ISIC QUESTION_TEMPLATE (JZPeterPan/MedVLM-R1 grpo.py, test_qwen2vl_med.py).
REASONING_TEMPLATE = (
    "{question}\n"
    "Your task:\n"
    "1. Think through the question step by step, enclose your reasoning process in "
    "<think>...</think> tags.\n"
    "2. Then provide the correct single-letter choice (A, B, C, D,...) inside "
    "<answer>...</answer> tags.\n"
    "3. No extra information or text outside of these tags."
)
#: lmms-eval's SLAKE post-prompt (tasks/slake), per language.
SHORT_ANSWER = {
    "en": "Answer the question using a single word or phrase.",
    "zh": "请用一个词或短语回答问题。",
}
#: What a question becomes when nothing is rewritten.
KEEP = None
_OPTION_PREFIXES = ("{k}.", "{k})", "({k})", "{k}:")


@dataclass(frozen=True)
class PromptTemplate:
    """How the question of each record is worded; ``None`` formats leave that kind unchanged.

    ``mcq`` formats multiple-choice records and ``question`` the others (closed/open VQA);
    both take ``{question}`` (the stem), ``{options}`` (one ``option_line`` per option, empty
    for non-MCQ) and ``{instruction}`` (``instructions`` in the record's language, English
    otherwise). Report-generation records are never rewritten except by a custom user template.
    """

    name: str
    description: str
    mcq: str | None = KEEP
    question: str | None = KEEP
    option_line: str = "{letter}. {text}"
    instructions: tuple[tuple[str, str], ...] = ()
    system: str | None = None
    mcq_only: bool = False
    reports: bool = False

    def instruction(self, lang: str) -> str:
        table = dict(self.instructions)
        return table.get(lang, table.get("en", ""))

    def to_dict(self) -> dict[str, Any]:
        """Every field (what ``run.json`` records and :meth:`digest` hashes)."""
        return asdict(self)

    def digest(self) -> str:
        """A short SHA-256 of every field that changes what the model is asked."""
        fields = {k: v for k, v in self.to_dict().items() if k not in ("name", "description")}
        text = json.dumps(fields, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def apply(self, record: Record) -> Record:
        """The record with its last user turn (and system turn) rewritten by this template."""
        kind = "mcq" if record.options else "report" if record.question_type == "report" else "qa"
        if self.mcq_only and kind != "mcq":
            raise ConfigError(
                f"prompt {self.name!r} is for multiple-choice questions and record "
                f"{record.id!r} is not one; use --prompt default (or as_is, short_answer)"
            )
        fmt = {"mcq": self.mcq, "qa": self.question}.get(kind)
        if kind == "report" and self.reports:
            fmt = self.question
        messages = list(record.messages)
        if fmt is not KEEP:
            messages = _rewrite_last_user(messages, self._fill(fmt, record))
        if self.system is not None:
            messages = [m for m in messages if m.role != "system"]
            messages.insert(0, Message("system", self.system))
        return replace(record, messages=messages)

    def _fill(self, fmt: str, record: Record) -> str:
        options = record.options or {}
        lines = [self.option_line.format(letter=k, text=v) for k, v in options.items()]
        stem = question_stem(record)
        text = fmt.format(
            question=stem, options="\n".join(lines), instruction=self.instruction(record.lang)
        )
        return re.sub(r"\n{3,}", "\n\n", text).strip()


def question_stem(record: Record) -> str:
    """The question without its option lines and the "answer with the letter" instruction
    (which the data readers append to MCQ questions) or a short-answer post-prompt."""
    options = record.options or {}
    option_lines = {
        " ".join(f"{prefix.format(k=k)} {v}".split()).casefold()
        for k, v in options.items()
        for prefix in _OPTION_PREFIXES
    }
    tails = {t.casefold() for t in (*MCQ_INSTRUCTION.values(), *SHORT_ANSWER.values())}
    kept = []
    for line in record.question.splitlines():
        bare = " ".join(line.split()).casefold()
        if bare in option_lines or bare in tails:
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def _rewrite_last_user(messages: list[Message], text: str) -> list[Message]:
    index = max(i for i, m in enumerate(messages) if m.role == "user")
    images = messages[index].content.count(IMAGE_PLACEHOLDER)
    out = list(messages)
    out[index] = Message("user", (IMAGE_PLACEHOLDER + "\n") * images + text)
    return out


_TEMPLATES = (
    PromptTemplate("as_is", "the record's own prompt, unchanged"),
    PromptTemplate(
        "huatuo",
        "HuatuoGPT-Vision MCQ prompt: question, 'A. text' lines, answer with the letter",
        mcq="{question}\n{options}\n{instruction}",
        instructions=tuple(MCQ_INSTRUCTION.items()),
    ),
    PromptTemplate(
        "short_answer",
        "lmms-eval post-prompt: answer with a single word or phrase (closed/open VQA)",
        question="{question}\n{instruction}",
        instructions=tuple(SHORT_ANSWER.items()),
    ),
    PromptTemplate(
        "reasoning",
        "MedVLM-R1: think in <think></think>, the letter in <answer></answer> (MCQ only)",
        mcq=REASONING_TEMPLATE.format(question="{question}\n{options}"),
        option_line="{letter}) {text}",
        mcq_only=True,
    ),
)
TEMPLATES: MappingProxyType[str, PromptTemplate] = MappingProxyType({t.name: t for t in _TEMPLATES})
#: What ``--prompt`` accepts besides the template names.
SPECIAL = ("default", "custom")


def prompt_names() -> list[str]:
    """Every value ``--prompt`` takes."""
    return [*SPECIAL, *TEMPLATES]


def resolve_prompt(
    name: str,
    default: str,
    *,
    system: str | None = None,
    user_template: str | None = None,
) -> PromptTemplate:
    """The template a run uses: ``default`` is the benchmark's ``default`` template; ``custom``
    is that plus ``system`` and/or ``user_template``. ``system`` may go with any template."""
    if name not in prompt_names():
        raise UnknownNameError("prompt", name, prompt_names())
    base = TEMPLATES[default if name in SPECIAL else name]
    if name == "custom" and not (system or user_template):
        raise ConfigError(
            "--prompt custom needs --system TEXT (put in the system role) and/or "
            "--user-template TEXT (with {question}, {options}, {instruction})"
        )
    if user_template is not None and name != "custom":
        raise ConfigError(f"--user-template goes with --prompt custom, not --prompt {name}")
    if user_template is not None:
        _check_user_template(user_template)
        base = replace(base, mcq=user_template, question=user_template, reports=True)
    if system is not None:
        if not system.strip():
            raise ConfigError("--system is empty; pass the system prompt text")
        base = replace(base, system=system)
    if name == "custom":
        base = replace(base, name="custom", description=f"custom, on top of {base.name!r}")
    return base


def _check_user_template(text: str) -> None:
    try:
        text.format(question="", options="", instruction="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"--user-template {text!r} is not a valid template ({exc!r}); use the fields "
            "{question}, {options} and {instruction}, and double other braces: {{ }}"
        ) from None
    if "{question}" not in text:
        raise ConfigError("--user-template must contain {question} (the record's question)")

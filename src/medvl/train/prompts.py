"""GRPO prompts: how a canonical record becomes the conversation the policy answers.

The templates are the evaluator's (:mod:`medvl.eval.prompts`), so a model trained with a template
is evaluated with the same words (``medvl eval ... --prompt <template>``):

- ``plain`` (the evaluator's ``as_is``): the record's own question, unchanged: the prompt the
  model saw in SFT (an MCQ keeps its ``A. text`` lines and "answer with the letter"
  instruction). For models that answer directly, e.g. tiny ones that cannot reason.
- ``reasoning``: MedVLM-R1's Huatuo template (wording verbatim, without their source file's
  indentation): the stem, one ``A) text`` line per option, then "Think ... <think>...</think>
  ... <answer>...</answer>". Multiple-choice records only; others are dropped with a count.
- ``huatuo`` / ``short_answer``: the evaluator's other plain-answer prompts.

The template rewrites the last user turn; its images come first, as MedVLM-R1 sends them, as
``{"type": "image"}`` blocks that TRL fills with the loaded images. A ``system`` text goes in the
system role (MedVLM-R1 used none, so the chat template's default system prompt applies).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from medvl.data.record import Record
from medvl.data.tokens import chat_messages
from medvl.eval.prompts import TEMPLATES as EVAL_TEMPLATES
from medvl.eval.prompts import PromptTemplate

#: GRPO template name -> the evaluator's template of the same wording.
TEMPLATES: dict[str, str] = {
    "plain": "as_is",
    "reasoning": "reasoning",
    "huatuo": "huatuo",
    "short_answer": "short_answer",
}
#: The R1 system prompt (defined but unused by MedVLM-R1), for recipes that want one.
R1_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think><answer> answer here </answer>"
)


def prompt_template(name: str, system: str | None = None) -> PromptTemplate:
    """The evaluator's template behind GRPO template ``name`` (``system`` in the system role)."""
    template = EVAL_TEMPLATES[TEMPLATES[name]]
    return replace(template, system=system) if system is not None else template


def accepts(template: PromptTemplate, record: Record) -> bool:
    """Whether ``template`` can phrase ``record`` (the reasoning template is MCQ-only)."""
    return bool(record.options) or not template.mcq_only


def build_prompt(record: Record, template: PromptTemplate) -> list[dict[str, Any]]:
    """The conversation (TRL's structured form, images as blocks) the policy continues."""
    return chat_messages(template.apply(record), with_answer=False)

"""HuatuoGPT-Vision's evaluation bundle and MedVLM-R1's problem/solution files.

Bundle (``medical_multimodel_evaluation_data.json`` + ``images/``; "multimodel" sic): a list of
``{"image": ["images/brain002206.png"], "question", "options": [...], "answer": <option text>,
"dataset": "OmniMedVQA", "subset": "MR (Mag-netic Resonance Imaging)"}``. Records with
``question_type == "open"`` or no options are skipped (HuatuoGPT's scorer skips them too).

MedVLM-R1 (e.g. ``MRI_CT_XRAY_300each_dataset.json``): the same records plus ``problem``
(``question + "\\nA) opt\\nB) opt..."``) and ``solution``, a letter or ``"<answer> C </answer>"``
(Med-R1). Without ``options``, they are parsed back out of ``problem``.

The canonical ``dataset`` is the source benchmark (``OmniMedVQA`` -> ``omnimedvqa``, ``VQA-RAD``
-> ``vqa_rad``), so accuracy can be reported per benchmark; the raw name and ``subset`` stay in
``meta``. The input is the JSON file, or the folder holding it (the bundle's file first). Every
record is split ``test`` unless the file's name names another split.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial

from medvl.data.formats.base import (
    Candidate,
    ReadContext,
    Skipped,
    SkipRecord,
    guess_lang,
    letter_for,
    lettered,
    qa_record,
    split_label,
    text_field,
)
from medvl.data.formats.chat import image_list
from medvl.data.formats.sources import folder_file, object_rows
from medvl.data.record import Record

BUNDLE_FILES = ("medical_multimodel_evaluation_data.json", "MRI_CT_XRAY_300each_dataset.json")
_ANSWER_TAG_RE = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL | re.IGNORECASE)
_OPTION_LINE_RE = re.compile(r"^\s*([A-J])\)\s*(.*)$")


def read_huatuo(ctx: ReadContext) -> Iterator[Candidate | Skipped]:
    """One candidate per question of a Huatuo bundle or MedVLM-R1 file."""
    path = folder_file(ctx.input, BUNDLE_FILES, "the bundle's folder or a MedVLM-R1 JSON")
    prefix = _stem_id(path.stem)
    split = split_label(ctx, path, "test")
    for item in object_rows(path):
        if isinstance(item, Skipped):
            yield item
            continue
        index, _, row = item
        native = row.get("id")
        record_id = str(native) if native not in (None, "") else f"{prefix}-{index:05d}"
        yield Candidate(record_id, partial(_build, ctx, row, record_id, split), split=split)


def _stem_id(stem: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_") or "huatuo"


def r1_letter(solution: str, options: dict[str, str]) -> str:
    """The letter of a MedVLM-R1 solution: ``"D"`` or ``"<answer> C </answer>"``."""
    match = _ANSWER_TAG_RE.search(solution)
    letter = (match.group(1) if match else solution).strip().upper()
    if letter not in options:
        raise SkipRecord(
            f"solution {solution!r} is not one of the option letters {sorted(options)}"
        )
    return letter


def parse_problem(problem: str) -> tuple[str, dict[str, str]]:
    """Split ``"Q\\nA) opt\\nB) opt"`` into the question and its options."""
    question_lines, options = [], {}
    for line in problem.splitlines():
        match = _OPTION_LINE_RE.match(line)
        if match and (options or question_lines):
            options[match.group(1)] = match.group(2).strip()
        elif not options:
            question_lines.append(line)
    return "\n".join(question_lines).strip(), options


def _question_and_options(row: dict) -> tuple[str, dict[str, str]]:
    if str(row.get("question_type", "")).strip().lower() == "open":
        raise SkipRecord("open question (question_type 'open'); only multiple choice is read")
    raw = row.get("options")
    if isinstance(raw, list) and raw:
        return text_field(row, "question", "problem"), lettered(raw)
    if "problem" in row:
        question, options = parse_problem(text_field(row, "problem"))
        if options:
            return text_field(row, "question", required=False) or question, options
    raise SkipRecord("no options (an open question); only multiple choice is read")


def _build(ctx: ReadContext, row: dict, record_id: str, split: str) -> Record:
    question, options = _question_and_options(row)
    if "solution" in row:
        answer = r1_letter(text_field(row, "solution"), options)
    else:
        answer = letter_for(text_field(row, "answer"), options)
    source = text_field(row, "dataset", required=False)
    used = {"question", "options", "image"}
    return qa_record(
        record_id=record_id,
        dataset=_stem_id(source) if source else "huatuo",
        split=split,
        lang=guess_lang(question),
        images=[ctx.image(p) for p in image_list(row.get("image", row.get("images")))],
        question=question,
        answer=answer,
        options=options,
        answer_type="closed",
        meta={k: v for k, v in row.items() if k not in used},
    )

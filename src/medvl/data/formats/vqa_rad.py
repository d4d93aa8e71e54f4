"""VQA-RAD, in its original public JSON and in the image/question/answer export.

Original (``VQA_RAD Dataset Public.json`` + ``VQA_RAD Image Folder/``): ``{"qid", "image_name",
"image_organ", "answer", "answer_type": CLOSED|OPEN, "question_type": PRES|POS|ABN..., "question",
"phrase_type"}``; the test questions are those whose ``phrase_type`` starts with ``test``
(``test_freeform``, ``test_para``), so ``--split`` filters on it.

Export (the re-export of ``flaviagiammarino/vqa-rad``: ``test.json`` + ``images/test/*.jpg``, one
image file per question, ``image_path`` with Windows backslashes, plus ``question_type`` and
``answer_type`` where the exporter kept them): read as :mod:`~medvl.data.formats.vqa_export`
rows, closed = yes/no when no answer type is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from medvl.data.formats.base import (
    Candidate,
    ReadContext,
    Skipped,
    SkipRecord,
    closed_or_open,
    qa_record,
    split_label,
    text_field,
)
from medvl.data.formats.sources import object_rows, require_file
from medvl.data.formats.vqa_export import export_record
from medvl.data.record import Record

IMAGE_DIRS = ("VQA_RAD Image Folder", "images")


def read_vqa_rad(ctx: ReadContext) -> Iterator[Candidate | Skipped]:
    """One candidate per question of either VQA-RAD layout (told apart row by row)."""
    path = require_file(ctx.input, "VQA_RAD Dataset Public.json or an exported <split>.json")
    label = split_label(ctx, path, "test")
    for item in object_rows(path):
        if isinstance(item, Skipped):
            yield item
            continue
        index, _, row = item
        if "image_name" in row and "qid" in row:
            split = _original_split(row)
            record_id = f"vqa_rad-{row['qid']}"
            yield Candidate(record_id, partial(_original, ctx, row, record_id), split=split)
        else:
            record_id = f"vqa_rad-{label}-{index:05d}"
            build = partial(export_record, ctx, row, record_id, "vqa_rad", label)
            yield Candidate(record_id, build)


def _original_split(row: dict) -> str:
    phrase = str(row.get("phrase_type") or "").lower()
    return "test" if phrase.startswith("test") else "train"


def _original(ctx: ReadContext, row: dict, record_id: str) -> Record:
    question = text_field(row, "question")
    answer = text_field(row, "answer")
    answer_type = closed_or_open(row.get("answer_type"))
    if answer_type is None:
        raise SkipRecord(f"answer_type is {row.get('answer_type')!r}; expected CLOSED or OPEN")
    return qa_record(
        record_id=record_id,
        dataset="vqa_rad",
        split=_original_split(row),
        lang="en",
        images=[ctx.image(text_field(row, "image_name"), subdirs=IMAGE_DIRS)],
        question=question,
        answer=answer,
        answer_type=answer_type,
        question_type=text_field(row, "question_type", required=False),
        meta={k: v for k, v in row.items() if k not in ("question", "answer")},
    )

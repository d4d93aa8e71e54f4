"""VQA-RAD in the three layouts it is shipped in; pass the folder or one of its files.

* ``data_RAD/`` (the split used by MEVF and most VQA-RAD papers): ``trainset.json``,
  ``testset.json`` and ``images/``. Records ``{"qid", "image_name", "image_organ", "answer",
  "answer_type": CLOSED|OPEN, "question_type": PRES|POS|ABN..., "question", "phrase_type":
  freeform|para|...}``. The split is the file's: every record of ``testset.json`` is test,
  whatever its ``phrase_type`` says.
* The public release ``VQA_RAD Dataset Public.json`` + ``VQA_RAD Image Folder/``: the same
  records in one file holding both splits; there (and only in a file whose name names no split)
  the test questions are those whose ``phrase_type`` starts with ``test`` (``test_freeform``,
  ``test_para``).
* The Hugging Face export (the re-export of ``flaviagiammarino/vqa-rad``, e.g. ``data/vqa_rad/``):
  ``train.json``/``test.json`` + ``images/<split>/*.jpg``, one image file per question,
  ``image_path`` with Windows backslashes, plus ``question_type`` and ``answer_type`` where the
  exporter kept them; read as :mod:`~medvl.data.formats.vqa_export` rows (closed = yes/no when no
  answer type is given).

A folder is recognised by its files: the release JSON if present, else the split files
(``trainset.json``, ``test.json``, ...). ``--split`` then reads only that split's file.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from medvl.data.formats.base import (
    Candidate,
    ReadContext,
    Skipped,
    SkipRecord,
    closed_or_open,
    guess_split,
    qa_record,
    text_field,
)
from medvl.data.formats.sources import object_rows, split_files
from medvl.data.formats.vqa_export import export_record
from medvl.data.record import Record

RELEASE = "VQA_RAD Dataset Public.json"
IMAGE_DIRS = ("VQA_RAD Image Folder", "images")
_EXPECTS = (
    "the data_RAD folder (trainset.json, testset.json, images/), "
    f"'{RELEASE}' (+ 'VQA_RAD Image Folder/'), or an export folder (test.json + images/)"
)


def vqa_rad_files(ctx: ReadContext) -> list[tuple[Path, str | None]]:
    """``(file, split)`` to read; split None: the file holds both (taken from ``phrase_type``)."""
    if ctx.input.is_file():
        return [(ctx.input, guess_split(ctx.input, "") or None)]
    if (ctx.input / RELEASE).is_file():
        return [(ctx.input / RELEASE, None)]
    return list(split_files(ctx.input, _EXPECTS, ctx.split))


def read_vqa_rad(ctx: ReadContext) -> Iterator[Candidate | Skipped]:
    """One candidate per question of any VQA-RAD layout (told apart row by row)."""
    for path, file_split in vqa_rad_files(ctx):
        for item in object_rows(path):
            if isinstance(item, Skipped):
                yield item
                continue
            index, _, row = item
            if "image_name" in row and "qid" in row:
                split = file_split or phrase_split(row)
                qid = row["qid"]
                record_id = f"vqa_rad-{split}-{qid}" if file_split else f"vqa_rad-{qid}"
                build = partial(_original, ctx, row, record_id, split)
            else:
                split = file_split or "test"
                record_id = f"vqa_rad-{split}-{index:05d}"
                build = partial(export_record, ctx, row, record_id, "vqa_rad", split)
            yield Candidate(record_id, build, "en", split)


def phrase_split(row: dict) -> str:
    """The split of a record of the release JSON: test for ``test_*`` phrase types."""
    phrase = str(row.get("phrase_type") or "").lower()
    return "test" if phrase.startswith("test") else "train"


def _original(ctx: ReadContext, row: dict, record_id: str, split: str) -> Record:
    question = text_field(row, "question")
    answer = text_field(row, "answer")
    answer_type = closed_or_open(row.get("answer_type"))
    if answer_type is None:
        raise SkipRecord(f"answer_type is {row.get('answer_type')!r}; expected CLOSED or OPEN")
    return qa_record(
        record_id=record_id,
        dataset="vqa_rad",
        split=split,
        lang="en",
        images=[ctx.image(text_field(row, "image_name"), subdirs=IMAGE_DIRS)],
        question=question,
        answer=answer,
        answer_type=answer_type,
        question_type=text_field(row, "question_type", required=False),
        meta={k: v for k, v in row.items() if k not in ("question", "answer")},
    )

"""Image/question/answer exports: PathVQA, VQA-RAD and other re-exports of Hugging Face sets.

Layout (e.g. the re-export of ``flaviagiammarino/path-vqa``): ``<split>.json`` (a JSON list, JSON
lines or a CSV) of ``{"image_path": "images\\\\test\\\\pathvqa_00000.jpg", "question", "answer"}``
plus, where the exporter kept them, ``question_type`` and ``answer_type``; image files beside it.
Closed questions are the yes/no ones: the file's ``answer_type`` is used when present, otherwise
a yes/no answer means closed (as MedEvalKit scores the HF copies).

The input is one file, whose name gives the split (``test.json`` -> test; a name without a
split word -> test), or the export folder (``data/pathvqa/``), whose ``train``/``validation``/
``test`` files are all read, each with its own split (only the ``--split`` one when given).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from medvl.data.formats.base import (
    Candidate,
    ReadContext,
    Skipped,
    closed_or_open,
    guess_lang,
    qa_record,
    split_label,
    text_field,
)
from medvl.data.formats.sources import any_rows, split_files
from medvl.data.record import Record

IMAGE_FIELDS = ("image_path", "image", "image_name", "img_name", "img_path", "file_name")
QUESTION_FIELDS = ("question", "Question", "query")
ANSWER_FIELDS = ("answer", "Answer", "gt_answer")


def export_dataset(ctx: ReadContext, default: str | None) -> str:
    """``dataset=`` option, else the format's name, else the input folder's name."""
    folder = ctx.input if ctx.input.is_dir() else ctx.input.resolve().parent
    name = ctx.option("dataset") or default or folder.resolve().name
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_") or "vqa"


def export_files(ctx: ReadContext) -> list[tuple[Path, str]]:
    """``(file, split)``: the input file, or the split files of an export folder."""
    if ctx.input.is_file():
        return [(ctx.input, split_label(ctx, ctx.input, "test"))]
    what = "an export folder (train/validation/test .json, .jsonl or .csv) or one of its files"
    return split_files(ctx.input, what, ctx.split)


def read_export(ctx: ReadContext, dataset: str | None = None) -> Iterator[Candidate | Skipped]:
    """One candidate per row of an image/question/answer export file or folder."""
    dataset = export_dataset(ctx, dataset)
    for path, split in export_files(ctx):
        yield from _file_candidates(ctx, path, dataset, split)


def _file_candidates(
    ctx: ReadContext, path: Path, dataset: str, split: str
) -> Iterator[Candidate | Skipped]:
    for index, item in enumerate(any_rows(path)):
        if isinstance(item, Skipped):
            yield item
            continue
        key, row = item
        if not isinstance(row, dict):
            yield Skipped(key, "not a JSON object")
            continue
        native = row.get("id", row.get("qid"))
        suffix = native if native not in (None, "") else f"{index:05d}"
        record_id = f"{dataset}-{split}-{suffix}"
        build = partial(export_record, ctx, row, record_id, dataset, split)
        yield Candidate(record_id, build, split=split)


def export_record(ctx: ReadContext, row: dict, record_id: str, dataset: str, split: str) -> Record:
    """The canonical record of one export row (also used for VQA-RAD's HF export)."""
    question = text_field(row, *QUESTION_FIELDS)
    answer = text_field(row, *ANSWER_FIELDS)
    image = text_field(row, *IMAGE_FIELDS)
    used = {*QUESTION_FIELDS, *ANSWER_FIELDS}
    return qa_record(
        record_id=record_id,
        dataset=dataset,
        split=split,
        lang=guess_lang(question),
        images=[ctx.image(image, subdirs=("images",))],
        question=question,
        answer=answer,
        answer_type=closed_or_open(row.get("answer_type"), answer),
        question_type=text_field(row, "question_type", required=False),
        meta={k: v for k, v in row.items() if k not in used},
    )


def read_pathvqa(ctx: ReadContext) -> Iterator[Candidate | Skipped]:
    """PathVQA in the image/question/answer export layout."""
    return read_export(ctx, "pathvqa")


def read_vqa_export(ctx: ReadContext) -> Iterator[Candidate | Skipped]:
    """Any image/question/answer export; ``dataset=`` names it (default: its folder's name)."""
    return read_export(ctx, None)

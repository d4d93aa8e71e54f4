"""SLAKE 1.0 (``BoKelvin/SLAKE``): ``train.json``/``validation.json``/``test.json`` + ``imgs/``.

Each record: ``{"img_id", "img_name": "xmlab0/source.jpg", "question", "answer", "q_lang": en|zh,
"location", "modality", "answer_type": CLOSED|OPEN, "base_type": vqa|kvqa, "content_type",
"triple", "qid"}``. Both languages share one file, so ``--lang`` filters on ``q_lang``. CLOSED
answers are not always yes/no, so ``answer_type`` comes from the file, never from the answer.

The input is the SLAKE folder (``Slake1.0/``: every split file, each with its split; only the
``--split`` one when given) or one split file, whose name gives the split.
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
    guess_lang,
    qa_record,
    split_label,
    text_field,
)
from medvl.data.formats.sources import object_rows
from medvl.data.record import Record
from medvl.errors import MedvlError

SPLIT_FILES = {"train": "train.json", "validation": "validation.json", "test": "test.json"}


def slake_files(ctx: ReadContext) -> list[tuple[Path, str]]:
    """The (file, split) pairs to read: one file, or the split files of a SLAKE folder."""
    if ctx.input.is_file():
        return [(ctx.input, split_label(ctx, ctx.input, "test"))]
    wanted = [ctx.split] if ctx.split else list(SPLIT_FILES)
    files = [
        (ctx.input / SPLIT_FILES[s], s)
        for s in wanted
        if s in SPLIT_FILES and (ctx.input / SPLIT_FILES[s]).is_file()
    ]
    if not files:
        names = " / ".join(SPLIT_FILES[s] for s in wanted if s in SPLIT_FILES) or "no file"
        raise MedvlError(
            f"{ctx.input}: no {names} here (SLAKE's splits are {', '.join(SPLIT_FILES)}); pass "
            "the SLAKE folder (holding train.json, validation.json, test.json and imgs/) or one "
            "of its files"
        )
    return files


def read_slake(ctx: ReadContext) -> Iterator[Candidate | Skipped]:
    """One candidate per SLAKE question; ``lang`` is known up front from ``q_lang``."""
    for path, split in slake_files(ctx):
        for item in object_rows(path):
            if isinstance(item, Skipped):
                yield item
                continue
            index, _, row = item
            qid = row.get("qid")
            record_id = f"slake-{qid}" if qid not in (None, "") else f"slake-{split}-{index}"
            lang = row.get("q_lang") if isinstance(row.get("q_lang"), str) else None
            yield Candidate(record_id, partial(_build, ctx, row, record_id, split), lang, split)


def _build(ctx: ReadContext, row: dict, record_id: str, split: str) -> Record:
    question = text_field(row, "question")
    answer = text_field(row, "answer")
    image_name = text_field(row, "img_name")
    answer_type = closed_or_open(row.get("answer_type"))
    if answer_type is None:
        raise SkipRecord(f"answer_type is {row.get('answer_type')!r}; expected CLOSED or OPEN")
    lang = row.get("q_lang") or guess_lang(question)
    if lang not in ("en", "zh"):
        raise SkipRecord(f"q_lang is {lang!r}; expected en or zh")
    return qa_record(
        record_id=record_id,
        dataset="slake",
        split=split,
        lang=lang,
        images=[ctx.image(image_name, subdirs=("imgs",))],
        question=question,
        answer=answer,
        answer_type=answer_type,
        question_type=row.get("content_type") or None,
        meta={k: v for k, v in row.items() if k not in ("question", "answer")},
    )

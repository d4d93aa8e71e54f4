"""PMC-VQA (``RadGenome/PMC-VQA``): ``train.csv``/``test.csv``/``test_2.csv``... + ``images/``.

Columns: ``[index,] Figure_path, Caption, Question, Choice A..Choice D, Answer[, Answer_label]
[, split]``. Choices carry an ``A:`` prefix (``"A:Diffuse uptake pattern"``), stripped here. The
gold letter is ``Answer_label`` when present, else ``Answer`` as a letter, a ``B:...`` choice, or
the text of one choice.

The input is one CSV, whose name gives the split (``test_2.csv`` -> test), or the PMC-VQA
folder. The folder holds several versions of each split; :data:`PREFERRED` picks the second
version (``train_2.csv``, ``test_2.csv``: the 2k test set that HuatuoGPT-Vision and MedEvalKit
score), falling back to ``train.csv``/``test.csv``. Pass a file to read another version.
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
    SkipRecord,
    is_missing,
    letter_for,
    qa_record,
    split_label,
    text_field,
)
from medvl.data.formats.sources import split_files, table_rows
from medvl.data.record import Record

LETTERS = "ABCD"
IMAGE_DIRS = ("images", "images_2", "figures")
PREFERRED = ("train_2.csv", "test_2.csv", "train.csv", "test.csv")
_PREFIX_RE = re.compile(r"^\s*([A-Da-d])\s*[:.)：]\s*")


def strip_choice(text: str) -> str:
    """``"A:Diffuse uptake"`` -> ``"Diffuse uptake"`` (other text unchanged)."""
    return _PREFIX_RE.sub("", text, count=1).strip()


def pmc_files(ctx: ReadContext) -> list[tuple[Path, str]]:
    """``(file, split)``: the input CSV, or the preferred CSV of each split of the folder."""
    if ctx.input.is_file():
        return [(ctx.input, split_label(ctx, ctx.input, "test"))]
    what = "the PMC-VQA folder (test_2.csv, train_2.csv, images/) or one of its CSV files"
    return split_files(ctx.input, what, ctx.split, prefer=PREFERRED)


def read_pmc_vqa(ctx: ReadContext) -> Iterator[Candidate | Skipped]:
    """One candidate per CSV row."""
    for path, split in pmc_files(ctx):
        for index, item in enumerate(table_rows(path)):
            if isinstance(item, Skipped):
                yield item
                continue
            _, row = item
            native = row.get("index")
            record_id = f"pmc_vqa-{split}-{native if not is_missing(native) else index}"
            yield Candidate(record_id, partial(_build, ctx, row, record_id, split), "en", split)


def pmc_options(row: dict) -> dict[str, str]:
    """The choices as ``{"A": text, ...}``, prefixes stripped, empty ones dropped."""
    options = {}
    for letter in LETTERS:
        raw = row.get(f"Choice {letter}")
        if not is_missing(raw):
            options[letter] = strip_choice(str(raw))
    if len(options) < 2:
        raise SkipRecord(f"only {len(options)} non-empty choice(s)")
    return options


def pmc_answer(row: dict, options: dict[str, str]) -> str:
    """The gold option letter (see the module docstring for the order of evidence)."""
    label = text_field(row, "Answer_label", required=False)
    if label and label.upper() in options:
        return label.upper()
    answer = text_field(row, "Answer", "Answer_label")
    if answer.upper() in options:
        return answer.upper()
    prefix = _PREFIX_RE.match(answer)
    if prefix and prefix.group(1).upper() in options:
        return prefix.group(1).upper()
    try:
        return letter_for(strip_choice(answer), options)
    except SkipRecord:
        raise SkipRecord(f"answer {answer!r} is neither a letter nor one of the choices") from None


def _build(ctx: ReadContext, row: dict, record_id: str, split: str) -> Record:
    options = pmc_options(row)
    answer = pmc_answer(row, options)
    choices = {f"Choice {letter}" for letter in LETTERS}
    return qa_record(
        record_id=record_id,
        dataset="pmc_vqa",
        split=split,
        lang="en",
        images=[ctx.image(text_field(row, "Figure_path"), subdirs=IMAGE_DIRS)],
        question=text_field(row, "Question"),
        answer=answer,
        options=options,
        answer_type="closed",
        meta={k: v for k, v in row.items() if k not in choices and k != "Question"},
    )

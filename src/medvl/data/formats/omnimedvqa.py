"""OmniMedVQA (``foreverbeliever/OmniMedVQA``): ``QA_information/<access>/*.json`` + ``Images/``.

Each JSON file is a list of ``{"question_id", "dataset", "question_type", "question",
"gt_answer", "image_path": "Images/<dataset>/...", "option_A".."option_D", "modality_type"}``.
``gt_answer`` holds the option text, mapped here to its letter (a record whose answer matches no
option is skipped). One file (``Chest CT Scan.json``) spells ``modality_type`` as ``modality``;
both are accepted and ``meta["modality_type"]`` is always set. The input is the root folder
holding ``QA_information`` and ``Images`` (or one JSON file inside it); image paths resolve
against that root. OmniMedVQA is an evaluation-only benchmark: every record is split ``test``.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from medvl.data.formats.base import (
    Candidate,
    ReadContext,
    Skipped,
    is_missing,
    letter_for,
    qa_record,
    text_field,
)
from medvl.data.formats.sources import object_rows
from medvl.data.record import Record
from medvl.errors import MedvlError


def omnimedvqa_root(input_path: Path) -> Path:
    """The folder holding ``Images/``: the input or its nearest ancestor with one."""
    start = input_path if input_path.is_dir() else input_path.parent
    for folder in (start, *start.parents):
        if (folder / "Images").is_dir():
            return folder
    return start


def qa_files(input_path: Path) -> list[Path]:
    """The QA JSON files: the input itself, or every ``*.json`` under its ``QA_information``."""
    if input_path.is_file():
        return [input_path]
    base = input_path / "QA_information"
    files = sorted((base if base.is_dir() else input_path).rglob("*.json"))
    if not files:
        raise MedvlError(
            f"{input_path}: no QA_information/*/*.json here; pass the OmniMedVQA root folder "
            "(holding QA_information/ and Images/) or one of its JSON files"
        )
    return files


def read_omnimedvqa(ctx: ReadContext) -> Iterator[Candidate | Skipped]:
    """One candidate per OmniMedVQA question, over every QA file."""
    split = "test"  # the whole benchmark is a test set; --split only filters
    for path in qa_files(ctx.input):
        access = path.parent.name if path.parent.parent.name == "QA_information" else None
        for item in object_rows(path):
            if isinstance(item, Skipped):
                yield item
                continue
            index, _, row = item
            native = row.get("question_id")
            record_id = f"omnimedvqa-{native if not is_missing(native) else f'{path.stem}-{index}'}"
            build = partial(_build, ctx, row, record_id, split, access)
            yield Candidate(record_id, build, "en", split)


def omnimedvqa_options(row: dict) -> dict[str, str]:
    """``option_A``.. as ``{"A": text}``, skipping empty options."""
    options = {}
    for code in range(ord("A"), ord("Z") + 1):
        value = row.get(f"option_{chr(code)}")
        if not is_missing(value):
            options[chr(code)] = str(value).strip()
    return options


def _build(ctx: ReadContext, row: dict, record_id: str, split: str, access: str | None) -> Record:
    options = omnimedvqa_options(row)
    answer_text = text_field(row, "gt_answer")
    answer = letter_for(answer_text, options)
    meta = {k: v for k, v in row.items() if k != "question" and not k.startswith("option_")}
    meta.setdefault("modality_type", row.get("modality"))
    if access:
        meta["access"] = access
    return qa_record(
        record_id=record_id,
        dataset="omnimedvqa",
        split=split,
        lang="en",
        images=[ctx.image(text_field(row, "image_path"))],
        question=text_field(row, "question"),
        answer=answer,
        options=options,
        answer_type="closed",
        question_type=text_field(row, "question_type", required=False),
        meta=meta,
    )

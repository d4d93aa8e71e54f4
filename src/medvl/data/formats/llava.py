"""LLaVA / 2U1 conversation JSON: LLaVA-Med alignment & instruct files, Qilin / ChiMed-VL files.

Layout: a JSON list (or JSON lines) of ``{"id", "image": str | [str], "conversations":
[{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "..."}, ...]}``. Image
paths resolve against ``--image-root`` (2U1's ``--image_folder``; default: the file's folder)
unless they already exist. LLaVA-Med's evaluation files add ``answer_type`` (CLOSED/OPEN).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from medvl.data.formats.base import (
    Candidate,
    ReadContext,
    Skipped,
    SkipRecord,
    guess_lang,
    split_label,
)
from medvl.data.formats.chat import chat_record, image_list
from medvl.data.formats.sources import object_rows, require_file
from medvl.data.record import Message, Record

ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
_USED = ("id", "image", "images", "conversations", "system")


def dataset_name(ctx: ReadContext, path: Path) -> str:
    """``--dataset`` if given, else the file name as an identifier (``llava_med_instruct_60k``)."""
    given = ctx.option("dataset")
    if given:
        return str(given)
    return re.sub(r"[^a-z0-9]+", "_", path.stem.lower()).strip("_") or "dataset"


def read_llava(ctx: ReadContext) -> Iterator[Candidate | Skipped]:
    """One candidate per conversation of a LLaVA-style file."""
    path = require_file(ctx.input, "a LLaVA-style .json or .jsonl file")
    dataset = dataset_name(ctx, path)
    split = split_label(ctx, path, "train")
    for item in object_rows(path):
        if isinstance(item, Skipped):
            yield item
            continue
        index, _, row = item
        record_id = str(row["id"]) if row.get("id") not in (None, "") else f"{dataset}-{index}"
        lang = row.get("lang") if isinstance(row.get("lang"), str) else _turns_lang(row)
        build = partial(_build, ctx, row, record_id, dataset, split)
        yield Candidate(record_id, build, lang, split)


def _turns_lang(row: dict[str, Any]) -> str:
    turns = row.get("conversations")
    texts = (
        [t.get("value") for t in turns if isinstance(t, dict)] if isinstance(turns, list) else []
    )
    return guess_lang(*texts)


def _build(ctx: ReadContext, row: dict, record_id: str, dataset: str, split: str) -> Record:
    if row.get("video"):
        raise SkipRecord("video records are not supported")
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise SkipRecord("'conversations' must be a non-empty list of {from, value} turns")
    messages = [_turn(turn, i) for i, turn in enumerate(turns)]
    system = row.get("system")
    if isinstance(system, str) and system.strip() and messages[0].role != "system":
        messages.insert(0, Message("system", system.strip()))
    images = [ctx.image(p) for p in image_list(row.get("image", row.get("images")))]
    return chat_record(
        record_id=record_id,
        dataset=dataset,
        split=split,
        images=images,
        messages=messages,
        row=row,
        meta_skip=_USED,
    )


def _turn(turn: Any, index: int) -> Message:
    if not isinstance(turn, dict):
        raise SkipRecord(f"conversations[{index}] is not an object")
    speaker = turn.get("from", turn.get("role"))
    text = turn.get("value", turn.get("content"))
    if speaker not in ROLES:
        raise SkipRecord(f"conversations[{index}].from is {speaker!r}; expected human or gpt")
    if not isinstance(text, str):
        raise SkipRecord(f"conversations[{index}].value must be text, got {text!r}")
    return Message(ROLES[speaker], text)

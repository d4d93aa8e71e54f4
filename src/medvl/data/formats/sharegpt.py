"""LLaMA-Factory ``sharegpt`` files (e.g. XrayQwen2VL's ``openai-zh-llamafactory-qwen2vl-prompt``).

Layout: a JSON list (or JSON lines) of ``{"conversations": [{"from": "human", "value":
"<image>..."}, {"from": "gpt", "value": "..."}], "images": [...], "system": "..."}``. The column
names and role tags are those of LLaMA-Factory's ``dataset_info.json`` (``columns`` and ``tags``):
pass them as options (``messages=``, ``images=``, ``system=``, ``role_tag=``, ``content_tag=``,
``user_tag=``, ``assistant_tag=``, ``system_tag=``), or point ``dataset_info=`` at the file and
``dataset_name=`` at the entry. Unset, each row is sniffed: ``conversations`` or ``messages``,
``from/value/human/gpt`` or ``role/content/user/assistant`` (the OpenAI style).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
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
from medvl.data.formats.llava import dataset_name
from medvl.data.formats.sources import object_rows, require_file
from medvl.data.record import Message, Record
from medvl.errors import ConfigError

TAG_OPTIONS = ("role_tag", "content_tag", "user_tag", "assistant_tag", "system_tag")
COLUMN_OPTIONS = ("messages", "images", "system")
SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "system_tag": "system",
}
OPENAI_TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "system_tag": "system",
}


@dataclass(frozen=True)
class Layout:
    """Column names and role tags; ``None`` means "sniff it from the row"."""

    messages: str | None
    images: str
    system: str
    tags: dict[str, str]

    def turns_of(self, row: dict[str, Any]) -> tuple[str, Any]:
        """The messages column used for this row, and its value."""
        name = self.messages or ("conversations" if "conversations" in row else "messages")
        return name, row.get(name)

    def tags_for(self, turns: list[Any]) -> dict[str, str]:
        """The given tags, completed from the first turn's keys."""
        first = turns[0] if turns and isinstance(turns[0], dict) else {}
        default = OPENAI_TAGS if "role" in first and "from" not in first else SHAREGPT_TAGS
        return {**default, **self.tags}


def layout_from(ctx: ReadContext) -> Layout:
    """The layout from the options, over the ``dataset_info.json`` entry if one is named."""
    entry = _dataset_info_entry(ctx)
    given = {k: v for k, v in ctx.options.items() if v is not None}
    columns = {**entry.get("columns", {}), **{k: given[k] for k in COLUMN_OPTIONS if k in given}}
    tags = {**entry.get("tags", {}), **{k: given[k] for k in TAG_OPTIONS if k in given}}
    return Layout(
        messages=columns.get("messages"),
        images=columns.get("images") or "images",
        system=columns.get("system") or "system",
        tags={k: v for k, v in tags.items() if k in TAG_OPTIONS and v},
    )


def _dataset_info_entry(ctx: ReadContext) -> dict[str, Any]:
    info_path = ctx.option("dataset_info")
    if not info_path:
        return {}
    try:
        info = json.loads(Path(info_path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"dataset_info {info_path}: cannot be read as JSON ({exc})") from None
    name = ctx.option("dataset_name")
    if name is None:
        matches = [k for k, v in info.items() if v.get("file_name") == ctx.input.name]
        name = matches[0] if len(matches) == 1 else None
    if name not in info:
        raise ConfigError(
            f"dataset_info {info_path}: pass dataset_name= one of {', '.join(sorted(info))}"
        )
    return info[name]


def read_sharegpt(ctx: ReadContext) -> Iterator[Candidate | Skipped]:
    """One candidate per conversation of a LLaMA-Factory sharegpt file."""
    path = require_file(ctx.input, "a sharegpt .json or .jsonl file")
    layout = layout_from(ctx)
    dataset = dataset_name(ctx, path)
    split = split_label(ctx, path, "train")
    for item in object_rows(path):
        if isinstance(item, Skipped):
            yield item
            continue
        index, _, row = item
        record_id = str(row["id"]) if row.get("id") not in (None, "") else f"{dataset}-{index}"
        lang = row.get("lang") if isinstance(row.get("lang"), str) else _lang(row, layout)
        build = partial(_build, ctx, layout, row, record_id, dataset, split)
        yield Candidate(record_id, build, lang, split)


def _lang(row: dict[str, Any], layout: Layout) -> str:
    _, turns = layout.turns_of(row)
    if not isinstance(turns, list):
        return "en"
    return guess_lang(*(str(t) for t in turns if isinstance(t, dict)))


def _build(
    ctx: ReadContext, layout: Layout, row: dict, record_id: str, dataset: str, split: str
) -> Record:
    column, turns = layout.turns_of(row)
    if not isinstance(turns, list) or not turns:
        raise SkipRecord(f"'{column}' must be a non-empty list of turns")
    tags = layout.tags_for(turns)
    messages = [_turn(turn, i, tags) for i, turn in enumerate(turns)]
    system = row.get(layout.system)
    if isinstance(system, str) and system.strip() and messages[0].role != "system":
        messages.insert(0, Message("system", system.strip()))
    images = [ctx.image(p) for p in image_list(row.get(layout.images))]
    return chat_record(
        record_id=record_id,
        dataset=dataset,
        split=split,
        images=images,
        messages=messages,
        row=row,
        meta_skip=("id", column, layout.images, layout.system),
    )


def _turn(turn: Any, index: int, tags: dict[str, str]) -> Message:
    if not isinstance(turn, dict):
        raise SkipRecord(f"turn {index} is not an object")
    roles = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant"}
    roles[tags["system_tag"]] = "system"
    speaker, text = turn.get(tags["role_tag"]), turn.get(tags["content_tag"])
    if speaker not in roles:
        raise SkipRecord(
            f"turn {index} has {tags['role_tag']}={speaker!r}; expected one of {sorted(roles)} "
            "(tool turns are not supported; set role_tag/user_tag/... if the tags differ)"
        )
    if not isinstance(text, str):
        raise SkipRecord(f"turn {index} {tags['content_tag']} must be text, got {text!r}")
    return Message(roles[speaker], text)

"""Turning conversation-style sources (LLaVA, ShareGPT) into canonical messages.

Publishers put ``<image>`` anywhere: ``"<image>\\nQ"``, ``"Q\\n<image>"``, ``"<image>Q"``. The
canonical form puts each image's placeholder at the start of its user turn, one per line,
``"<image>\\n<image>\\nQ"``; placeholders interleaved with text (``"Compare <image> with <image>"``)
stay where they are. A record with images but no placeholder gets one per image prepended to its
first user turn, which is what LLaVA-style trainers assume.
"""

from __future__ import annotations

import re
from typing import Any

from medvl.data.formats.base import SkipRecord, closed_or_open, guess_lang, json_safe
from medvl.data.record import IMAGE_PLACEHOLDER, Message, Record

_SPLIT_RE = re.compile(r"\n?" + re.escape(IMAGE_PLACEHOLDER) + r"\n?")


def normalise_placeholders(text: str) -> str:
    """Move leading/trailing ``<image>`` placeholders to the front, one per line."""
    count = text.count(IMAGE_PLACEHOLDER)
    if count == 0:
        return text.strip()
    parts = _SPLIT_RE.split(text)
    if any(part.strip() for part in parts[1:-1]):  # interleaved with text: keep positions
        return text.strip()
    body = "\n".join(p.strip() for p in (parts[0], parts[-1]) if p.strip())
    return (
        (IMAGE_PLACEHOLDER + "\n") * count + body
        if body
        else "\n".join([IMAGE_PLACEHOLDER] * count)
    )


def place_images(messages: list[Message], n_images: int) -> list[Message]:
    """Normalise placeholders in user turns and check there is exactly one per image."""
    for i, message in enumerate(messages):
        if message.role != "user" and IMAGE_PLACEHOLDER in message.content:
            raise SkipRecord(f"turn {i} ({message.role}) holds an <image> placeholder")
    messages = [
        Message(m.role, normalise_placeholders(m.content) if m.role == "user" else m.content)
        for m in messages
    ]
    count = sum(m.content.count(IMAGE_PLACEHOLDER) for m in messages)
    if count == 0 and n_images:
        first = next((i for i, m in enumerate(messages) if m.role == "user"), None)
        if first is None:
            raise SkipRecord("no user turn")
        prefix = (IMAGE_PLACEHOLDER + "\n") * n_images
        messages[first] = Message("user", prefix + messages[first].content)
    elif count != n_images:
        raise SkipRecord(f"{n_images} image(s) but {count} <image> placeholder(s)")
    return messages


def chat_record(
    *,
    record_id: str,
    dataset: str,
    split: str,
    images: list[str],
    messages: list[Message],
    row: dict[str, Any],
    meta_skip: tuple[str, ...],
) -> Record:
    """A canonical record from a conversation; the row's remaining fields go to ``meta``.

    ``answer`` is the assistant reply when there is exactly one (a single question); multi-turn
    conversations are training data and carry no single gold answer. The row's own ``answer``,
    ``answer_type``, ``question_type``, ``options`` and ``lang`` are used when present (LLaVA-Med's
    evaluation files and medvl's own writers carry them).
    """
    messages = place_images(messages, len(images))
    if not any(m.role == "user" for m in messages):
        raise SkipRecord("no user turn")
    replies = [m.content for m in messages if m.role == "assistant"]
    answer = row.get("answer")
    answer = str(answer) if answer is not None else (replies[0] if len(replies) == 1 else None)
    options = row.get("options") if isinstance(row.get("options"), dict) else None
    lang = row.get("lang") if isinstance(row.get("lang"), str) else None
    question_type = row.get("question_type")
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    used = {"answer", "options", "lang", "question_type", "answer_type", "meta", *meta_skip}
    meta = {**meta, **{k: json_safe(v) for k, v in row.items() if k not in used}}
    answer_type = closed_or_open(row.get("answer_type"))
    if row.get("answer_type") not in (None, answer_type):  # keep the source's own spelling
        meta.setdefault("answer_type", row["answer_type"])
    return Record(
        id=record_id,
        dataset=dataset,
        split=split,
        lang=lang or guess_lang(*(m.content for m in messages)),
        images=images,
        messages=messages,
        answer=answer,
        options=options,
        answer_type=answer_type,
        question_type=str(question_type) if question_type not in (None, "") else None,
        meta=meta,
    )


def image_list(value: Any) -> list[Any]:
    """A record's image field as a list: ``"a.png"`` -> ``["a.png"]``, None -> ``[]``."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    return [value]

"""Writing canonical records out to the formats other trainers read.

* :func:`to_llava`: LLaVA / 2U1 JSON (``id``, ``image``, ``conversations``). Image paths are
  relative to the output file's folder (pass that folder as 2U1's ``--image_folder``) or absolute.
  The canonical extras (``answer``, ``options``, ``answer_type``, ``question_type``, ``lang``,
  ``meta``, and a ``system`` turn) ride along as top-level keys, which 2U1 ignores and the
  ``llava`` reader reads back, so canonical -> LLaVA -> canonical keeps them.
* :func:`to_sharegpt`: LLaMA-Factory sharegpt JSON with OpenAI-style tags, plus the
  ``dataset_info.json`` entry that registers it.
* :func:`to_trl`: a :class:`datasets.Dataset` in TRL's multimodal conversational form;
  :func:`to_trl_jsonl` writes it as JSON lines that ``load_dataset("json")`` reads back.
* :func:`merge_dataset_info`: add an entry to a LLaMA-Factory ``dataset_info.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets

from medvl.data.paths import rebased_image_paths
from medvl.data.record import IMAGE_PLACEHOLDER, Record
from medvl.errors import ConfigError
from medvl.fileio import atomic_write_text

LLAVA_ROLES = {"user": "human", "assistant": "gpt"}
_EXTRAS = ("answer", "options", "answer_type", "question_type", "lang")


def llava_row(record: Record, base_dir: Path, out_dir: Path) -> dict[str, Any]:
    """One LLaVA-style object for ``record`` (images re-based from ``base_dir`` to ``out_dir``)."""
    row: dict[str, Any] = {"id": record.id}
    images = rebased_image_paths(record, base_dir, out_dir)
    if images:
        row["image"] = images[0] if len(images) == 1 else images
    turns = record.messages
    if turns and turns[0].role == "system":
        row["system"], turns = turns[0].content, turns[1:]
    row["conversations"] = [{"from": LLAVA_ROLES[m.role], "value": m.content} for m in turns]
    row.update({k: getattr(record, k) for k in _EXTRAS if getattr(record, k) is not None})
    if record.meta:
        row["meta"] = record.meta
    return row


def _write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, ensure_ascii=False, indent=1) + "\n")


def to_llava(records: Iterable[Record], out_json: str | Path, base_dir: str | Path) -> int:
    """Write ``records`` (whose image paths are relative to ``base_dir``) as LLaVA JSON.

    Returns the number of records written.
    """
    out_json = Path(out_json)
    rows = [llava_row(r, Path(base_dir), out_json.parent) for r in records]
    _write_json(out_json, rows)
    return len(rows)


def sharegpt_info(out_json: Path) -> dict[str, Any]:
    """The LLaMA-Factory ``dataset_info.json`` entry for a file written by :func:`to_sharegpt`."""
    return {
        out_json.stem: {
            "file_name": out_json.name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
    }


def to_sharegpt(
    records: Iterable[Record], out_json: str | Path, base_dir: str | Path
) -> dict[str, Any]:
    """Write ``records`` as LLaMA-Factory sharegpt JSON; return its ``dataset_info.json`` entry.

    The entry is also written beside the data as ``<name>.dataset_info.json``: merge it into
    the ``dataset_info.json`` of LLaMA-Factory's ``dataset_dir`` (the folder holding the data,
    against which the relative image paths resolve). Only ``id``, ``messages`` and ``images``
    are written, so that LLaMA-Factory's Arrow loader never meets mixed-type ``meta`` columns.
    """
    out_json = Path(out_json)
    rows = [
        {
            "id": r.id,
            "messages": [m.to_dict() for m in r.messages],
            "images": rebased_image_paths(r, base_dir, out_json.parent),
        }
        for r in records
    ]
    _write_json(out_json, rows)
    info = sharegpt_info(out_json)
    _write_json(out_json.with_suffix(".dataset_info.json"), info)
    return info


def trl_messages(record: Record) -> list[dict[str, Any]]:
    """TRL's content-list messages: each ``<image>`` becomes ``{"type": "image"}`` in place."""
    messages = []
    for message in record.messages:
        content: list[dict[str, Any]] = []
        for i, piece in enumerate(message.content.split(IMAGE_PLACEHOLDER)):
            if i:
                content.append({"type": "image", "text": None})
            piece = piece.strip("\n") if message.role == "user" else piece
            if piece:
                content.append({"type": "text", "text": piece})
        messages.append({"role": message.role, "content": content})
    return messages


def trl_features(decode_images: bool) -> datasets.Features:
    """The column types of :func:`to_trl`'s dataset."""
    text = datasets.Value("string")
    part = {"type": text, "text": text}
    image = datasets.Image() if decode_images else text
    columns = ("id", "dataset", "split", "lang", "answer", "options", "answer_type")
    return datasets.Features(
        {
            **{name: text for name in columns},
            "question_type": text,
            "messages": datasets.List({"role": text, "content": datasets.List(part)}),
            "images": datasets.List(image),
        }
    )


def to_trl(
    records: Iterable[Record], base_dir: str | Path, *, decode_images: bool = True
) -> datasets.Dataset:
    """A :class:`datasets.Dataset` for TRL's SFT/GRPO trainers.

    Columns: ``messages`` in TRL's multimodal form (``[{"type": "image"}, {"type": "text",
    "text": ...}]``), ``images`` (absolute paths, decoded to PIL images on access unless
    ``decode_images=False``), and ``id``, ``dataset``, ``split``, ``lang``, ``answer``,
    ``answer_type``, ``question_type`` and ``options`` (a JSON object as text, or None) for
    reward functions and metrics.
    """
    base = Path(base_dir)
    rows = [
        {
            "id": r.id,
            "dataset": r.dataset,
            "split": r.split,
            "lang": r.lang,
            "answer": r.answer,
            "options": json.dumps(r.options, ensure_ascii=False) if r.options else None,
            "answer_type": r.answer_type,
            "question_type": r.question_type,
            "messages": trl_messages(r),
            "images": [str(p.absolute()) for p in r.image_paths(base)],
        }
        for r in records
    ]
    return datasets.Dataset.from_list(rows, features=trl_features(decode_images))


def to_trl_jsonl(records: Iterable[Record], out_jsonl: str | Path, base_dir: str | Path) -> int:
    """Write :func:`to_trl`'s rows as JSON lines; return how many.

    ``datasets.load_dataset("json", data_files=out_jsonl)`` gives the columns TRL's
    ``SFTTrainer`` reads for vision-language models: ``messages`` (content lists with
    ``{"type": "image"}`` in place) and ``images``, as absolute paths that the processor's chat
    template loads (cast the column to ``datasets.Image()`` to get PIL images instead).
    """
    dataset = to_trl(records, base_dir, decode_images=False)
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in dataset]
    atomic_write_text(out_jsonl, "".join(lines))
    return len(lines)


def merge_dataset_info(info_json: str | Path, entry: dict[str, Any]) -> Path:
    """Add ``entry`` (``{name: {...}}``) to LLaMA-Factory's ``dataset_info.json`` at
    ``info_json``, keeping its other datasets (an entry of the same name is replaced)."""
    path = Path(info_json)
    existing: Any = {}
    if path.is_file():
        try:
            existing = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{path}: not valid JSON ({exc}); fix or move it, then export again"
            ) from None
        if not isinstance(existing, dict):
            raise ConfigError(f"{path}: expected a JSON object of datasets; fix or move it")
    _write_json(path, {**existing, **entry})
    return path

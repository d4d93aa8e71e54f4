"""IU-Xray / OpenI chest X-ray reports, as report-generation records.

Accepted layouts:

* R2Gen's ``annotation.json`` (or its ``iu_xray/`` folder): ``{"train": [{"id", "report",
  "image_path": ["CXR2384_IM-0942/0.png", ...], "split"}], "val": [...], "test": [...]}`` with
  the images under ``images/``; each list's records get its split (``val`` -> validation), and
  ``--split`` keeps one of them.
* XrayQwen2VL's ``openi-en.json`` / ``openi-zh.json``: ``{"annotations": [{"image_id": "162_1",
  "caption": <report>}]}``, the image being ``<image_id>.png``.
* A simple JSON list, JSON lines or CSV with an image column (``image``, ``images``,
  ``image_path``, ``image_id``) and a report column (``report``, ``findings``, ``caption``...).

Each record asks, in the report's language (Chinese reports -> ``zh``), for the findings of the
X-ray; the assistant turn and ``answer`` are the report; ``answer_type`` is ``open`` and
``question_type`` ``report``. ``prompt=`` replaces the question.
"""

from __future__ import annotations

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
    is_missing,
    normalise_split,
    qa_record,
    split_label,
    text_field,
)
from medvl.data.formats.chat import image_list
from medvl.data.formats.sources import any_rows, folder_file, load_document
from medvl.data.record import Record

PROMPTS = {
    "en": "Describe the findings of this chest X-ray as a radiology report.",
    "zh": "请根据这张胸部X光影像写出影像所见报告。",
}
IMAGE_FIELDS = ("image_path", "images", "image", "image_id", "img_path")
REPORT_FIELDS = ("report", "findings", "caption", "text", "answer")
IMAGE_DIRS = ("images", "images2", "image")
_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_iu_xray(ctx: ReadContext) -> Iterator[Candidate | Skipped]:
    """One candidate per report (an R2Gen annotation, an OpenI annotation list or a table)."""
    what = "the R2Gen iu_xray folder, annotation.json, openi-*.json, or a .jsonl/.csv of reports"
    path = folder_file(ctx.input, ("annotation.json",), what)
    document = load_document(path) if path.suffix.lower() == ".json" else None
    if isinstance(document, dict) and "annotations" in document:
        rows = _keyed(path, document["annotations"])
        yield from _candidates(ctx, rows, split_label(ctx, path, "train"))
    elif isinstance(document, dict):
        for split_key, rows in document.items():
            split = normalise_split(split_key)
            yield from _candidates(ctx, _keyed(path, rows, split_key), split)
    else:
        yield from _candidates(ctx, any_rows(path), split_label(ctx, path, "train"))


def _keyed(path: Path, rows: Any, group: str = "") -> Iterator[tuple[str, Any] | Skipped]:
    if not isinstance(rows, list):
        yield Skipped(f"{path.name}[{group}]", "expected a list of report records")
        return
    for i, row in enumerate(rows):
        yield (f"{path.name}[{group}][{i}]" if group else f"{path.name}[{i}]"), row


def _candidates(ctx: ReadContext, rows: Iterator, split: str) -> Iterator[Candidate | Skipped]:
    dataset = str(ctx.option("dataset") or "iu_xray")
    for index, item in enumerate(rows):
        if isinstance(item, Skipped):
            yield item
            continue
        key, row = item
        if not isinstance(row, dict):
            yield Skipped(key, "not a JSON object")
            continue
        native = row.get("id", row.get("image_id"))
        suffix = str(native) if not is_missing(native) else f"{split}-{index:05d}"
        record_id = f"{dataset}-{suffix}"
        report = text_field(row, *REPORT_FIELDS, required=False)
        build = partial(_build, ctx, row, record_id, dataset, split)
        yield Candidate(record_id, build, guess_lang(report), split)


def _images(ctx: ReadContext, row: dict) -> list[str]:
    raw = next((row[f] for f in IMAGE_FIELDS if not is_missing(row.get(f))), None)
    if raw is None:
        raise SkipRecord(f"no image field ({', '.join(IMAGE_FIELDS)})")
    names = image_list(raw)
    if isinstance(raw, str) and raw.strip().startswith("["):  # a list saved into a CSV cell
        names = [n.strip(" '\"") for n in raw.strip("[] ").split(",") if n.strip(" '\"")]
    return [_one_image(ctx, str(name)) for name in names]


def _one_image(ctx: ReadContext, name: str) -> str:
    if Path(name).suffix.lower() in _SUFFIXES:
        return ctx.image(name, subdirs=IMAGE_DIRS)
    for suffix in _SUFFIXES:  # OpenI ids such as "162_1" name "162_1.png"
        try:
            return ctx.image(name + suffix, subdirs=IMAGE_DIRS)
        except SkipRecord:
            continue
    raise SkipRecord(f"image not found: {name!r} (tried {', '.join(_SUFFIXES)} under the root)")


def _build(ctx: ReadContext, row: dict, record_id: str, dataset: str, split: str) -> Record:
    report = text_field(row, *REPORT_FIELDS)
    lang = guess_lang(report)
    prompt = ctx.option("prompt") or PROMPTS[lang]
    return qa_record(
        record_id=record_id,
        dataset=dataset,
        split=split,
        lang=lang,
        images=_images(ctx, row),
        question=prompt,
        answer=report,
        answer_type="open",
        question_type="report",
        meta={k: v for k, v in row.items() if k not in REPORT_FIELDS},
    )

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
* The Kaggle OpenI release (``raddar/chest-xrays-indiana-university``): ``indiana_reports.csv``
  (``uid``, ``MeSH``, ``Problems``, ``image``, ``indication``, ``comparison``, ``findings``,
  ``impression``) and ``indiana_projections.csv`` (``uid``, ``filename``, ``projection``:
  ``Frontal`` or ``Lateral``), images under ``images/images_normalized/``; pass the folder or
  either CSV. The report is the findings then the impression.

**Views.** A report with both a frontal and a lateral image becomes one two-image record
(``<image>`` frontal, then ``<image>`` lateral), the way R2Gen and most IU-Xray report
generation work reads a study; a report with a single image stays a single-image record.
R2Gen's ``image_path`` lists are kept as published (they already hold both views). For the
Kaggle layout, ``views=`` chooses: ``both`` (default: the first frontal and the first lateral
image), ``frontal`` (the first frontal image only; reports without one are skipped) or ``all``
(every image, frontal ones first); ``meta.views`` names each image's view.

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
from medvl.data.formats.sources import any_rows, folder_file, load_document, table_rows
from medvl.data.record import Record
from medvl.errors import MedvlError

PROMPTS = {
    "en": "Describe the findings of this chest X-ray as a radiology report.",
    "zh": "请根据这张胸部X光影像写出影像所见报告。",
}
IMAGE_FIELDS = ("image_path", "images", "image", "image_id", "img_path")
REPORT_FIELDS = ("report", "findings", "caption", "text", "answer")
IMAGE_DIRS = ("images", "images2", "image")
_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_iu_xray(ctx: ReadContext) -> Iterator[Candidate | Skipped]:
    """One candidate per report (an R2Gen annotation, an OpenI annotation list, the Kaggle
    reports + projections tables, or a table)."""
    kaggle = _kaggle_tables(ctx.input)
    if kaggle is not None:
        yield from _kaggle_candidates(ctx, *kaggle)
        return
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


# ---------------------------------------------------------------- Kaggle OpenI: two tables

KAGGLE_REPORTS, KAGGLE_PROJECTIONS = "indiana_reports.csv", "indiana_projections.csv"
VIEW_CHOICES = ("both", "frontal", "all")
_KAGGLE_IMAGE_DIRS = ("images/images_normalized", "images_normalized", *IMAGE_DIRS)


def _kaggle_tables(path: Path) -> tuple[Path, Path] | None:
    """(reports, projections) when ``path`` is the Kaggle folder or one of its two tables."""
    folder = path if path.is_dir() else path.parent
    if path.is_file() and path.name not in (KAGGLE_REPORTS, KAGGLE_PROJECTIONS):
        return None
    reports, projections = folder / KAGGLE_REPORTS, folder / KAGGLE_PROJECTIONS
    if not reports.is_file():
        return None
    if not projections.is_file():
        raise MedvlError(f"{folder}: {KAGGLE_REPORTS} needs {KAGGLE_PROJECTIONS} beside it")
    return reports, projections


def _kaggle_candidates(
    ctx: ReadContext, reports: Path, projections: Path
) -> Iterator[Candidate | Skipped]:
    views = str(ctx.option("views") or "both")
    if views not in VIEW_CHOICES:
        raise MedvlError(f"option views={views!r}: use one of {', '.join(VIEW_CHOICES)}")
    by_uid: dict[str, list[tuple[str, str]]] = {}
    for item in table_rows(projections):
        if isinstance(item, Skipped):
            yield item
            continue
        row = item[1]
        uid, name = str(row.get("uid", "")).strip(), str(row.get("filename", "")).strip()
        if uid and name:
            by_uid.setdefault(uid, []).append((name, str(row.get("projection", "")).strip()))
    dataset = str(ctx.option("dataset") or "iu_xray")
    split = split_label(ctx, reports, "train")
    for item in table_rows(reports):
        if isinstance(item, Skipped):
            yield item
            continue
        key, row = item
        uid = str(row.get("uid", "")).strip() or key
        parts = [text_field(row, f, required=False) for f in ("findings", "impression")]
        report = " ".join(p for p in parts if p)
        row = {**row, "report": report, "image_views": by_uid.get(uid, [])}
        build = partial(_build_kaggle, ctx, row, f"{dataset}-{uid}", dataset, split, views)
        yield Candidate(f"{dataset}-{uid}", build, guess_lang(report), split)


def pick_views(images: list[tuple[str, str]], views: str) -> list[tuple[str, str]]:
    """``(file, projection)`` pairs kept for one report under ``views`` (see the module
    docstring); an empty list when nothing fits."""
    frontal = [i for i in images if i[1].lower() == "frontal"]
    lateral = [i for i in images if i[1].lower() == "lateral"]
    other = [i for i in images if i not in frontal and i not in lateral]
    if views == "frontal":
        return frontal[:1]
    if views == "all":
        return frontal + lateral + other
    picked = frontal[:1] + lateral[:1]
    return picked or images[:1]


def _build_kaggle(
    ctx: ReadContext, row: dict, record_id: str, dataset: str, split: str, views: str
) -> Record:
    report = text_field(row, "report")
    images = row["image_views"]
    if not images:
        raise SkipRecord(f"no image of uid {row.get('uid')!r} in {KAGGLE_PROJECTIONS}")
    chosen = pick_views(images, views)
    if not chosen:
        raise SkipRecord(f"no frontal image (views={views}); its views: {[v for _, v in images]}")
    lang = guess_lang(report)
    keep = ("uid", "MeSH", "Problems", "image", "indication", "comparison")
    return qa_record(
        record_id=record_id,
        dataset=dataset,
        split=split,
        lang=lang,
        images=[ctx.image(name, subdirs=_KAGGLE_IMAGE_DIRS) for name, _ in chosen],
        question=ctx.option("prompt") or PROMPTS[lang],
        answer=report,
        answer_type="open",
        question_type="report",
        meta={
            **{k: row[k] for k in keep if not is_missing(row.get(k))},
            "views": [view.lower() or "unknown" for _, view in chosen],
        },
    )

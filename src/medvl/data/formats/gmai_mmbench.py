"""GMAI-MMBench as VLMEvalKit ships it: a TSV with the images inline as base64.

Columns: ``index, question, A, B, C, D, E, answer, category, image, modality, clinical VQA task,
department, perceptual granularity`` (VLMEvalKit sometimes lowercases them). Options run A-E and
E may be empty, NaN or ``None`` (dropped). The TEST parts (``GMAI_mm_bench_TEST_part_k.tsv``)
have no answers: such records get ``answer=None`` and no assistant turn. As in VLMEvalKit, an
``image`` cell that holds another row's index (instead of base64) reuses that row's image.

Images are decoded into ``image_out_dir`` (default ``<output folder>/images``) as
``gmai_<split>_<index>.png`` (or ``.jpg`` when the bytes are JPEG).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Iterator
from functools import partial

from PIL import Image, UnidentifiedImageError

from medvl.data.formats.base import (
    Candidate,
    ReadContext,
    Skipped,
    SkipRecord,
    is_missing,
    output_path,
    qa_record,
    split_label,
    text_field,
)
from medvl.data.formats.sources import require_file, table_rows
from medvl.data.record import Record
from medvl.fileio import atomic_write_bytes

LETTERS = "ABCDE"
TASK_COLUMN = "clinical vqa task"
_SAFE_RE = re.compile(r"[^A-Za-z0-9_-]+")


def read_gmai_mmbench(ctx: ReadContext) -> Iterator[Candidate | Skipped]:
    """One candidate per TSV row; decoding the image happens when the record is built."""
    path = require_file(ctx.input, "a GMAI-MMBench .tsv file")
    split = split_label(ctx, path, "validation")
    written: dict[str, str] = {}  # row index -> output image path, for rows that reuse an image
    for index, item in enumerate(table_rows(path, delimiter="\t")):
        if isinstance(item, Skipped):
            yield item
            continue
        _, raw_row = item
        row = {str(k).strip(): v for k, v in raw_row.items()}
        native = row.get("index")
        native = str(native).strip() if not is_missing(native) else str(index)
        record_id = f"gmai_mmbench-{split}-{native}"
        yield Candidate(
            record_id, partial(_build, ctx, row, record_id, native, split, written), "en", split
        )


def column(row: dict, name: str) -> str | None:
    """A column's value, matching the name case-insensitively (VLMEvalKit lowercases some)."""
    for key, value in row.items():
        if key.lower() == name.lower():
            return None if is_missing(value) else str(value).strip()
    return None


def _build(
    ctx: ReadContext, row: dict, record_id: str, native: str, split: str, written: dict[str, str]
) -> Record:
    options = {k: str(row[k]).strip() for k in LETTERS if k in row and not is_missing(row[k])}
    if len(options) < 2:
        raise SkipRecord(f"only {len(options)} non-empty option(s) among A-E")
    answer = column(row, "answer")
    if answer is not None and answer.upper() not in options:
        raise SkipRecord(f"answer {answer!r} is not one of the options {sorted(options)}")
    question = text_field(row, "question")
    hint = column(row, "hint")
    image = _image(ctx, row, native, split, written)
    used = {"image", "question", "answer", "hint", *LETTERS}
    return qa_record(
        record_id=record_id,
        dataset="gmai_mmbench",
        split=split,
        lang="en",
        images=[image],
        question=f"Hint: {hint}\n{question}" if hint else question,
        answer=answer.upper() if answer else None,
        options=options,
        answer_type="closed",
        question_type=column(row, TASK_COLUMN),
        meta={k: v for k, v in row.items() if k.lower() not in used},
    )


def _image(ctx: ReadContext, row: dict, native: str, split: str, written: dict[str, str]) -> str:
    """Decode the row's base64 image to a file (or reuse/resolve one); its output path."""
    raw = column(row, "image")
    if raw is None:
        path = column(row, "image_path")
        if path is None:
            raise SkipRecord("no image (neither an 'image' nor an 'image_path' column)")
        return ctx.image(path)
    if len(raw) <= 64 and raw in written:
        return written[raw]
    data, ext = image_bytes(raw)
    dest = ctx.image_out_dir / f"gmai_{split}_{_SAFE_RE.sub('_', native)}{ext}"
    atomic_write_bytes(dest, data)
    written[native] = output_path(dest, ctx.out_dir)
    return written[native]


def image_bytes(encoded: str) -> tuple[bytes, str]:
    """Decoded image bytes and their file extension; PNG/JPEG kept as is, others made PNG."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SkipRecord("the image cell is not valid base64 (nor another row's index)") from None
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data, ".png"
    if data.startswith(b"\xff\xd8"):
        return data, ".jpg"
    try:
        with Image.open(io.BytesIO(data)) as image:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
    except (UnidentifiedImageError, OSError) as exc:
        raise SkipRecord(f"the image cell does not decode to an image ({exc})") from None
    return buffer.getvalue(), ".png"

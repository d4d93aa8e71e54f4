"""The report's gallery: records where the models disagree, and each model's most assertive errors.

Numbers say how often a model is wrong; examples say how. :func:`select_gallery` picks, over the
ids common to a benchmark's runs:

- **disagreements**: records some runs got right and others wrong, alternating between "the
  baseline right" and "the baseline wrong" so both directions show, in data order;
- **assertive errors** per run (:data:`ERROR_RULE`): medvl records no token probabilities, so a
  model's confidence is not known; instead, wrong replies that committed to an answer (a letter
  or closed answer read by a rule, or a non-empty open reply), multiple-choice and closed
  questions first, then the shortest reply first (a terse wrong answer is the least hedged).

Each example carries the question, options, gold answer, image paths (from the data file the
baseline was scored on) and per run the prediction, the answer read from it, the rule that read
it and the verdict. :func:`thumbnail` turns an image (PNG/JPEG/DICOM/NIfTI) into a small base64
JPEG for the self-contained HTML page, and :func:`filmstrip` a video entry (a volume, series or
slice list, its paths made absolute) into :data:`FILMSTRIP_FRAMES` such JPEGs, evenly spaced over
the frames the model got; the report JSON keeps paths and entries, not pixels.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medvl.errors import MedvlError

#: How the assertive errors are chosen, printed in the report as is.
ERROR_RULE = (
    "medvl records no token probabilities, so these are not the model's confidence: they are "
    "wrong replies (correct = 0) that committed to an answer - a multiple-choice letter or a "
    "closed answer read by a rule (not unparsed), or a non-empty open reply - multiple-choice "
    "and closed questions first, then the shortest reply first"
)
DISAGREEMENT_RULE = (
    "records some runs got right and others wrong, alternating 'baseline right' and "
    "'baseline wrong', in data order"
)
MAX_DISAGREEMENTS = 8
MAX_ERRORS_PER_RUN = 3
MAX_PREDICTION_CHARS = 400
THUMBNAIL_PX = 160
FILMSTRIP_FRAMES = 5
FILMSTRIP_PX = 96
_KIND_ORDER = {"mcq": 0, "closed": 1, "open": 2, "report": 3}

Rows = Mapping[str, Mapping[str, Any]]


def disagreements(
    base: str, runs: Mapping[str, Rows], common: Sequence[str], limit: int = MAX_DISAGREEMENTS
) -> list[str]:
    """Ids where the runs' 0/1 verdicts differ, alternating baseline right/wrong."""
    right, wrong = [], []
    for record_id in common:
        verdicts = {rows[record_id].get("correct") for rows in runs.values()} - {None}
        if verdicts >= {0.0, 1.0}:
            (right if runs[base][record_id].get("correct") == 1.0 else wrong).append(record_id)
    picked: list[str] = []
    for pair in zip(right, wrong, strict=False):
        picked += pair
    longer = right if len(right) > len(wrong) else wrong
    picked += longer[min(len(right), len(wrong)) :]
    return picked[:limit]


def assertive_errors(
    rows: Rows, common: Sequence[str], limit: int = MAX_ERRORS_PER_RUN
) -> list[str]:
    """Ids of one run's wrong, committed replies in :data:`ERROR_RULE` order."""
    candidates = []
    for position, record_id in enumerate(common):
        row = rows[record_id]
        text = row.get("prediction") or ""
        if row.get("correct") != 0.0 or not text.strip():
            continue
        if row.get("kind") in ("mcq", "closed") and row.get("extracted") is None:
            continue
        order = (_KIND_ORDER.get(row.get("kind"), 9), len(text), position)
        candidates.append((order, record_id))
    return [record_id for _, record_id in sorted(candidates)[:limit]]


def select_gallery(
    base: str, runs: Mapping[str, Rows], common: Sequence[str], data_path: str | None
) -> dict[str, Any]:
    """The gallery of one benchmark: ``{rules, disagreements, errors, data, problem}``;
    ``runs`` maps run name -> id -> scores row and includes the baseline ``base``."""
    split = disagreements(base, runs, common) if len(runs) > 1 else []
    errors = {name: assertive_errors(rows, common) for name, rows in runs.items()}
    wanted = set(split) | {i for ids in errors.values() for i in ids}
    records, problem = _records(data_path, wanted)
    return {
        "rules": {"disagreements": DISAGREEMENT_RULE, "errors": ERROR_RULE},
        "disagreements": [_example(i, runs, records, base) for i in split],
        "errors": {
            name: [_example(i, {name: runs[name]}, records, base) for i in ids]
            for name, ids in errors.items()
        },
        "data": data_path,
        "problem": problem,
    }


def _records(data_path: str | None, wanted: set[str]) -> tuple[dict[str, Any], str | None]:
    """The data records of ``wanted`` ids, and why there are none (None when read)."""
    if not wanted:
        return {}, None
    if not data_path or not Path(data_path).is_file():
        return {}, f"data file {data_path or '(not recorded)'} not found: no questions or images"
    from medvl.data.jsonl import read_records

    try:
        records = read_records(data_path)
    except (MedvlError, OSError) as exc:
        return {}, f"data file {data_path} unreadable ({exc}): no questions or images"
    base = Path(data_path).parent

    def absolute(path: str) -> str:
        return path if Path(path).is_absolute() else str(base / path)

    return {
        r.id: {
            "question": r.question,
            "options": dict(r.options or {}),
            "images": [str(p) for p in r.image_paths(base)],
            "videos": [spec.rebased(absolute).to_dict() for spec in r.videos],
        }
        for r in records
        if r.id in wanted
    }, None


def _example(
    record_id: str, runs: Mapping[str, Rows], records: Mapping[str, Any], base: str
) -> dict[str, Any]:
    """One example: the record's question, images and gold; per run what it said and why."""
    record = records.get(record_id) or {}
    first = next(iter(runs.values()))[record_id]
    ref = runs[base][record_id] if base in runs else first
    return {
        "id": record_id,
        "kind": ref.get("kind"),
        "question": record.get("question"),
        "options": record.get("options") or {},
        "images": record.get("images") or [],
        "videos": record.get("videos") or [],
        "gold": ref.get("gold"),
        "runs": {name: _verdict(rows[record_id]) for name, rows in runs.items()},
    }


def _verdict(row: Mapping[str, Any]) -> dict[str, Any]:
    text = row.get("prediction")
    if isinstance(text, str) and len(text) > MAX_PREDICTION_CHARS:
        text = text[:MAX_PREDICTION_CHARS] + " …"
    return {
        "prediction": text,
        "status": row.get("status"),
        "extracted": row.get("extracted"),
        "rule": row.get("rule"),
        "correct": row.get("correct"),
    }


def thumbnail(path: str | Path, size: int = THUMBNAIL_PX) -> tuple[str | None, str | None]:
    """``(base64 JPEG, None)`` of the image at ``path`` shrunk to fit ``size`` px, or
    ``(None, why)`` when it cannot be read."""
    from medvl.data.medimage import load_image

    try:
        image = load_image(path)
    except (MedvlError, OSError, ValueError) as exc:
        return None, f"{Path(path).name}: {str(exc).splitlines()[0][:120]}"
    return _jpeg(image, size), None


def filmstrip(
    entry: Mapping[str, Any], count: int = FILMSTRIP_FRAMES, size: int = FILMSTRIP_PX
) -> tuple[list[str], str | None]:
    """``(base64 JPEGs, None)``: ``count`` frames evenly spaced (first and last included) over
    the frames the model gets from the video ``entry`` (paths absolute), each shrunk to fit
    ``size`` px; ``([], why)`` when it cannot be read. A slice list decodes only the picked
    files; a volume or series is read whole, so the window matches the model's frames."""
    from dataclasses import replace

    from medvl.data.video import VideoFieldError, VideoSpec
    from medvl.data.volumes import read_video, sample_indices

    label = str(entry.get("volume") or entry.get("series") or "frames")
    try:
        spec = VideoSpec.from_dict(dict(entry))
        if spec.frames is not None:  # each frame is read alone: decode only the picked ones
            picked = sample_indices(len(spec.frames), None, {"n": count})
            spec = replace(spec, frames=tuple(spec.frames[i] for i in picked))
        frames = read_video(spec, Path.cwd()).frames
    except (MedvlError, VideoFieldError, OSError, ValueError) as exc:
        return [], f"{Path(label).name}: {str(exc).splitlines()[0][:120]}"
    if not frames:
        return [], f"{Path(label).name}: no frames"
    picked = sample_indices(len(frames), None, {"n": count})
    return [_jpeg(frames[i], size) for i in picked], None


def _jpeg(image: Any, size: int) -> str:
    """``image`` shrunk to fit ``size`` px, as base64 JPEG text."""
    image = image.copy()
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=80, optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")

"""Reading a predictions JSONL for scoring: the first text per id, every bad line refused.

A line is one JSON object with ``id`` (or ``question_id``) and the model's text under
``prediction`` (or ``response``, ``output``, ``text``); other fields (medvl's own ``prompt``,
``error``, ``settings``, ``model``, ``seconds``) are allowed. A line is refused with
``FILE:LINE``, what is wrong and the fix when it is not UTF-8 (as the data reader refuses such
data: replacing bytes silently would score a text the model never wrote), not JSON, has no id, or
has no prediction text and no ``error`` saying why (``"error": null`` is no reason: an empty
answer must be written as ``"prediction": ""``). A line whose prediction is null with an error
message is a failed generation: it is scored, and counted as ``error``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from medvl.errors import RecordError
from medvl.provenance import file_sha256

ID_KEYS = ("id", "question_id")
PREDICTION_KEYS = ("prediction", "response", "output", "text")


@dataclass
class Predictions:
    """A predictions file: the first text per id, and what was wrong with the file."""

    path: Path
    sha256: str
    texts: dict[str, str | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    duplicate_ids: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    n_lines: int = 0


def read_prediction_texts(path: str | Path) -> Predictions:
    """The first text per id of a predictions JSONL, and what was wrong with the file; raise
    :class:`RecordError` naming ``FILE:LINE`` for a bad line."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: no such file; pass the predictions .jsonl (id + prediction)")
    result = Predictions(path=path, sha256=file_sha256(path))
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # tolerate a byte-order mark
            line = _decode(path, lineno, raw)
            if not line.strip():
                continue
            record_id, text, error, model = _prediction_line(path, lineno, line)
            result.n_lines += 1
            if model and model not in result.models:
                result.models.append(model)
            if record_id in result.texts:
                result.duplicate_ids.append(record_id)
                continue
            result.texts[record_id] = text
            if error:
                result.errors[record_id] = error
    return result


def _decode(path: Path, lineno: int, raw: bytes) -> str:
    """The line as text; a line that is not UTF-8 is refused as the data reader refuses it."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"{path}:{lineno}: not UTF-8 (byte {exc.start + 1}); re-save the predictions as "
            "UTF-8 (medvl predict writes UTF-8)"
        ) from None


def _prediction_line(path: Path, lineno: int, line: str) -> tuple[str, str | None, str, str]:
    """``(id, text, error, model)`` of one line; ``text`` is None for a failed generation."""
    where = f"{path}:{lineno}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordError(
            f"{where}: not valid JSON ({exc.msg}); one JSON object per line"
        ) from None
    if not isinstance(row, dict):
        raise RecordError(f"{where}: expected a JSON object with 'id' and 'prediction'")
    id_key = next((k for k in ID_KEYS if row.get(k) is not None), None)
    if id_key is None:
        raise RecordError(f"{where}: no 'id'; each line needs the id of its data record")
    text_key = next((k for k in PREDICTION_KEYS if row.get(k) is not None), None)
    error = row.get("error") or ""
    if text_key is None and not error:
        found = ", ".join(sorted(row))
        raise RecordError(
            f"{where} (id {row[id_key]!r}): no prediction text and no error saying why; put the "
            f"model output under 'prediction' (\"\" for an empty answer) (found keys: {found})"
        )
    text = row.get(text_key) if text_key else None
    if text is not None and not isinstance(text, str):
        raise RecordError(f"{where}: '{text_key}' must be a string, got {type(text).__name__}")
    return str(row[id_key]), text, str(error), str(row.get("model") or "")


def status_of(record_id: str, predictions: Predictions) -> tuple[str | None, str]:
    """``(text, status)``; status is ``ok``, ``empty``, ``error`` (no text) or ``missing``."""
    if record_id not in predictions.texts:
        return None, "missing"
    text = predictions.texts[record_id] or ""
    if text.strip():
        return text, "ok"
    return text, "error" if record_id in predictions.errors else "empty"

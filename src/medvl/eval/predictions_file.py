"""Reading a predictions JSONL for scoring: the first text per id, every bad line refused.

A line is one JSON object with ``id`` (or ``question_id``) and the model's text under
``prediction`` (or ``response``, ``output``, ``text``); other fields (medvl's own ``prompt``,
``error``, ``settings``, ``model``, ``seconds``) are allowed. A line is refused with
``FILE:LINE``, what is wrong and the fix when it is not UTF-8 (as the data reader refuses such
data: replacing bytes silently would score a text the model never wrote), not JSON, has no id, or
has no prediction text and no ``error`` saying why (``"error": null`` is no reason: an empty
answer must be written as ``"prediction": ""``). A line whose prediction is null with an error
message is a failed generation: it is scored, and counted as ``error``.

Tables are read too: ``.csv``/``.tsv`` (csv module, header row) and ``.xlsx`` (openpyxl, first
sheet), as VLMEvalKit writes them (``index, question, answer, prediction, ...``: ``index`` is
an id column there). A row is named ``FILE:ROW`` (the header is row 1); an empty prediction cell
is an empty answer. ``id_field``/``prediction_field`` name the columns (or JSON keys) of another
tool's output instead of the default names.
"""

from __future__ import annotations

import csv
import io
import json
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.errors import ConfigError, RecordError
from medvl.provenance import file_sha256

ID_KEYS = ("id", "question_id")
PREDICTION_KEYS = ("prediction", "response", "output", "text")
TABLE_ID_KEYS = (*ID_KEYS, "index")  # VLMEvalKit's tables key rows by "index"
TABLE_SUFFIXES = (".csv", ".tsv", ".xlsx")


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


def read_prediction_texts(
    path: str | Path,
    *,
    id_field: str | None = None,
    prediction_field: str | None = None,
    id_template: str | None = None,
) -> Predictions:
    """The first text per id of a predictions JSONL or table, and what was wrong with the file;
    raise :class:`RecordError` naming ``FILE:LINE`` (``FILE:ROW``) for a bad line (row).

    ``id_field``/``prediction_field``: the key holding the id / the model's text (default: the
    first of :data:`ID_KEYS` / :data:`PREDICTION_KEYS` a row has; tables also ``index``).
    ``id_template``: build the id from the row's columns instead, e.g.
    ``gmai_mmbench-val-{index}`` for VLMEvalKit's GMAI-MMBench sheet, whose ``index`` is the
    benchmark's own (medvl's record ids carry the benchmark and split in front)."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: no such file; pass the predictions .jsonl (id + prediction)")
    table = path.suffix.lower() in TABLE_SUFFIXES
    keys = _Keys(
        (id_field,) if id_field else TABLE_ID_KEYS if table else ID_KEYS,
        (prediction_field,) if prediction_field else PREDICTION_KEYS,
        named=bool(id_field or prediction_field),
        template=_check_template(id_template) if id_template else None,
    )
    result = Predictions(path=path, sha256=file_sha256(path))
    rows = _table_rows(path) if table else _jsonl_rows(path)
    for lineno, row in rows:
        record_id, text, error, model = _prediction_row(f"{path}:{lineno}", row, keys, table)
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


@dataclass(frozen=True)
class _Keys:
    """Where a row keeps its id and its text; ``named``: the user named them (say so)."""

    ids: tuple[str, ...]
    texts: tuple[str, ...]
    named: bool = False
    template: str | None = None


def _check_template(template: str) -> str:
    """``template`` if it names at least one column as ``{name}``; else a ConfigError."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError as exc:
        raise ConfigError(f"--id-template {template!r}: {exc}; write columns as {{name}}") from None
    if not fields or any(not name.isidentifier() for name in fields):
        raise ConfigError(
            f"--id-template {template!r} must name columns as {{name}}, e.g. "
            "'gmai_mmbench-val-{index}'"
        )
    return template


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` of each non-blank line; a bad line is refused."""
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # tolerate a byte-order mark
            line = _decode(path, lineno, raw)
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(
                    f"{path}:{lineno}: not valid JSON ({exc.msg}); one JSON object per line"
                ) from None


def _table_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row number, {header: cell})`` of a CSV/TSV/xlsx table; the header is row 1."""
    if path.suffix.lower() == ".xlsx":
        yield from _xlsx_rows(path)
        return
    text = _decode(path, 1, path.read_bytes()).removeprefix("\ufeff")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # VLMEvalKit tables may carry base64 images
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        for row in reader:
            if any(v not in (None, "") for v in row.values()):
                yield reader.line_num, row
    except csv.Error as exc:
        raise RecordError(f"{path}: not a readable {delimiter!r}-separated table ({exc})") from None
    finally:
        csv.field_size_limit(old_limit)


def _xlsx_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import zipfile

    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise RecordError(f"{path}: not a readable .xlsx workbook ({exc}); save it again") from None
    try:
        rows = book.worksheets[0].iter_rows(values_only=True)
        header = [str(h).strip() if h is not None else "" for h in next(rows, ())]
        for number, cells in enumerate(rows, start=2):
            if any(c not in (None, "") for c in cells):
                yield number, dict(zip(header, cells, strict=False))
    finally:
        book.close()


def _cell_text(value: Any) -> str:
    """A table cell as text: ``7`` and ``7.0`` -> ``"7"`` (ids and short answers)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _decode(path: Path, lineno: int, raw: bytes) -> str:
    """The line as text; a line that is not UTF-8 is refused as the data reader refuses it."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"{path}:{lineno}: not UTF-8 (byte {exc.start + 1}); re-save the predictions as "
            "UTF-8 (medvl predict writes UTF-8)"
        ) from None


def _prediction_row(
    where: str, row: Any, keys: _Keys, table: bool
) -> tuple[str, str | None, str, str]:
    """``(id, text, error, model)`` of one row; ``text`` is None for a failed generation."""
    if not isinstance(row, dict):
        raise RecordError(f"{where}: expected a JSON object with 'id' and 'prediction'")
    found = ", ".join(sorted(map(str, row)))
    if keys.template:
        return _templated_row(where, row, keys, table, found)
    id_key = next((k for k in keys.ids if row.get(k) not in (None, "")), None)
    if id_key is None:
        fix = "pass --id-field NAME with the column that holds it" if not keys.named else ""
        raise RecordError(
            f"{where}: no {' or '.join(map(repr, keys.ids))}; each row needs the id of "
            f"its data record; {fix or 'check the column name'} (found keys: {found})"
        )
    text_key = next((k for k in keys.texts if k in row and (table or row[k] is not None)), None)
    error = row.get("error") or ""
    if text_key is None and not error:
        raise RecordError(
            f"{where} (id {row[id_key]!r}): no prediction text (under "
            f"{' or '.join(map(repr, keys.texts))}) and no error saying why; put the model output "
            f"under 'prediction' (\"\" for an empty answer) or pass --prediction-field NAME "
            f"(found keys: {found})"
        )
    text = row.get(text_key) if text_key else None
    if table:
        text = "" if text is None else _cell_text(text)
    elif text is not None and not isinstance(text, str):
        raise RecordError(f"{where}: '{text_key}' must be a string, got {type(text).__name__}")
    return _cell_text(row[id_key]), text, str(error), str(row.get("model") or "")


def _templated_row(
    where: str, row: dict[str, Any], keys: _Keys, table: bool, found: str
) -> tuple[str, str | None, str, str]:
    """The row's id built from ``keys.template`` and its columns; the text as usual."""
    cells = {str(k): _cell_text(v) for k, v in row.items() if v not in (None, "")}
    try:
        record_id = str(keys.template).format_map(cells)
    except KeyError as exc:
        raise RecordError(
            f"{where}: --id-template names {{{exc.args[0]}}}, which this row lacks "
            f"(found keys: {found})"
        ) from None
    plain = _Keys(("_medvl_id",), keys.texts, named=True)
    return _prediction_row(where, {**row, "_medvl_id": record_id}, plain, table)


def status_of(record_id: str, predictions: Predictions) -> tuple[str | None, str]:
    """``(text, status)``; status is ``ok``, ``empty``, ``error`` (no text) or ``missing``."""
    if record_id not in predictions.texts:
        return None, "missing"
    text = predictions.texts[record_id] or ""
    if text.strip():
        return text, "ok"
    return text, "error" if record_id in predictions.errors else "empty"

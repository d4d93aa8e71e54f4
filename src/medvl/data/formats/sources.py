"""Loading source files as publishers ship them and as people re-save them.

JSON lists, JSON lines, CSV and TSV are read into ``(key, row)`` pairs, where ``key`` names the
row in a report (``test.json[17]``, ``train.jsonl:18``). A row that cannot be parsed (bad JSON,
bytes that are not UTF-8, a truncated file, a CSV line with the wrong number of fields) becomes a
:class:`~medvl.data.formats.base.Skipped` item instead of an exception, so that one broken line
never costs the rest of the file. A file cut short (a JSON list without its closing ``]``, a
syntax error after which no record can be read, a last JSON line or CSV row without its end)
yields a ``Skipped`` with ``truncated=True``: the records before it are kept, and the command
that reads it fails (see :meth:`~medvl.data.formats.convert_report.ConvertReport.failure`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medvl.data.formats.base import Skipped, guess_split, has_surrogates
from medvl.errors import MedvlError

Row = tuple[str, Any]
SPLIT_ORDER = ("train", "validation", "test")
TABLE_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv")
_WS = re.compile(r"\s*")
_NOT_UTF8 = "holds bytes that are not valid UTF-8; re-save the file as UTF-8"


def read_text(path: Path) -> str:
    """The file's text; bytes that are not UTF-8 survive as surrogates so rows can be skipped."""
    if not path.is_file():
        raise MedvlError(f"{path}: no such file")
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    return text[1:] if text.startswith("\ufeff") else text


def load_document(path: Path) -> Any | None:
    """The whole file parsed as one JSON value, or None if it is not one (e.g. JSON lines)."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError:
        return None


def json_rows(path: Path) -> Iterator[Row | Skipped]:
    """The elements of a JSON list file, or the objects of a JSON-lines file."""
    text = read_text(path)
    start = _WS.match(text).end()
    if text.startswith("[", start):
        yield from _list_elements(text, start + 1, path.name)
    else:
        yield from _json_lines(text, path.name)


def object_rows(path: Path) -> Iterator[tuple[int, str, dict[str, Any]] | Skipped]:
    """``(index, key, row)`` for each JSON object of :func:`json_rows`; a broken row or one that
    is not an object (a list, a number) comes out as a :class:`Skipped` naming its position."""
    for index, item in enumerate(json_rows(path)):
        if isinstance(item, Skipped):
            yield item
        elif not isinstance(item[1], dict):
            yield Skipped(item[0], "not a JSON object")
        else:
            yield index, item[0], item[1]


def _checked(key: str, value: Any) -> Row | Skipped:
    if has_surrogates(value):
        return Skipped(key, _NOT_UTF8)
    return key, value


def _list_elements(text: str, pos: int, name: str) -> Iterator[Row | Skipped]:
    """Parse ``[a, b, ...]`` element by element, keeping what precedes a truncation or error."""
    decoder = json.JSONDecoder()
    index = 0
    while True:
        pos = _WS.match(text, pos).end()
        key = f"{name}[{index}]"
        if pos >= len(text):
            yield Skipped(key, "the file ends before the closing ']'", truncated=True)
            return
        if text[pos] == "]":
            return
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            reason = f"not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
            reason += "; the records after it cannot be read either"
            yield Skipped(key, reason, truncated=True)
            return
        yield _checked(key, value)
        index += 1
        pos = _WS.match(text, pos).end()
        if text.startswith(",", pos):
            pos += 1
        elif not text.startswith("]", pos):
            reason = "expected ',' or ']' between records"
            yield Skipped(f"{name}[{index}]", reason, truncated=True)
            return


def _json_lines(text: str, name: str) -> Iterator[Row | Skipped]:
    # split on "\n" only: str.splitlines() would also break inside strings holding U+2028 or \x85
    lines = text.split("\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        key = f"{name}:{lineno}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            cut = lineno == len(lines)  # the last line, without its newline: cut short
            reason = f"not valid JSON ({exc.msg} at column {exc.colno})"
            yield Skipped(key, reason + ("; the file ends inside it" if cut else ""), cut)
            continue
        yield _checked(key, value)


def table_rows(path: Path, delimiter: str | None = None) -> Iterator[Row | Skipped]:
    """The rows of a CSV (or, for ``.tsv``, tab-separated) file as dicts keyed by the header."""
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    text = read_text(path)
    last_line = text.count("\n") + 1 if text and not text.endswith(("\n", "\r")) else None
    handle = io.StringIO(text, newline="")
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # base64 images in VLMEvalKit TSVs exceed the 128 KiB default
    try:
        reader = csv.DictReader(handle, delimiter=delimiter)
        width = len(reader.fieldnames or [])
        for row in reader:
            key = f"{path.name}:{reader.line_num}"
            if None in row or any(value is None for value in row.values()):
                count = width - sum(v is None for v in row.values()) + len(row.get(None) or [])
                cut = reader.line_num == last_line  # the last row, without its line end
                reason = f"has {count} fields but the header has {width}"
                yield Skipped(key, reason + ("; the file ends inside it" if cut else ""), cut)
                continue
            yield _checked(key, row)
    finally:
        csv.field_size_limit(old_limit)


def any_rows(path: Path) -> Iterator[Row | Skipped]:
    """Rows of a ``.csv``/``.tsv`` table or of a JSON list / JSON-lines file."""
    if path.suffix.lower() in (".csv", ".tsv"):
        return table_rows(path)
    return json_rows(path)


def folder_file(path: Path, names: Sequence[str], what: str) -> Path:
    """``path`` if it is a file, else the file of the folder ``path`` first named in ``names``
    (a dataset folder as published, holding one annotation file); a clear error otherwise."""
    if path.is_dir():
        found = [path / name for name in names if (path / name).is_file()]
        if not found:
            raise MedvlError(f"{path}: no {' or '.join(names)} here; pass {what}")
        return found[0]
    return require_file(path, what)


def require_file(path: Path, what: str) -> Path:
    """``path`` itself if it is a file; a clear error otherwise."""
    if not path.is_file():
        raise MedvlError(f"{path}: expected {what}")
    return path


def split_files(
    folder: Path, what: str, wanted: str | None = None, prefer: Sequence[str] = ()
) -> list[tuple[Path, str]]:
    """``(file, split)`` for the files of a dataset folder whose names name a split.

    ``train.json``, ``testset.json``, ``test_2.csv`` and ``validation.jsonl`` count; files that
    name no split (``imgid2idx.json``) are ignored. With ``wanted`` only that split's file is
    returned. Several files of one split are ambiguous unless ``prefer`` names one of them
    (PMC-VQA ships ``test.csv``, ``test_2.csv`` and ``test_clean.csv``). ``what`` says what the
    folder should hold, for the error when it holds none.
    """
    by_split: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        split = guess_split(path, "") if path.suffix.lower() in TABLE_SUFFIXES else ""
        if split and path.is_file():
            by_split.setdefault(split, []).append(path)
    if not by_split:
        raise MedvlError(f"{folder}: no train/validation/test file here; pass {what}")
    if wanted and wanted not in by_split:
        held = ", ".join(f"{s}: {', '.join(p.name for p in ps)}" for s, ps in by_split.items())
        raise MedvlError(f"{folder}: no {wanted} file here (it holds {held})")
    order = {name: i for i, name in enumerate(SPLIT_ORDER)}
    files = []
    for split in sorted(by_split, key=lambda s: (order.get(s, len(order)), s)):
        if wanted and split != wanted:
            continue
        found = by_split[split]
        chosen = [p for name in prefer for p in found if p.name == name][:1] or found
        if len(chosen) > 1:
            names = ", ".join(p.name for p in chosen)
            raise MedvlError(f"{folder}: several {split} files ({names}); pass the one to read")
        files.append((chosen[0], split))
    return files

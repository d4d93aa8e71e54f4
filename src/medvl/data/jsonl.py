"""Reading and writing canonical records as JSONL: streaming, atomic, with errors that point.

A bad line raises :class:`~medvl.errors.RecordError` naming the file, line number, record id and
field, e.g. ``data/train.jsonl:17 (id 'x-3'): field 'images': 2 image(s) listed but 1 <image>
placeholder(s) ...``. :func:`check_jsonl` instead collects every problem so that a validator can
report them all and still use the valid records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medvl.data.record import FieldError, Record
from medvl.errors import RecordError
from medvl.fileio import atomic_writer


@dataclass(frozen=True)
class RecordProblem:
    """One invalid line of a JSONL file."""

    path: Path
    line: int
    record_id: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        if self.record_id is not None:
            where += f" (id {self.record_id!r})"
        return f"{where}: field '{self.field}': {self.message}"


@dataclass
class JsonlCheck:
    """The outcome of checking a whole file: the valid records and every problem found."""

    path: Path
    records: list[Record] = field(default_factory=list)
    problems: list[RecordProblem] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # record id -> line number

    @property
    def ok(self) -> bool:
        return not self.problems


def _parse_line(path: Path, lineno: int, text: str) -> Record:
    """Parse one JSONL line into a record, or raise a RecordProblem-carrying RecordError."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = RecordProblem(
            path,
            lineno,
            None,
            "<json>",
            f"not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object",
        )
        raise RecordLineError(problem) from None
    try:
        return Record.from_dict(data)
    except FieldError as exc:
        record_id = data.get("id") if isinstance(data, dict) else None
        record_id = record_id if isinstance(record_id, str) else None
        raise RecordLineError(
            RecordProblem(path, lineno, record_id, exc.field, exc.message)
        ) from None


class RecordLineError(RecordError):
    """A RecordError that carries the structured :class:`RecordProblem`."""

    def __init__(self, problem: RecordProblem):
        self.problem = problem
        super().__init__(str(problem))


def _lines(path: Path) -> Iterator[tuple[int, str | RecordProblem]]:
    """Non-blank lines with their numbers; a line that is not UTF-8 comes as a RecordProblem."""
    if not path.is_file():
        raise RecordError(f"{path}: no such file; pass the path of a canonical .jsonl file")
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # tolerate a byte-order mark
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                message = f"not UTF-8 (byte {exc.start + 1}); re-save the file as UTF-8"
                yield lineno, RecordProblem(path, lineno, None, "<encoding>", message)
                continue
            if text.strip():
                yield lineno, text


def iter_records(path: str | Path) -> Iterator[Record]:
    """Stream the records of a JSONL file; raise RecordError at the first invalid line."""
    path = Path(path)
    seen: set[str] = set()
    for lineno, text in _lines(path):
        if isinstance(text, RecordProblem):
            raise RecordLineError(text)
        record = _parse_line(path, lineno, text)
        if record.id in seen:
            raise RecordLineError(
                RecordProblem(path, lineno, record.id, "id", "duplicate id; ids must be unique")
            )
        seen.add(record.id)
        yield record


def read_records(path: str | Path) -> list[Record]:
    """Load every record of a JSONL file; raise RecordError at the first invalid line."""
    return list(iter_records(path))


def check_jsonl(path: str | Path) -> JsonlCheck:
    """Check every line of a JSONL file, keeping the valid records and listing every problem."""
    path = Path(path)
    result = JsonlCheck(path=path)
    seen: dict[str, int] = {}
    for lineno, text in _lines(path):
        if isinstance(text, RecordProblem):
            result.problems.append(text)
            continue
        try:
            record = _parse_line(path, lineno, text)
        except RecordLineError as exc:
            result.problems.append(exc.problem)
            continue
        if record.id in seen:
            message = f"duplicate id (first seen on line {seen[record.id]}); ids must be unique"
            result.problems.append(RecordProblem(path, lineno, record.id, "id", message))
            continue
        seen[record.id] = lineno
        result.records.append(record)
    result.lines = seen
    return result


def record_to_line(record: Record) -> str:
    """The JSONL line for ``record`` (UTF-8 text, no trailing newline, stable key order)."""
    try:
        return json.dumps(
            record.to_dict(), ensure_ascii=False, separators=(", ", ": "), allow_nan=False
        )
    except ValueError as exc:  # NaN/Infinity are not JSON; other tools would reject the file
        raise RecordError(f"record {record.id!r}: {exc}; replace NaN/inf values in meta") from None


def write_records(path: str | Path, records: Iterable[Record]) -> int:
    """Write records to ``path`` atomically, streaming; refuse duplicate ids. Returns the count."""
    path = Path(path)
    seen: set[str] = set()
    with atomic_writer(path) as handle:
        for record in records:
            if record.id in seen:
                raise RecordError(f"{path}: duplicate id {record.id!r}; ids must be unique")
            seen.add(record.id)
            handle.write(record_to_line(record) + "\n")
    return len(seen)

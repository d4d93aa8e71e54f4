"""Validate a canonical JSONL file before any GPU time is spent.

Checks, per record: schema and unique ids, role order, an empty answer, every image (present,
decodable, not cut short -- a PNG/JPEG must end with its end marker, read from the file's tail
--, big enough; inside the dataset root when one is given, while without one paths are read as
written, ``../`` and absolute ones included) and, with a model's processor, the exact token
length with image tokens against ``max_length`` -- so no record can later be cut through its
image tokens. Valid records are kept; every problem gets a stable code and a one-line reason.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.data.images import ImageCheck, ImageHeader, inspect_image, record_image_paths
from medvl.data.jsonl import check_jsonl
from medvl.data.record import Record
from medvl.data.tokens import TokenCounter
from medvl.progress import ProgressFn

#: Below this many images to decode, one process beats starting a pool (header reads never
#: pay for one: they take ~0.05 ms each).
_POOL_MIN_IMAGES = 2000


@dataclass(frozen=True)
class Problem:
    """One reason one record is refused."""

    code: str
    record_id: str | None
    line: int | None
    field: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "id": self.record_id,
            "line": self.line,
            "field": self.field,
            "message": self.message,
        }


@dataclass
class ValidationResult:
    """What validation found: the clean records, every problem and the token lengths."""

    path: Path
    n_records: int
    valid: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    token_lengths: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """JSON-ready report: counts by problem code, each problem, token-length summary."""
        lengths = sorted(self.token_lengths.values())
        summary = None
        if lengths:
            summary = {
                "min": lengths[0],
                "max": lengths[-1],
                "mean": round(sum(lengths) / len(lengths), 1),
                "p95": lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))],
            }
        invalid_ids = {p.record_id or f"line {p.line}" for p in self.problems}
        return {
            "file": str(self.path),
            "records": self.n_records,
            "valid": len(self.valid),
            "invalid": len(invalid_ids),
            "problems_by_code": dict(sorted(Counter(p.code for p in self.problems).items())),
            "problems": [p.to_dict() for p in self.problems],
            "token_length": summary,
            "settings": self.settings,
        }


def _inspect(job: tuple[Path, bool]) -> tuple[ImageHeader | None, ImageCheck | None]:
    return inspect_image(job[0], decode=job[1])


def _inspect_all(
    paths: list[Path], decode: bool, workers: int, progress: ProgressFn | None = None
) -> dict[Path, tuple]:
    """Header (or full decode) of every image; ``progress(done, total)`` after each one."""
    jobs = [(path, decode) for path in paths]
    results: list[tuple] = []
    if progress is not None:
        progress(0, len(jobs))
    with contextlib.ExitStack() as stack:
        inspected: Iterable[tuple] = map(_inspect, jobs)
        if decode and workers > 1 and len(paths) >= _POOL_MIN_IMAGES:  # headers: a pool costs more
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers))
            inspected = pool.map(_inspect, jobs, chunksize=256)
        for result in inspected:
            results.append(result)
            if progress is not None:
                progress(len(results), len(jobs))
    return dict(zip(paths, results, strict=True))


def conversation_problem(record: Record) -> tuple[str, str, str] | None:
    """(code, field, message) when turns are out of order or the answer is empty."""
    turns = record.messages[1:] if record.messages[0].role == "system" else record.messages
    for index, turn in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if turn.role != expected:
            offset = index + (len(record.messages) - len(turns))
            return (
                "role_order",
                f"messages[{offset}].role",
                f"expected a {expected} turn here; turns must alternate user/assistant",
            )
    last = record.messages[-1]
    if last.role == "assistant" and not last.content.strip():
        return (
            "empty_answer",
            f"messages[{len(record.messages) - 1}].content",
            "the assistant turn is empty; give the reference answer or drop the turn",
        )
    if record.answer is not None and not record.answer.strip():
        return "empty_answer", "answer", "answer is an empty string; use null or the gold answer"
    return None


def validate_jsonl(
    path: str | Path,
    *,
    counter: TokenCounter | None = None,
    max_length: int | None = None,
    decode_images: bool = False,
    check_images: bool = True,
    root: str | Path | None = None,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> ValidationResult:
    """Validate every record of ``path``; see the module docstring for the checks.

    ``progress(done, total)`` is called as the images are checked (the slow part: one file
    read, or decode, per image), counting distinct images."""
    path = Path(path)
    allow_absolute = root is None  # without an explicit root, paths are read as written
    root = Path(root) if root is not None else path.parent
    checked = check_jsonl(path)
    result = ValidationResult(path=path, n_records=len(checked.records) + len(checked.problems))
    result.settings = {
        "max_length": max_length,
        "decode_images": decode_images,
        "check_images": check_images,
        "root": str(root),
        "pixel_budget": vars(counter.budget) if counter else None,
    }
    for p in checked.problems:
        code = {"<json>": "invalid_json", "id": "duplicate_id"}.get(p.field, "schema")
        result.problems.append(Problem(code, p.record_id, p.line, p.field, p.message))
    candidates = []
    for record in checked.records:
        found = conversation_problem(record)
        if found:
            line = checked.lines[record.id]
            result.problems.append(Problem(found[0], record.id, line, found[1], found[2]))
        else:
            candidates.append(record)
    sizes = _image_sizes(
        candidates,
        path,
        (root, allow_absolute),
        check_images,
        decode_images,
        workers,
        result,
        progress,
    )
    ok = [r for r in candidates if r.id in sizes]
    if counter is not None:
        _count_tokens(ok, sizes, counter, max_length, result)
    # a duplicate line is refused on its own; the first record with that id stays valid
    refused = {p.record_id for p in result.problems if p.code != "duplicate_id"}
    result.valid = [r for r in ok if r.id not in refused]
    result.problems = [
        p
        if p.line is not None or p.record_id is None
        else Problem(p.code, p.record_id, checked.lines[p.record_id], p.field, p.message)
        for p in result.problems
    ]
    return result


def _image_sizes(
    records: list[Record],
    path: Path,
    root: tuple[Path, bool],
    check: bool,
    decode: bool,
    workers: int | None,
    result: ValidationResult,
    progress: ProgressFn | None = None,
) -> dict[str, list[tuple]]:
    """Each usable record's image sizes; image problems go to ``result``."""
    resolved = {
        r.id: list(record_image_paths(r, path.parent, root[0], allow_absolute=root[1]))
        for r in records
    }
    unique = sorted({p for items in resolved.values() for _, p, c in items if c is None})
    info = _inspect_all(unique, decode, workers or os.cpu_count() or 1, progress) if check else {}
    sizes: dict[str, list[tuple]] = {}
    for record in records:
        record_sizes, bad = [], False
        for index, image_path, check_result in resolved[record.id]:
            header, problem = (
                (None, check_result) if check_result else info.get(image_path, (None, None))
            )
            if problem is not None:
                bad = True
                result.problems.append(
                    Problem(
                        problem.code,
                        record.id,
                        None,
                        f"images[{index}]",
                        f"{image_path}: {problem.message}",
                    )
                )
            record_sizes.append((header.width, header.height) if header else None)
        if not bad:
            sizes[record.id] = record_sizes
    return sizes


def _count_tokens(
    records: list[Record],
    sizes: dict[str, list[tuple]],
    counter: TokenCounter,
    max_length: int | None,
    result: ValidationResult,
) -> None:
    known = [r for r in records if all(size is not None for size in sizes[r.id])]
    lengths = counter.count_many(known, [sizes[r.id] for r in known])  # skipped checks: no sizes
    for record, length in zip(known, lengths, strict=True):
        result.token_lengths[record.id] = length
        if max_length is not None and length > max_length:
            result.problems.append(
                Problem(
                    "too_long",
                    record.id,
                    None,
                    "messages",
                    f"{length} tokens with image tokens, above max_length {max_length}; raise "
                    "max_length, lower max_pixels or drop the record (never cut image tokens)",
                )
            )

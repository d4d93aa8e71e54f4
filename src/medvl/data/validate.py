"""Validate a canonical JSONL file before any GPU time is spent.

Checks, per record: schema and unique ids, role order, an empty answer, every image (present,
decodable, not cut short -- a PNG/JPEG must end with its end marker, read from the file's tail
--, big enough; inside the dataset root when one is given, while without one paths are read as
written, ``../`` and absolute ones included), every video (:mod:`medvl.data.validate_video`:
frame files checked like images and of one size, volumes and series present and, when decoding
or counting tokens, readable) and, with a model's processor, the exact token length with image
and video tokens against ``max_length`` -- so no record can later be cut through its image or
video tokens: such a record is refused (``too_long``), never truncated. Valid records are kept;
every problem gets a stable code and a one-line reason.
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

from medvl.data.images import (
    ImageCheck,
    ImageHeader,
    inspect_image,
    record_image_paths,
    record_video_paths,
)
from medvl.data.jsonl import check_jsonl
from medvl.data.record import Record
from medvl.data.tokens import TokenCounter, VideoShape
from medvl.data.validate_video import VideoShapes, record_video_issues
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
    #: Per counted record: its image tokens and its video tokens (parts of ``token_lengths``).
    image_tokens: dict[str, int] = field(default_factory=dict)
    video_tokens: dict[str, int] = field(default_factory=dict)
    #: Per record whose videos were all measured: (frames, width, height) of each video.
    video_shapes: dict[str, list[VideoShape]] = field(default_factory=dict)

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

    ``progress(done, total)`` is called as the images and frame files are checked (the slow
    part: one file read, or decode, per file), counting distinct files. Volumes and series are
    decoded (:func:`medvl.data.volumes.load_frames`) with ``decode_images``; a ``counter`` alone
    reads their headers only (:func:`medvl.data.volumes.video_shape`)."""
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
        "video_budget": vars(counter.video_budget) if counter and counter.video_budget else None,
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
    sizes = _media_sizes(
        candidates,
        path,
        (root, allow_absolute),
        (check_images, decode_images, counter is not None),
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


def _media_sizes(
    records: list[Record],
    path: Path,
    root: tuple[Path, bool],
    modes: tuple[bool, bool, bool],
    workers: int | None,
    result: ValidationResult,
    progress: ProgressFn | None = None,
) -> dict[str, list[tuple]]:
    """Each usable record's image sizes (its video shapes go to ``result.video_shapes``);
    image and video problems go to ``result``. ``modes``: (check files, decode, count)."""
    check, decode, counting = modes
    resolved = {
        r.id: list(record_image_paths(r, path.parent, root[0], allow_absolute=root[1]))
        for r in records
    }
    videos = {
        r.id: list(record_video_paths(r, path.parent, root[0], allow_absolute=root[1]))
        for r in records
        if r.videos
    }
    unique = {p for items in resolved.values() for _, p, c in items if c is None}
    unique |= {  # frame files are inspected like images, in the same pass
        p
        for r in records
        for i, _, p, c in videos.get(r.id, [])
        if c is None and r.videos[i].frames is not None
    }
    jobs = sorted(unique)
    info = _inspect_all(jobs, decode, workers or os.cpu_count() or 1, progress) if check else {}
    shapes = VideoShapes(path.parent, decode=decode)
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
        if record.videos:
            found, issues = record_video_issues(
                record,
                videos[record.id],
                shapes,
                lambda p: info.get(p, (None, None)),
                check=check,
                read=decode or counting,
            )
            for issue in issues:
                result.problems.append(
                    Problem(issue.code, record.id, None, issue.field, issue.message)
                )
            bad = bad or bool(issues)
            if found is not None:
                result.video_shapes[record.id] = found
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
    known = [  # skipped checks: no sizes, no count
        r
        for r in records
        if all(size is not None for size in sizes[r.id])
        and (not r.videos or r.id in result.video_shapes)
    ]
    shapes = [result.video_shapes.get(r.id, []) for r in known]
    lengths = counter.count_many(known, [sizes[r.id] for r in known], shapes)
    for record, length, video_shapes in zip(known, lengths, shapes, strict=True):
        result.token_lengths[record.id] = length
        result.image_tokens[record.id] = sum(
            counter.budget.image_tokens(w, h) for w, h in sizes[record.id]
        )
        result.video_tokens[record.id] = sum(map(counter.video_tokens, video_shapes))
        if max_length is not None and length > max_length:
            result.problems.append(
                Problem(
                    "too_long",
                    record.id,
                    None,
                    "messages",
                    _too_long(length, max_length, result.video_tokens[record.id], video_shapes),
                )
            )


def _too_long(length: int, max_length: int, video_tokens: int, shapes: list[VideoShape]) -> str:
    """The ``too_long`` message: what is long and the fixes, never a cut."""
    if not shapes:
        return (
            f"{length} tokens with image tokens, above max_length {max_length}; raise "
            "max_length, lower max_pixels or drop the record (never cut image tokens)"
        )
    frames = " + ".join(str(n) for n, _, _ in shapes)
    return (
        f"{length} tokens, {video_tokens} of them for {len(shapes)} video(s) of {frames} "
        f"frame(s), above max_length {max_length}; a video is never cut: use fewer slices "
        "(a smaller sample.n, a larger sample.every_mm, a slab, or fewer frames), a smaller "
        "video pixel budget (data.video_max_pixels in a recipe, --video-max-pixels on the "
        "command line), raise max_length, or drop the record"
    )

"""The data side of an evaluation run: the benchmark's canonical JSONL from what ``--data``
points at, used in place, filtered to the benchmark's language/split, or converted (and the
conversion reused while its input, options and medvl version are unchanged).

See :mod:`medvl.eval.runner` for the run folder this writes into (``data.jsonl``,
``data.source.json``, ``images/``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.data.jsonl import read_records, write_records
from medvl.data.paths import rebase_images
from medvl.errors import MedvlError
from medvl.eval.benchmarks import CANONICAL, Benchmark
from medvl.fileio import atomic_write_json
from medvl.provenance import __version__, file_sha256

#: Files of an input folder whose content (not only name and size) enters its fingerprint.
ANNOTATION_SUFFIXES = frozenset({".json", ".jsonl", ".csv", ".tsv", ".txt"})


@dataclass(frozen=True)
class PreparedData:
    """The canonical file a run predicts on, and where it came from. ``status``: ``in_place``
    (canonical input used as is), ``filtered`` (canonical input, other languages/splits left
    out), ``converted`` or ``reused`` (an earlier conversion of the same input)."""

    path: Path
    sha256: str
    source: dict[str, Any]
    status: str
    report: dict[str, Any] | None = None


def is_canonical_jsonl(path: Path) -> bool:
    """Whether ``path`` is a JSONL file whose first record has ``id`` and ``messages``."""
    if not path.is_file() or path.suffix.lower() != ".jsonl":
        return False
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(row, dict) and {"id", "messages"} <= set(row)
    return False


def input_fingerprint(path: Path) -> str:
    """A file's SHA-256; for a folder, a hash of its files' paths and sizes plus the content of
    its annotation files (images are identified by name and size only, to stay cheap)."""
    if path.is_file():
        return f"sha256:{file_sha256(path)}"
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file.stat().st_size}\n".encode())
        if file.suffix.lower() in ANNOTATION_SUFFIXES:
            digest.update(file_sha256(file).encode())
    return f"tree:{digest.hexdigest()[:32]}"


def prepare_data(
    bench: Benchmark,
    data: Path,
    out: Path,
    *,
    image_root: Path | None = None,
    reconvert: bool = False,
) -> PreparedData:
    """The canonical JSONL of ``data`` for ``bench``: used in place, filtered, or converted."""
    data = Path(data)
    if not data.exists():
        raise MedvlError(
            f"{data}: no such file or folder; --data for {bench.name} is {bench.reader.expects}"
        )
    if is_canonical_jsonl(data):
        return _canonical(bench, data, out)
    if bench.reader.format == CANONICAL:
        raise MedvlError(
            f"{data}: not canonical JSONL (one JSON record per line with 'id' and 'messages'); "
            f"{bench.name} reads {bench.reader.expects}; convert other formats with "
            "'medvl data convert' or pick their benchmark"
        )
    return _converted(bench, data, out, image_root, reconvert)


def _canonical(bench: Benchmark, data: Path, out: Path) -> PreparedData:
    records = read_records(data)
    kept = [r for r in records if bench.reader.wants(r)]
    source = {"format": CANONICAL, "input": str(data.resolve())}
    if len(kept) == len(records):
        return PreparedData(data, file_sha256(data), source, "in_place")
    if not kept:
        raise MedvlError(
            f"{data}: none of its {len(records)} records is in {bench.reader.label()}: "
            f"{bench.reader.mismatch(records)}; pick the benchmark of that language/split, "
            "or 'custom'"
        )
    target = out / "data.jsonl"
    write_records(target, rebase_images(kept, data.parent, out))
    report = {"read": len(records), "written": len(kept), "filtered": len(records) - len(kept)}
    return PreparedData(target, file_sha256(target), source, "filtered", report)


def _converted(
    bench: Benchmark, data: Path, out: Path, image_root: Path | None, reconvert: bool
) -> PreparedData:
    reader = bench.reader
    source = {
        "format": reader.format,
        "input": str(data.resolve()),
        "fingerprint": input_fingerprint(data),
        "lang": reader.lang,
        "split": reader.split,
        "options": dict(reader.options),
        "image_root": str(Path(image_root).resolve()) if image_root else None,
        "medvl": __version__,
    }
    target, meta_path = out / "data.jsonl", out / "data.source.json"
    if not reconvert and target.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("source") == source and meta.get("sha256") == file_sha256(target):
            return PreparedData(target, meta["sha256"], source, "reused", meta.get("report"))
    report = reader.convert(data, target, image_root)
    summary = {
        "read": report.read,
        "written": report.written,
        "skipped": report.skipped,
        "filtered": report.filtered,
        "filtered_by": report.filtered_by,
        "problems": report.problem_lines(20),
    }
    failure = report.failure(style=f"{bench.name}'s {{name}}={{value}} filter")
    if failure:  # the filters are the benchmark's, not flags the user gave
        raise MedvlError(f"{failure}; --data for {bench.name} is {reader.expects}")
    sha = file_sha256(target)
    atomic_write_json(meta_path, {"source": source, "sha256": sha, "report": summary})
    return PreparedData(target, sha, source, "converted", summary)

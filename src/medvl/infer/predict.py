"""Resumable prediction over a JSONL file of canonical records.

Each output line is one JSON object::

    {"id": "phantom-00042", "prompt": "<|im_start|>...", "prediction": "yes", "error": null,
     "settings": {"max_new_tokens": 256, "do_sample": false, ...},
     "model": {"id": "sha256:...", "path": "...", "adapters": [...]}, "engine": "hf",
     "finish_reason": "stop", "prompt_tokens": 87, "completion_tokens": 2, "seconds": 0.0412}

``id`` and ``prediction`` are what evaluation reads; a record whose image cannot be read gets
``prediction: null`` and a one-line ``error``, and the rest proceed.

Resuming: every finished batch is appended as whole lines and flushed to disk (fsync), so a
killed run loses at most the batch in flight. On start, the existing lines are read, a partial
last line (the write the kill interrupted) is dropped by rewriting the file atomically, and ids
already predicted are skipped. Error entries are retried (the image may have been fixed). When
every record is done, the file is rewritten atomically in the data file's order.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.data.jsonl import read_records
from medvl.data.record import Record
from medvl.errors import MedvlError
from medvl.fileio import atomic_writer, name_target
from medvl.infer.engine import ChatRequest, Engine, Generation, GenerationSettings

logger = logging.getLogger(__name__)


class PredictionFileError(MedvlError):
    """An existing predictions file cannot be resumed."""


@dataclass(frozen=True)
class PredictSummary:
    """What one prediction run did."""

    out: Path
    total: int
    skipped: int
    written: int
    errors: int
    seconds: float

    @property
    def records_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def prediction_row(
    generation: Generation, settings: GenerationSettings, model: dict[str, Any], engine: str
) -> dict[str, Any]:
    """The output line for one generation."""
    return {
        "id": generation.id,
        "prompt": generation.prompt,
        "prediction": None if generation.error else generation.text,
        "error": generation.error,
        "settings": settings.to_dict(),
        "model": model,
        "engine": engine,
        "finish_reason": generation.finish_reason,
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "seconds": generation.seconds,
    }


def _split_lines(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The complete prediction rows of ``path`` and whether a partial last line was found."""
    data = path.read_bytes()
    *complete, tail = data.split(b"\n")
    rows = []
    for lineno, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise PredictionFileError(
                f"{path}:{lineno}: not a prediction line; this is not a medvl predictions "
                "file, or it was edited: pass another --out, or --overwrite to start over"
            )
        rows.append(row)
    return rows, bool(tail.strip())


def read_prediction_rows(path: str | Path) -> list[dict[str, Any]]:
    """The prediction rows of a file (a partial last line from a killed run is ignored)."""
    return _split_lines(Path(path))[0]


class PredictionFile:
    """An append-only predictions file that survives being killed at any point."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def resume(
        self,
        model: dict[str, Any],
        settings: GenerationSettings,
        *,
        overwrite: bool = False,
        retry_errors: bool = True,
    ) -> set[str]:
        """Prepare the file for appending; return the ids already predicted."""
        if overwrite or not self.path.exists():
            self._rewrite([])
            return set()
        rows, partial = _split_lines(self.path)
        self._check_compatible(rows, model, settings)
        kept, seen = [], set()
        for row in rows:
            if row["id"] in seen or (retry_errors and row.get("error")):
                continue
            seen.add(row["id"])
            kept.append(row)
        if partial or len(kept) != len(rows):
            logger.info("%s: kept %d of %d lines", self.path, len(kept), len(rows) + partial)
            self._rewrite(kept)
        return seen

    def _check_compatible(
        self, rows: list[dict[str, Any]], model: dict[str, Any], settings: GenerationSettings
    ) -> None:
        """Refuse to mix outputs of other weights or other generation settings in one file."""
        wanted = settings.to_dict()
        for row in rows:
            old_model = row.get("model") or {}
            if old_model.get("id") != model.get("id"):
                raise PredictionFileError(
                    f"{self.path}: id {row['id']!r} was predicted by another model "
                    f"({old_model.get('path') or old_model.get('model')!r}, fingerprint "
                    f"{old_model.get('id')!r}; now {model.get('id')!r}); pass another --out, "
                    "or --overwrite to start over"
                )
            if "inputs" in old_model and old_model["inputs"] != model.get("inputs"):
                before, now = old_model["inputs"] or {}, model.get("inputs") or {}
                diffs = ", ".join(
                    f"{k} {before.get(k)!r} -> {now.get(k)!r}"
                    for k in sorted(set(before) | set(now))
                    if before.get(k) != now.get(k)
                )
                raise PredictionFileError(
                    f"{self.path}: id {row['id']!r} was predicted with other input settings "
                    f"({diffs}); pass another --out, or --overwrite to start over"
                )
            old = row.get("settings") or {}
            changed = [key for key in wanted if old.get(key) != wanted[key]]
            if changed:
                diffs = ", ".join(f"{k} {old.get(k)!r} -> {wanted[k]!r}" for k in changed)
                raise PredictionFileError(
                    f"{self.path}: id {row['id']!r} was predicted with other settings "
                    f"({diffs}); pass another --out, or --overwrite to start over"
                )

    def _rewrite(self, rows: Iterable[dict[str, Any]]) -> None:
        with atomic_writer(self.path) as handle:
            for row in rows:
                handle.write(_line(row))

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append whole lines in one write, then flush them to disk."""
        if not rows:
            return
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write("".join(_line(row) for row in rows))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:  # e.g. a full disk: name the file; a rerun drops the partial line
            name_target(exc, self.path)
            raise

    def reorder(self, ids: Sequence[str]) -> None:
        """Rewrite the file atomically with its rows in ``ids`` order (unknown ids last)."""
        rows = read_prediction_rows(self.path)
        rank = {record_id: i for i, record_id in enumerate(ids)}
        ordered = sorted(rows, key=lambda row: rank.get(row["id"], len(rank)))
        if ordered != rows:
            self._rewrite(ordered)


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"


def predict_records(
    engine: Engine,
    records: Sequence[Record],
    base_dir: str | Path,
    out: str | Path,
    settings: GenerationSettings,
    *,
    overwrite: bool = False,
    retry_errors: bool = True,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PredictSummary:
    """Predict every record not yet in ``out``; images resolve against ``base_dir``.

    ``progress(done, total)`` is called before the first batch and after each one, counting
    the records this run predicts.
    """
    start = time.perf_counter()
    output = PredictionFile(out)
    model = engine.fingerprint()
    inputs = engine.input_settings()  # precision, quantization, pixel budgets (local models)
    if inputs is not None:
        model = {**model, "inputs": inputs}
    done = output.resume(model, settings, overwrite=overwrite, retry_errors=retry_errors)
    todo = [record for record in records if record.id not in done]
    if limit is not None:
        todo = todo[:limit]
    requests = (ChatRequest.from_record(record, base_dir) for record in todo)
    written = errors = 0
    if progress is not None:
        progress(0, len(todo))
    for batch in engine.generate_batches(requests, settings):
        output.append([prediction_row(g, settings, model, engine.name) for g in batch])
        written += len(batch)
        errors += sum(1 for g in batch if g.error)
        if progress is not None:
            progress(written, len(todo))
    if len(done) + written == len(records):
        output.reorder([record.id for record in records])
    summary = PredictSummary(
        Path(out), len(records), len(done), written, errors, time.perf_counter() - start
    )
    logger.info("%s: %d predicted, %d already there, %d errors", out, written, len(done), errors)
    return summary


def predict_file(
    engine: Engine,
    data: str | Path,
    out: str | Path,
    settings: GenerationSettings,
    *,
    records: Sequence[Record] | None = None,
    **kwargs: Any,
) -> PredictSummary:
    """Predict the records of a canonical JSONL file (see :func:`predict_records`).

    ``records``: only these records of ``data`` (e.g. a ``--where``/``--sample`` selection);
    default all of them. Their image paths resolve against the file's folder either way."""
    data = Path(data)
    records = read_records(data) if records is None else records
    if Path(out).resolve() == data.resolve():
        raise PredictionFileError(f"{out}: the output would overwrite the data file; pick --out")
    return predict_records(engine, records, data.parent, out, settings, **kwargs)

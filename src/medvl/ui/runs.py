"""An eval run folder as the workbench shows it: the scores rows joined with their records.

A run folder written by ``medvl eval run`` (or ``eval score``) holds ``scores.jsonl`` (one row per
record: prediction, gold, extracted answer, rule, ``correct``, per-record metrics, and the
breakdown keys of ``meta``) and ``metrics.json``; ``run.json`` names the data file that was
scored. The question and the image live only in that data file, so :func:`open_run` finds it
(``metrics.json``'s ``settings.data``, then ``run.json``'s ``data.scored_path`` and
``data.path``, each as written and relative to the run folder) and joins its records by id. A
run whose data file has moved still opens: its rows show without question and image, and
:attr:`RunView.note` says why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.data.jsonl import read_records
from medvl.data.record import Record
from medvl.errors import MedvlError
from medvl.eval.report import Run, load_run

#: Row fields a filter can select on directly; anything else is looked up in ``meta``.
ROW_FIELDS = ("kind", "answer_type", "question_type", "lang", "dataset", "rule", "status")


@dataclass
class RunView:
    """One run folder: its scored rows (file order), the data records by id, and a note when
    the data file could not be read."""

    run: Run
    records: dict[str, Record] = field(default_factory=dict)
    data_path: Path | None = None
    note: str = ""

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.run.rows.values())

    def record(self, record_id: str) -> Record | None:
        """The data record of ``record_id``, if the data file was found and holds it."""
        return self.records.get(record_id)

    def image_paths(self, record_id: str) -> list[Path]:
        """The record's images that exist on disk (resolved against the data file's folder)."""
        record = self.records.get(record_id)
        if record is None or self.data_path is None:
            return []
        return [p for p in record.image_paths(self.data_path.parent) if p.is_file()]

    def meta(self, row: dict[str, Any]) -> dict[str, Any]:
        """Every scalar meta value of the row's record, overlaid by the row's own ``meta``."""
        record = self.records.get(row["id"])
        merged = {
            k: v
            for k, v in (record.meta if record else {}).items()
            if isinstance(v, str | int | float | bool) or v is None
        }
        merged.update(row.get("meta") or {})
        return merged


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def data_candidates(folder: Path) -> list[Path]:
    """Where the scored data file of the run in ``folder`` may be, most specific first."""
    metrics = _read_json(folder / "metrics.json")
    run = _read_json(folder / "run.json")
    data = run.get("data") if isinstance(run.get("data"), dict) else {}
    written = [
        (metrics.get("settings") or {}).get("data"),
        data.get("scored_path"),
        data.get("path"),
    ]
    found: list[Path] = []
    for text in written:
        if not text:
            continue
        path = Path(text)
        for candidate in (path, folder / path, folder / path.name):
            if candidate not in found:
                found.append(candidate)
    return found


def open_run(folder: str | Path, name: str | None = None) -> RunView:
    """Read the run folder and join its rows with the records of its data file."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise MedvlError(f"{folder}: no such run folder; pass a folder written by 'medvl eval run'")
    view = RunView(run=load_run(folder, name))
    candidates = data_candidates(folder)
    for path in candidates:
        if path.is_file():
            try:
                view.records = {r.id: r for r in read_records(path)}
            except MedvlError as exc:
                view.note = f"data file {path} could not be read ({exc}); no questions or images"
                return view
            view.data_path = path
            break
    else:
        where = ", ".join(str(p) for p in candidates[:3]) or "run.json/metrics.json name none"
        view.note = f"data file not found ({where}); rows shown without questions and images"
    return view

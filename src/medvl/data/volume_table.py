"""Canonical records from a folder of CT/MRI volumes and a CSV of questions or reports.

The CSV has one row per record. Columns:

* ``volume`` (required): a DICOM series folder, a multi-frame DICOM file or a ``.nii``/
  ``.nii.gz`` file, relative to the volumes' root folder;
* ``question`` and ``answer`` (visual question answering), or ``report`` (report generation:
  the question asks for the findings, in the report's language);
* optional ``id``, ``answer_type`` (default: ``closed`` for yes/no answers, else ``open``),
  ``question_type``, ``split`` (default ``train``), ``lang`` (default: ``zh`` when the text
  holds Chinese, else ``en``), ``series_uid`` (needed when a folder holds several series).

Each record has one ``<video>`` (see :mod:`medvl.data.video`), with the paths written relative
to the output file's folder, and ``meta`` carries the patient, study and series ids read from
the DICOM headers (``patient_id``, ``study_uid``, ``series_uid``: what patient-level splits
group by), the volume path, its slice count, the ordering rule and any warning (a missing
slice). Only headers are read here; pixels are decoded when the records are used. A bad row is
skipped with its row number (the header is row 1) and the reason.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.data.medimage import NIFTI_SUFFIXES, image_kind
from medvl.data.record import Message, Record
from medvl.data.video import VIDEO_PLACEHOLDER, VideoFieldError, VideoSpec
from medvl.data.volumes import describe_video
from medvl.errors import MedvlError

REPORT_PROMPTS = {
    "en": "Describe the findings of this {what} as a radiology report.",
    "zh": "请根据这组{what}影像写出影像所见报告。",
}
_WHAT = {"en": {"CT": "CT scan", "MR": "MRI scan"}, "zh": {"CT": "CT", "MR": "MRI"}}
_CLOSED = {"yes", "no", "是", "否"}


@dataclass
class VolumeTable:
    """How to read the table: the volumes' root, and the video settings of every record."""

    root: Path
    dataset: str = "volumes"
    axis: str = "axial"
    sample: dict[str, Any] = field(default_factory=dict)
    window: str | list[float] | None = None


@dataclass
class TableResult:
    """The records built and the rows skipped as ``(row number, reason)``."""

    records: list[Record] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)


def records_from_table(table: Path, settings: VolumeTable, out_dir: Path) -> TableResult:
    """Read ``table`` (CSV) into records whose paths are relative to ``out_dir``."""
    rows, columns = _read_csv(table)
    if "volume" not in columns:
        raise MedvlError(f"{table}: no 'volume' column (columns: {', '.join(columns) or 'none'})")
    if "report" not in columns and not {"question", "answer"} <= set(columns):
        raise MedvlError(f"{table}: needs 'question' and 'answer' columns, or a 'report' column")
    result, seen = TableResult(), set()
    for number, row in rows:
        try:
            record = _record(row, number, settings, out_dir)
            if record.id in seen:
                raise MedvlError(f"duplicate id {record.id!r}")
        except (MedvlError, VideoFieldError) as exc:
            result.skipped.append((number, str(exc)))
            continue
        seen.add(record.id)
        result.records.append(record)
    return result


def _read_csv(table: Path) -> tuple[list[tuple[int, dict[str, str]]], list[str]]:
    try:
        with open(table, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            rows = [
                (n, {k.strip(): (v or "").strip() for k, v in row.items() if k})
                for n, row in enumerate(reader, start=2)
            ]
            columns = [c.strip() for c in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MedvlError(f"{table}: cannot read the CSV ({exc})") from exc
    return rows, columns


def _record(row: dict[str, str], number: int, settings: VolumeTable, out_dir: Path) -> Record:
    spec = _spec(row, settings, out_dir)
    facts = describe_video(spec, out_dir)
    meta: dict[str, Any] = {**facts.meta, "volume": row["volume"], "slices": facts.count}
    if facts.spacing_mm:
        meta["spacing_mm"] = round(facts.spacing_mm, 4)
    if facts.order_rule:
        meta["order_rule"] = facts.order_rule
    if facts.warnings:
        meta["warnings"] = facts.warnings
    report = row.get("report", "")
    question, answer = row.get("question", ""), row.get("answer", "")
    if not question and report:
        lang = row.get("lang") or _guess_lang(report)
        question, answer = _report_prompt(lang, meta.get("modality")), report
        kind = {"answer_type": "open", "question_type": "report"}
    else:
        if not question or not answer:
            raise MedvlError("empty 'question' or 'answer' (and no 'report')")
        lang = row.get("lang") or _guess_lang(question, answer)
        closed = answer.strip().lower().rstrip(".") in _CLOSED
        kind = {
            "answer_type": row.get("answer_type") or ("closed" if closed else "open"),
            "question_type": row.get("question_type") or None,
        }
    try:
        return Record(
            id=row.get("id") or f"{settings.dataset}-{number - 1:05d}",
            dataset=settings.dataset,
            split=row.get("split") or "train",
            lang=lang,
            images=[],
            messages=[
                Message("user", f"{VIDEO_PLACEHOLDER}\n{question}"),
                Message("assistant", answer),
            ],
            answer=answer,
            meta=meta,
            videos=[spec],
            **kind,
        )
    except ValueError as exc:  # FieldError: a bad split, lang or answer_type cell
        raise MedvlError(str(exc)) from exc


def _spec(row: dict[str, str], settings: VolumeTable, out_dir: Path) -> VideoSpec:
    name = row.get("volume", "")
    if not name:
        raise MedvlError("empty 'volume'")
    path = settings.root / name
    if path.is_dir() or (path.is_file() and image_kind(path) == "dicom"):
        kind = "series"
    elif path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES):
        kind = "volume"
    elif not path.exists():
        raise MedvlError(f"{path}: not found under the root folder {settings.root}")
    else:
        raise MedvlError(f"{path}: not a DICOM series folder, DICOM file or NIfTI file")
    entry: dict[str, Any] = {kind: os.path.relpath(path, out_dir), "axis": settings.axis}
    if settings.sample:
        entry["sample"] = dict(settings.sample)
    if settings.window is not None:
        entry["window"] = settings.window
    if row.get("series_uid"):
        entry["series_uid"] = row["series_uid"]
    return VideoSpec.from_dict(entry)


def _report_prompt(lang: str, modality: str | None) -> str:
    words = _WHAT["zh" if lang == "zh" else "en"]
    what = words.get(modality or "", "CT/MRI" if lang == "zh" else "scan")
    return REPORT_PROMPTS["zh" if lang == "zh" else "en"].format(what=what)


def _guess_lang(*texts: str) -> str:
    from medvl.data.formats.base import guess_lang

    return guess_lang(*texts)

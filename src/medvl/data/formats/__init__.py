"""Readers of the public medical VLM formats into canonical records, and writers out of them.

``convert("slake", Path("Slake1.0"), Path("data/slake.jsonl"), lang="en")`` reads a dataset as
its publisher ships it (its folder, or one of its files) and writes canonical JSONL atomically.

* **Splits** come from the source: the file name (``testset.json``, ``test_2.csv``,
  ``GMAI-MMBench_VAL.tsv``) or a field the publisher wrote (VQA-RAD's ``phrase_type`` in the
  single public JSON, R2Gen's split lists). ``split=`` and ``lang=`` are filters on those values
  and never relabel a record; :class:`ConvertReport` counts what each filter removed.
* **Failures**: broken records (missing image, answer matching no option, bad JSON or
  non-UTF-8 line) are skipped and listed by id; the valid ones still go through.
  :meth:`ConvertReport.failure` says why a run counts as failed: nothing kept (an existing
  output is then left as it was) or an input cut short (the records before the cut are written).
* **Image paths** in the output are relative to the output file's folder, ``../`` included,
  so a converted set moves with its images; absolute only when the two share nothing but the
  filesystem root (see :func:`~medvl.data.formats.base.output_path`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from medvl.data.formats.base import Candidate, ReadContext, Skipped, SkipRecord, normalise_split
from medvl.data.formats.convert_report import ConvertReport
from medvl.data.formats.gmai_mmbench import read_gmai_mmbench
from medvl.data.formats.huatuo import read_huatuo
from medvl.data.formats.iu_xray import read_iu_xray
from medvl.data.formats.llava import read_llava
from medvl.data.formats.omnimedvqa import omnimedvqa_root, read_omnimedvqa
from medvl.data.formats.pmc_vqa import read_pmc_vqa
from medvl.data.formats.sharegpt import COLUMN_OPTIONS, TAG_OPTIONS, read_sharegpt
from medvl.data.formats.slake import read_slake
from medvl.data.formats.vqa_export import read_pathvqa, read_vqa_export
from medvl.data.formats.vqa_rad import read_vqa_rad
from medvl.data.jsonl import write_records
from medvl.data.record import Record
from medvl.data.select import Selection, Where, parse_where, sample_records
from medvl.errors import ConfigError, MedvlError, UnknownNameError
from medvl.progress import ProgressFn

logger = logging.getLogger(__name__)
Reader = Callable[[ReadContext], Iterable[Candidate | Skipped]]
_LANG_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")  # as medvl.data.record validates
_WRITERS = ("to_llava", "to_sharegpt", "to_trl")


def __getattr__(name: str) -> Any:
    """The writers, imported on first use (they pull in ``datasets``, slow to import)."""
    if name in _WRITERS:
        from medvl.data.formats import writers

        return getattr(writers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def input_folder(path: Path) -> Path:
    """The default image root: the input folder itself, or the input file's folder."""
    return path if path.is_dir() else path.parent


@dataclass(frozen=True)
class FormatSpec:
    """One readable format: its reader, a one-line description and the options it takes."""

    name: str
    description: str
    read: Reader
    options: tuple[str, ...] = ()
    image_root: Callable[[Path], Path] = input_folder


_SPECS = (
    FormatSpec(
        "llava",
        "LLaVA/2U1 JSON (id, image, conversations human/gpt): LLaVA-Med, Qilin/ChiMed-VL",
        read_llava,
        ("dataset",),
    ),
    FormatSpec(
        "sharegpt",
        "LLaMA-Factory sharegpt JSON (conversations|messages + images; tags configurable)",
        read_sharegpt,
        ("dataset", "dataset_info", "dataset_name", *COLUMN_OPTIONS, *TAG_OPTIONS),
    ),
    FormatSpec("slake", "SLAKE 1.0 folder or split JSON + imgs/ (en/zh via q_lang)", read_slake),
    FormatSpec(
        "vqa_rad",
        "VQA-RAD data_RAD/ folder (trainset/testset.json), public JSON, or HF export folder",
        read_vqa_rad,
    ),
    FormatSpec("pathvqa", "PathVQA export folder or split file (yes/no = closed)", read_pathvqa),
    FormatSpec(
        "vqa_export",
        "any image/question/answer export folder or file (.json/.jsonl/.csv); dataset= names it",
        read_vqa_export,
        ("dataset",),
    ),
    FormatSpec("pmc_vqa", "PMC-VQA folder (test_2/train_2.csv) or one of its CSVs", read_pmc_vqa),
    FormatSpec(
        "omnimedvqa",
        "OmniMedVQA root (QA_information/*/*.json + Images/) or one QA JSON",
        read_omnimedvqa,
        image_root=omnimedvqa_root,
    ),
    FormatSpec(
        "gmai_mmbench",
        "GMAI-MMBench VLMEvalKit TSV (base64 images decoded to <out folder>/images)",
        read_gmai_mmbench,
    ),
    FormatSpec(
        "huatuo",
        "HuatuoGPT-Vision evaluation bundle JSON, or MedVLM-R1 problem/solution JSON",
        read_huatuo,
    ),
    FormatSpec(
        "iu_xray",
        "IU-Xray/OpenI reports (R2Gen annotation.json, openi-en/zh.json, Kaggle indiana_*.csv, "
        "jsonl/csv)",
        read_iu_xray,
        ("dataset", "prompt", "views"),
    ),
)
FORMATS: MappingProxyType[str, FormatSpec] = MappingProxyType({s.name: s for s in _SPECS})
COMMON_OPTIONS = ("image_out_dir",)


def list_formats() -> list[tuple[str, str]]:
    """``(name, one-line description)`` for every format :func:`convert` reads."""
    return [(spec.name, spec.description) for spec in FORMATS.values()]


def get_format(name: str | FormatSpec) -> FormatSpec:
    """The spec of format ``name``; :class:`UnknownNameError` listing the known ones otherwise.

    A :class:`FormatSpec` is returned as is (readers defined outside this package)."""
    if isinstance(name, FormatSpec):
        return name
    if name not in FORMATS:
        raise UnknownNameError("format", name, list(FORMATS))
    return FORMATS[name]


def convert(
    format: str | FormatSpec,
    input: Path,
    out: Path,
    *,
    image_root: Path | None = None,
    lang: str | None = None,
    split: str | None = None,
    where: str | None = None,
    sample: int | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    **options: Any,
) -> ConvertReport:
    """Read ``input`` in ``format`` and write canonical JSONL to ``out`` (atomically).

    ``image_root`` is where relative image paths are looked up (default: the input's folder);
    ``lang`` and ``split`` keep only the records whose language / split (as the source records
    it, see the module docstring) is that one. ``where`` keeps the records matching a filter
    expression and ``sample`` draws that many of the rest with ``seed`` (see
    :mod:`medvl.data.select`). ``options`` are format-specific (see :data:`FORMATS`), plus
    ``image_out_dir`` for formats that carry images inline. When no record is kept, ``out`` is
    left as it was; check :meth:`ConvertReport.failure`. ``progress(done, None)`` is called
    for each source record read (the total is not known in advance).
    """
    spec = get_format(format)
    Selection(where=where, sample=sample, seed=seed)  # refuse a bad expression or size first
    ctx = _context(spec, Path(input), Path(out), image_root, lang, split, options)
    report = ConvertReport(format=spec.name, input=ctx.input, out=Path(out))
    report.wanted = {k: v for k, v in (("lang", ctx.lang), ("split", ctx.split)) if v}
    if where is not None:
        report.wanted["where"] = shlex.quote(where)
    items = _counted(spec.read(ctx), progress)
    records = _accepted(items, ctx, report, parse_where(where) if where else None)
    if sample is not None:
        report.wanted.update(sample=str(sample), seed=str(seed))
        matched = list(records)
        drawn = sample_records(matched, sample, seed)
        report.sampled_out = len(matched) - len(drawn)
        records = iter(drawn)
    with contextlib.suppress(_NothingKept):
        report.written = write_records(out, _kept(records))
    logger.info(report.summary())
    return report


def _counted(items: Iterable[Any], progress: ProgressFn | None) -> Iterator[Any]:
    """``items``, calling ``progress(n, None)`` as the n-th is read (the total is unknown)."""
    for n, item in enumerate(items, 1):
        if progress is not None:
            progress(n, None)
        yield item


class _NothingKept(Exception):
    """Raised at the end of an empty conversion so that the atomic write leaves ``out`` alone."""


def _kept(records: Iterable[Record]) -> Iterator[Record]:
    empty = True
    for record in records:
        empty = False
        yield record
    if empty:
        raise _NothingKept


def _context(
    spec: FormatSpec,
    input: Path,
    out: Path,
    image_root: Path | None,
    lang: str | None,
    split: str | None,
    options: dict[str, Any],
) -> ReadContext:
    if not input.exists():
        raise MedvlError(f"{input}: no such file or folder")
    if out.exists() and out.resolve() == input.resolve():
        raise ConfigError(f"--out {out} is the input file; write to a new .jsonl file")
    unknown = sorted(set(options) - set(spec.options) - set(COMMON_OPTIONS))
    if unknown:
        allowed = ", ".join((*spec.options, *COMMON_OPTIONS))
        raise ConfigError(f"format {spec.name!r} has no option {unknown[0]!r}; options: {allowed}")
    if lang is not None and not _LANG_CODE.match(lang):
        raise ConfigError(f"--lang {lang!r} is not a language code such as 'en' or 'zh'")
    if image_root is not None and not Path(image_root).is_dir():
        raise MedvlError(f"--image-root {image_root}: no such folder")
    image_out_dir = options.pop("image_out_dir", None) or out.parent / "images"
    return ReadContext(
        input=input,
        out_dir=out.parent,
        image_root=Path(image_root) if image_root is not None else spec.image_root(input),
        image_out_dir=Path(image_out_dir),
        lang=lang,
        split=normalise_split(split) if split else None,
        options=options,
    )


def _accepted(
    items: Iterable[Candidate | Skipped],
    ctx: ReadContext,
    report: ConvertReport,
    where: Where | None = None,
) -> Iterator[Record]:
    """Build, filter and de-duplicate the reader's candidates, reporting every skip.

    The filters look at the candidate's language and split when the reader knows them up front
    (no image is looked up for a record that is filtered out), else at the built record's;
    ``where`` looks at the built record."""
    seen: set[str] = set()
    for item in items:
        report.read += 1
        if isinstance(item, Skipped):
            report.skip(item.key, item.reason, truncated=item.truncated)
            continue
        if _filtered(item.lang, item.split, ctx, report):
            continue
        try:
            record = item.build()
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            report.skip(item.key, _reason(exc))
            continue
        if _filtered(record.lang, record.split, ctx, report):
            continue
        if where is not None and not where(record):
            report.remove("where", where.values(record))
            continue
        if record.id in seen:
            record.id = _unique(record.id, seen)
            report.renamed += 1
        seen.add(record.id)
        yield record


def _filtered(lang: str | None, split: str | None, ctx: ReadContext, report: ConvertReport) -> bool:
    """Whether a record of this language and split is removed (and counted) by a filter."""
    if ctx.lang and lang and lang != ctx.lang:
        report.remove("lang", lang)
        return True
    if ctx.split and split and normalise_split(split) != ctx.split:
        report.remove("split", split)
        return True
    return False


def _unique(record_id: str, seen: set[str]) -> str:
    n = 2
    while f"{record_id}#{n}" in seen:
        n += 1
    logger.warning("duplicate id %r renamed to %r", record_id, f"{record_id}#{n}")
    return f"{record_id}#{n}"


def _reason(exc: Exception) -> str:
    if isinstance(exc, SkipRecord):
        return str(exc)
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    if isinstance(exc, ValueError):  # FieldError and friends already say which field
        return f"invalid record: {exc}"
    return f"{type(exc).__name__}: {exc}"


__all__ = [
    "FORMATS",
    "ConvertReport",
    "FormatSpec",
    "convert",
    "get_format",
    "list_formats",
    "to_llava",
    "to_sharegpt",
    "to_trl",
]

"""Readers of the public medical VLM formats into canonical records, and writers out of them.

``convert("slake", Path("Slake1.0"), Path("data/slake.jsonl"), lang="en")`` reads a dataset as
its publisher ships it and writes canonical JSONL atomically. Broken records (missing image,
answer matching no option, bad JSON or non-UTF-8 line) are skipped and listed by id in the
returned :class:`ConvertReport`; the valid ones still go through. Image paths in the output are
relative to the output file's folder (or absolute when the two share no folder but the root).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from medvl.data.formats.base import (
    Candidate,
    ConvertReport,
    ReadContext,
    Skipped,
    SkipRecord,
    normalise_split,
)
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
from medvl.errors import ConfigError, MedvlError, UnknownNameError

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
        "VQA-RAD public JSON + image folder, or its image/question/answer export",
        read_vqa_rad,
    ),
    FormatSpec("pathvqa", "PathVQA image/question/answer export (yes/no = closed)", read_pathvqa),
    FormatSpec(
        "vqa_export",
        "any image/question/answer export (.json/.jsonl/.csv); dataset= names it",
        read_vqa_export,
        ("dataset",),
    ),
    FormatSpec("pmc_vqa", "PMC-VQA CSV (Figure_path, Question, Choice A-D, Answer)", read_pmc_vqa),
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
        "IU-Xray/OpenI reports (R2Gen annotation.json, openi-en/zh.json, jsonl/csv)",
        read_iu_xray,
        ("dataset", "prompt"),
    ),
)
FORMATS: MappingProxyType[str, FormatSpec] = MappingProxyType({s.name: s for s in _SPECS})
COMMON_OPTIONS = ("image_out_dir",)


def list_formats() -> list[tuple[str, str]]:
    """``(name, one-line description)`` for every format :func:`convert` reads."""
    return [(spec.name, spec.description) for spec in FORMATS.values()]


def get_format(name: str) -> FormatSpec:
    """The spec of format ``name``; :class:`UnknownNameError` listing the known ones otherwise."""
    if name not in FORMATS:
        raise UnknownNameError("format", name, list(FORMATS))
    return FORMATS[name]


def convert(
    format: str,
    input: Path,
    out: Path,
    *,
    image_root: Path | None = None,
    lang: str | None = None,
    split: str | None = None,
    **options: Any,
) -> ConvertReport:
    """Read ``input`` in ``format`` and write canonical JSONL to ``out`` (atomically).

    ``image_root`` is where relative image paths are looked up (default: the input's folder);
    ``lang`` keeps only records in that language; ``split`` keeps one split of inputs that hold
    several (a SLAKE folder, VQA-RAD's public JSON, R2Gen's annotation.json) and otherwise names
    the split written (default: guessed from the file name). ``options`` are format-specific
    (see :data:`FORMATS`), plus ``image_out_dir`` for formats that carry images inline.
    """
    spec = get_format(format)
    ctx = _context(spec, Path(input), Path(out), image_root, lang, split, options)
    report = ConvertReport(format=spec.name, input=ctx.input, out=Path(out))
    report.written = write_records(out, _accepted(spec.read(ctx), ctx, report))
    logger.info(report.summary())
    return report


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
        split=split,
        options=options,
    )


def _accepted(
    items: Iterable[Candidate | Skipped], ctx: ReadContext, report: ConvertReport
) -> Iterator[Record]:
    """Build, filter and de-duplicate the reader's candidates, reporting every skip."""
    seen: set[str] = set()
    wanted_split = normalise_split(ctx.split) if ctx.split else None
    for item in items:
        report.read += 1
        if isinstance(item, Skipped):
            report.skip(item.key, item.reason)
            continue
        if (ctx.lang and item.lang and item.lang != ctx.lang) or (
            wanted_split and item.split and item.split != wanted_split
        ):
            report.filtered += 1
            continue
        try:
            record = item.build()
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            report.skip(item.key, _reason(exc))
            continue
        if ctx.lang and record.lang != ctx.lang:
            report.filtered += 1
            continue
        if record.id in seen:
            record.id = _unique(record.id, seen)
            report.renamed += 1
        seen.add(record.id)
        yield record


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

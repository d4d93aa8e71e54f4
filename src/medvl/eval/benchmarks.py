"""The benchmarks ``medvl eval run`` knows: one small frozen definition each.

A :class:`Benchmark` says how to read the data as its publisher ships it (a
:mod:`medvl.data.formats` reader plus the language and split to keep), which prompt template it
is asked with by default (:mod:`medvl.eval.prompts`), the metrics and breakdown keys it is scored
with (:mod:`medvl.eval.scoring`), how many tokens a reply may take, and what papers report.

Formats the data layer has no reader for are read here (MedXpertQA-MM, :func:`read_medxpertqa`).
``canonical`` means a canonical JSONL file used as is (``phantom``, ``custom``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import MappingProxyType

from medvl.data.formats import FormatSpec, convert
from medvl.data.formats.base import (
    Candidate,
    ReadContext,
    Skipped,
    SkipRecord,
    is_missing,
    normalise_split,
    qa_record,
    split_label,
    text_field,
)
from medvl.data.formats.chat import image_list
from medvl.data.formats.convert_report import ConvertReport
from medvl.data.formats.sources import object_rows, require_file
from medvl.data.record import Record
from medvl.errors import ConfigError, UnknownNameError
from medvl.eval.prompts import TEMPLATES

CANONICAL = "canonical"
VQA_METRICS = ("closed_accuracy", "exact_match", "token_f1", "token_recall", "open_recall_llava")
MCQ_METRICS = ("mcq_accuracy",)
REPORT_METRICS = (
    "bleu_1",
    "bleu_2",
    "bleu_3",
    "bleu_4",
    "rouge_l",
    "corpus_bleu",
    "cider_d",
    "chexpert_f1",
    "chexpert_macro_f1",
    "chexpert_record_f1",
)
_CHOICES_RE = re.compile(r"\s*Answer Choices:.*\Z", re.DOTALL)


@dataclass(frozen=True)
class DataReader:
    """How a benchmark's files become canonical records.

    ``format`` is a :func:`medvl.data.formats.convert` format, a reader of
    :data:`LOCAL_READERS`, or ``canonical``; ``lang`` and ``split`` keep those records only;
    ``options`` are the format's options; ``expects`` says what ``--data`` should point at.
    """

    format: str
    lang: str | None = None
    split: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    expects: str = ""

    def label(self) -> str:
        """``slake (lang=en, split=test)``."""
        filters = [f"{k}={v}" for k, v in (("lang", self.lang), ("split", self.split)) if v]
        return f"{self.format} ({', '.join(filters)})" if filters else self.format

    def wants(self, record: Record) -> bool:
        """Whether a canonical record is in this reader's language and split."""
        if self.lang and record.lang != self.lang:
            return False
        return not self.split or normalise_split(record.split) == normalise_split(self.split)

    def mismatch(self, records: Sequence[Record]) -> str:
        """What ``records`` hold instead of this reader's language/split: ``all 2 records are
        lang=zh``, or ``1 records are split=train, 3 records are lang=zh``."""
        found: Counter = Counter()
        for record in records:
            if self.lang and record.lang != self.lang:
                found[f"lang={record.lang}"] += 1
            elif self.split and normalise_split(record.split) != normalise_split(self.split):
                found[f"split={record.split}"] += 1
        if len(found) == 1 and sum(found.values()) == len(records):
            return f"all {len(records)} records are {next(iter(found))}"
        return ", ".join(f"{n} records are {value}" for value, n in sorted(found.items()))

    def convert(self, input: Path, out: Path, image_root: Path | None = None) -> ConvertReport:
        """Read ``input`` and write canonical JSONL to ``out`` (images decoded next to it).

        The reader's ``lang`` and ``split`` filter the records by what the source says; they
        never relabel them (see :mod:`medvl.data.formats`)."""
        local = LOCAL_READERS.get(self.format)
        options = tuple(k for k, _ in self.options)
        fmt = FormatSpec(self.format, self.expects, local, options) if local else self.format
        return convert(
            fmt,
            input,
            out,
            image_root=image_root,
            lang=self.lang,
            split=self.split,
            **dict(self.options),
        )


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its reader, default prompt, metrics, breakdowns and reply length."""

    name: str
    description: str
    reader: DataReader
    kinds: str
    prompt: str = "as_is"
    metrics: tuple[str, ...] | None = None  # None: the scorer's default set
    breakdown: tuple[str, ...] = ()
    max_new_tokens: int = 32
    official: str = ""

    def __post_init__(self) -> None:
        if self.prompt not in TEMPLATES:
            raise ConfigError(
                f"benchmark {self.name!r}: prompt {self.prompt!r} is not a template; "
                f"use one of {', '.join(TEMPLATES)}"
            )
        if self.max_new_tokens < 1:
            raise ConfigError(f"benchmark {self.name!r}: max_new_tokens must be >= 1")

    @property
    def format(self) -> str:
        return self.reader.format

    @property
    def keys(self) -> tuple[str, ...]:
        """The breakdown keys (the name ``medvl eval score --bench`` used)."""
        return self.breakdown


def read_medxpertqa(ctx: ReadContext) -> Iterator[Candidate | Skipped]:
    """MedXpertQA ``MM/test.jsonl``: ``id``, ``question`` (choices embedded after "Answer
    Choices:"), ``options`` {A..E}, ``label``, ``images`` (under ``images/``, next to the file or
    one folder up), ``medical_task``, ``body_system``, ``question_type``."""
    path = require_file(ctx.input, "MedXpertQA MM/test.jsonl (or dev.jsonl)")
    split = split_label(ctx, path, "test")
    for item in object_rows(path):
        if isinstance(item, Skipped):
            yield item
            continue
        _, key, row = item
        native = row.get("id")
        record_id = f"medxpertqa-{native}" if not is_missing(native) else f"medxpertqa-{key}"
        yield Candidate(record_id, partial(_medxpertqa_record, ctx, row, record_id, split), "en")


def _medxpertqa_record(ctx: ReadContext, row: dict, record_id: str, split: str) -> Record:
    raw = row.get("options")
    if not isinstance(raw, dict):
        raise SkipRecord("'options' must be an object such as {'A': '...', 'B': '...'}")
    options = {str(k).strip().upper(): str(v).strip() for k, v in raw.items() if not is_missing(v)}
    if len(options) < 2:
        raise SkipRecord(f"only {len(options)} non-empty option(s)")
    label = text_field(row, "label", required=False)
    if label is not None and label.upper() not in options:
        raise SkipRecord(f"label {label!r} is not one of the options {sorted(options)}")
    question = _CHOICES_RE.sub("", text_field(row, "question"))
    used = {"question", "options", "label", "images"}
    return qa_record(
        record_id=record_id,
        dataset="medxpertqa_mm",
        split=split,
        lang="en",
        images=[ctx.image(p, ("images", "../images")) for p in image_list(row.get("images"))],
        question=question,
        answer=label.upper() if label else None,
        options=options,
        answer_type="closed",
        question_type=text_field(row, "question_type", required=False),
        meta={k: v for k, v in row.items() if k not in used},
    )


#: Readers for formats ``medvl.data.formats`` does not have (name -> read function).
LOCAL_READERS = MappingProxyType({"medxpertqa": read_medxpertqa})


_SLAKE = "the SLAKE 1.0 folder (train/validation/test.json + imgs/)"
_HUATUO = "a HuatuoGPT-Vision / MedVLM-R1 JSON with its images/ folder"
_BENCHMARKS = (
    Benchmark(
        "slake",
        "SLAKE 1.0 test, English: closed + open VQA on CT, MRI, X-ray",
        DataReader("slake", lang="en", split="test", expects=_SLAKE),
        "closed + open",
        prompt="short_answer",
        metrics=VQA_METRICS,
        breakdown=("modality", "location", "content_type", "base_type"),
        official="exact match overall, closed/open, per modality and content type (lmms-eval)",
    ),
    Benchmark(
        "slake_zh",
        "SLAKE 1.0 test, Chinese",
        DataReader("slake", lang="zh", split="test", expects=_SLAKE),
        "closed + open",
        prompt="short_answer",
        metrics=VQA_METRICS,
        breakdown=("modality", "location", "content_type", "base_type"),
        official="exact match overall, closed/open, per modality (lmms-eval slake_zh)",
    ),
    Benchmark(
        "vqa_rad",
        "VQA-RAD test: closed + open radiology VQA",
        DataReader(
            "vqa_rad",
            split="test",
            expects="the data_RAD folder (trainset.json, testset.json, images/) or its "
            "testset.json, 'VQA_RAD Dataset Public.json' (+ 'VQA_RAD Image Folder'), or the "
            "export folder (test.json + images/)",
        ),
        "closed + open",
        metrics=VQA_METRICS,
        breakdown=("image_organ", "phrase_type"),
        max_new_tokens=64,
        official="closed accuracy; open token recall (LLaVA-Med)",
    ),
    Benchmark(
        "pathvqa",
        "PathVQA test: pathology VQA, yes/no questions closed",
        DataReader(
            "pathvqa",
            split="test",
            expects="the PathVQA export folder (test.json + images/) or its test.json/.jsonl/.csv",
        ),
        "closed + open",
        metrics=VQA_METRICS,
        max_new_tokens=64,
        official="closed (yes/no) accuracy; open recall",
    ),
    Benchmark(
        "pmc_vqa",
        "PMC-VQA test: 4-option MCQ on PubMed Central figures",
        DataReader(
            "pmc_vqa",
            split="test",
            expects="the PMC-VQA folder (test_2.csv is read) or a test CSV, with images/",
        ),
        "mcq",
        metrics=MCQ_METRICS,
        official="MCQ accuracy (2k test set, HuatuoGPT-Vision)",
    ),
    Benchmark(
        "omnimedvqa",
        "OmniMedVQA: MCQ over 12 modalities (open-access part as shipped)",
        DataReader("omnimedvqa", expects="the OmniMedVQA root (QA_information/ + Images/)"),
        "mcq",
        metrics=MCQ_METRICS,
        breakdown=("modality_type", "access"),
        official="MCQ accuracy, per modality and question type",
    ),
    Benchmark(
        "gmai_mmbench",
        "GMAI-MMBench VAL: MCQ (A-E) over 38 modalities, 18 tasks, 18 departments",
        DataReader(
            "gmai_mmbench", expects="GMAI-MMBench_VAL.tsv from VLMEvalKit (images inline, base64)"
        ),
        "mcq",
        metrics=MCQ_METRICS,
        breakdown=("clinical vqa task", "department", "perceptual granularity", "modality"),
        official="MCQ accuracy overall and per task/department/granularity (VLMEvalKit)",
    ),
    Benchmark(
        "medvlm_r1",
        "MedVLM-R1 test: 300 MRI + 300 CT + 300 X-ray MCQ from OmniMedVQA",
        DataReader("huatuo", expects=f"MRI_CT_XRAY_300each_dataset.json: {_HUATUO}"),
        "mcq",
        prompt="reasoning",
        metrics=MCQ_METRICS,
        breakdown=("subset",),
        max_new_tokens=512,
        official="accuracy over MRI/CT/X-ray (subset); answer read from <answer> tags",
    ),
    Benchmark(
        "huatuo",
        "HuatuoGPT-Vision evaluation bundle: MCQ from 6 source benchmarks",
        DataReader("huatuo", expects=f"medical_multimodel_evaluation_data.json: {_HUATUO}"),
        "mcq",
        metrics=MCQ_METRICS,
        breakdown=("dataset", "subset"),
        official="MCQ accuracy per source dataset",
    ),
    Benchmark(
        "medxpertqa_mm",
        "MedXpertQA MM test: expert-level 5-option MCQ, reasoning and understanding",
        DataReader("medxpertqa", expects="MedXpertQA MM/test.jsonl with images/ (images.zip)"),
        "mcq",
        metrics=MCQ_METRICS,
        breakdown=("medical_task", "body_system"),
        official="MCQ accuracy, per question type (reasoning/understanding)",
    ),
    Benchmark(
        "iu_xray",
        "IU-Xray test (R2Gen split), English: chest X-ray report generation",
        DataReader(
            "iu_xray",
            lang="en",
            split="test",
            expects="R2Gen annotation.json with images/ (or a .jsonl/.csv of reports)",
        ),
        "report",
        metrics=REPORT_METRICS,
        max_new_tokens=256,
        official="BLEU-1..4, ROUGE-L, METEOR, CIDEr-D; CheXpert F1 (R2Gen and successors)",
    ),
    Benchmark(
        "iu_xray_zh",
        "IU-Xray / OpenI, Chinese reports (XrayQwen2VL openi-zh.json)",
        DataReader("iu_xray", lang="zh", expects="openi-zh.json with images/"),
        "report",
        metrics=REPORT_METRICS,
        max_new_tokens=256,
        official="BLEU-1..4, ROUGE-L (character level)",
    ),
    Benchmark(
        "phantom",
        "medvl's synthetic phantom set (canonical JSONL as written by 'medvl data phantom')",
        DataReader(CANONICAL, expects="a phantom split, e.g. runs/demo/phantom/test.jsonl"),
        "mcq + closed + open",
        breakdown=("modality", "organ"),
        official="medvl's own sanity benchmark (no published numbers)",
    ),
    Benchmark(
        "custom",
        "any canonical JSONL with answers",
        DataReader(CANONICAL, expects="a canonical .jsonl with 'answer' on every record"),
        "any",
        max_new_tokens=256,
        official="-",
    ),
)
BENCHMARKS: MappingProxyType[str, Benchmark] = MappingProxyType({b.name: b for b in _BENCHMARKS})


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name``; :class:`UnknownNameError` listing the known ones otherwise."""
    if name not in BENCHMARKS:
        raise UnknownNameError("benchmark", name, list(BENCHMARKS))
    return BENCHMARKS[name]

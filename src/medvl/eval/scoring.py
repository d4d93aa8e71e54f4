"""Score predictions against canonical records: one row per record, nothing dropped.

Reading the files, choosing the protocol and writing ``scores.jsonl``/``metrics.json`` is
:func:`medvl.eval.scoring_run.score_files`; this module is the per-record scoring it calls.

Predictions are JSONL, one object per line with ``id`` (or ``question_id``) and the model's text
under ``prediction`` (or ``response``, ``output``, ``text``), read by
:mod:`medvl.eval.predictions_file` (which refuses non-UTF-8 lines and lines with no text and no
error). A prediction longer than ``max_prediction_chars`` (default
:data:`DEFAULT_MAX_PREDICTION_CHARS`) is cut to its head before anything reads it (extraction,
metrics, protocols, ``scores.jsonl``): the n-gram and alignment metrics are quadratic in length,
and one 10 MB answer took minutes and 700 MB; the row keeps the original length under
``truncated_from`` and ``metrics.json`` counts and lists the cut ids. Which metrics a record
gets depends on its kind (:func:`record_kind`):

- ``mcq`` (``options`` set): the letter is extracted from the text (``medvl.eval.extract``) and
  ``mcq_accuracy`` is 1 when it equals the gold letter; the rule that matched is kept;
- ``closed``: ``closed_accuracy``; the answer read (``medvl.eval.closed.extract_closed``: "yes",
  "no" or the canonical term) and the rule that read it are kept, as for MCQ; ``open``: the open
  metric set; ``report`` (``question_type == "report"``): the report metrics plus the open text
  metrics.

Metric functions come from the ``medvl.eval.metrics.METRICS`` table, or are passed in
(:class:`Metric`). Bad input is handled so that every data record stays in the denominator: an id
with no prediction scores 0 on every metric and is listed as ``missing``; an empty output is scored
(and is wrong); prediction ids not in the data are listed as ``unknown`` and ignored; a duplicated
id keeps its **first** line and is listed as ``duplicate`` (a resumed run may append a second
answer; the first one is what was scored). Data records with no gold answer are refused.
``accuracy`` per record (``correct``) is the MCQ letter match, ``closed_accuracy`` or the open
``exact_match``; reports have none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.data.record import Record
from medvl.errors import MedvlError, RecordError, UnknownNameError
from medvl.eval.closed import extract_closed
from medvl.eval.clusters import record_cluster
from medvl.eval.extract import extract_choice
from medvl.eval.metrics import METRICS
from medvl.eval.predictions_file import Predictions, status_of
from medvl.eval.protocols import Answer, ScoringProtocol

KINDS = ("mcq", "closed", "open", "report")
#: Predictions longer than this many characters are cut to their head before scoring.
DEFAULT_MAX_PREDICTION_CHARS = 20_000
MCQ_ACCURACY = "mcq_accuracy"
#: The per-record metric that sets ``correct`` (accuracy) for non-MCQ kinds.
PRIMARY = {"closed": "closed_accuracy", "open": "exact_match"}

MetricFn = Callable[..., Any]
Extractor = Callable[[str, Mapping[str, str]], Any]


@dataclass(frozen=True)
class Metric:
    """One metric as scoring uses it: per record ``fn(prediction, reference, *, lang)`` or, when
    ``corpus``, ``fn(predictions, references, *, lang)`` over all records of its kind."""

    name: str
    kind: str
    fn: MetricFn
    corpus: bool = False
    default: bool = True
    languages: tuple[str, ...] | None = None  # None: any language

    def applies_to(self, record_kind: str, lang: str | None = None) -> bool:
        """Open text metrics also apply to reports (a report is open-ended text); a metric
        defined for some languages only skips records in others."""
        if lang is not None and self.languages is not None and lang not in self.languages:
            return False
        return self.kind == record_kind or (self.kind == "open" and record_kind == "report")


def record_kind(record: Record) -> str:
    """``mcq`` (options set), ``report``, ``closed`` or ``open`` (also when answer_type is null;
    run ``medvl data classify`` first to label closed questions)."""
    if record.options:
        return "mcq"
    if record.question_type == "report":
        return "report"
    return "closed" if record.answer_type == "closed" else "open"


def gold_answer(record: Record) -> str | None:
    """The gold answer: ``answer``, else the last assistant turn (never for MCQ)."""
    if record.answer is not None and record.answer.strip():
        return record.answer
    return None if record.options else record.reference


def check_gold(records: Sequence[Record], data_path: str | Path) -> None:
    """Refuse data where some records have no gold answer (they could not be scored)."""
    missing = [r.id for r in records if gold_answer(r) is None]
    if missing:
        shown = ", ".join(repr(i) for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise RecordError(
            f"{data_path}: {len(missing)} of {len(records)} records have no gold answer "
            f"(ids {shown}); scoring needs 'answer' on every record: use a split that ships "
            "answers, or drop those records"
        )


def metric_table() -> dict[str, Metric]:
    """The metrics of ``medvl.eval.metrics.METRICS``, as :class:`Metric`."""
    return {name: as_metric(name, spec) for name, spec in METRICS.items()}


def as_metric(name: str, spec: Any) -> Metric:
    """A :class:`Metric` from a ``MetricSpec``-like object (``fn``, ``kind``, corpus flag)."""
    if isinstance(spec, Metric):
        return spec
    level = getattr(spec, "level", None)
    corpus = bool(getattr(spec, "corpus", False) or getattr(spec, "corpus_level", False))
    corpus = corpus or level == "corpus" or getattr(spec, "per_record", True) is False
    default = bool(getattr(spec, "default", True))
    languages = getattr(spec, "languages", None)
    languages = tuple(languages) if languages is not None else None
    return Metric(getattr(spec, "name", name), spec.kind, spec.fn, corpus, default, languages)


def select_metrics(table: Mapping[str, Metric], names: Sequence[str] | None) -> list[Metric]:
    """The metrics to report: ``names`` (``all`` for every one), else those marked default
    (the table leaves out metrics that need extra data or weights, e.g. METEOR, embeddings)."""
    if not names:
        return [m for m in table.values() if m.default]
    if list(names) == ["all"]:
        return list(table.values())
    allowed = sorted({*table, MCQ_ACCURACY})
    for name in names:
        if name not in allowed:
            raise UnknownNameError("metric", name, allowed)
    return [table[name] for name in names if name in table]


def default_extractor() -> Extractor:
    """The MCQ letter extractor: ``medvl.eval.extract.extract_choice``."""
    return extract_choice


@dataclass(frozen=True)
class Scorer:
    """Everything needed to score one record: selected metrics, all metrics (for the primary
    accuracy), the MCQ extractor and the meta keys to copy into each row."""

    metrics: Sequence[Metric]
    table: Mapping[str, Metric]
    extract: Extractor
    meta_keys: Sequence[str] = ()
    image_dir: Path | None = None  # the data file's folder: images are hashed into clusters
    #: Another tool's rules (``medvl.eval.protocols``); None: medvl's own metrics.
    protocol: ScoringProtocol | None = None
    benchmark: str | None = None
    #: Longer predictions are cut to this many characters (their head); None: no cap.
    max_prediction_chars: int | None = DEFAULT_MAX_PREDICTION_CHARS

    def score(self, record: Record, text: str | None, status: str) -> dict[str, Any]:
        """The scores row of one record; ``text`` is None when the prediction is missing."""
        kind, gold = record_kind(record), gold_answer(record)
        cap, truncated_from = self.max_prediction_chars, None
        if text is not None and cap is not None and len(text) > cap:
            text, truncated_from = text[:cap], len(text)
        row: dict[str, Any] = {
            "id": record.id,
            "dataset": record.dataset,
            "kind": kind,
            "answer_type": record.answer_type,
            "question_type": record.question_type,
            "lang": record.lang,
            "status": status,
            "prediction": text,
            "truncated_from": truncated_from,
            "gold": gold,
            "extracted": None,
            "rule": None,
            "correct": None,
            "metrics": {},
            "meta": _meta_fields(record.meta, self.meta_keys),
            "cluster": record_cluster(record, self.image_dir),
        }
        if self.protocol is not None:
            self._score_protocol(row, record, kind, text)
        elif kind == "mcq":
            self._score_mcq(row, record, text or "", missing=text is None)
        else:
            self._score_text(row, record, kind, text)
        return row

    def _score_protocol(
        self, row: dict[str, Any], record: Record, kind: str, text: str | None
    ) -> None:
        """The protocol's judgment: ``correct`` (None where the tool leaves the record out of
        its denominator), what it read, its rule and its own per-record numbers. A missing
        prediction is judged as an empty answer, as the tool would see a model that said nothing.
        """
        assert self.protocol is not None
        gold = record.answer if kind == "mcq" else row["gold"]
        answer = Answer(
            kind=kind,
            question=record.question,
            prediction=text or "",
            gold=gold or "",
            options=record.options,
            lang=record.lang,
            benchmark=self.benchmark,
        )
        judged = self.protocol.judge(answer)
        row["correct"], row["extracted"], row["rule"] = (
            judged.correct,
            judged.extracted,
            judged.rule,
        )
        row["metrics"] = {name: float(value) for name, value in judged.metrics.items()}

    def _score_mcq(self, row: dict[str, Any], record: Record, text: str, *, missing: bool) -> None:
        letter = None
        if not missing:
            found = self.extract(text, record.options or {})
            letter, row["rule"] = getattr(found, "letter", None), getattr(found, "rule", None)
        row["extracted"] = letter
        row["correct"] = float(letter is not None and letter == record.answer)
        others = [m for m in self._per_record("mcq", record.lang) if m.name != MCQ_ACCURACY]
        row["metrics"] = {MCQ_ACCURACY: row["correct"]}
        row["metrics"].update(
            _values(others, None if missing else letter or "", row["gold"], record.lang)
        )

    def _score_text(self, row: dict[str, Any], record: Record, kind: str, text: str | None) -> None:
        if kind == "closed" and text is not None:  # what closed_accuracy read, and why
            found = extract_closed(text, row["gold"])
            row["extracted"], row["rule"] = found.answer, found.rule
        row["metrics"] = _values(
            self._per_record(kind, record.lang), text, row["gold"], record.lang
        )
        primary = self.table.get(PRIMARY.get(kind, ""))
        if primary is not None:
            value = row["metrics"].get(primary.name)
            if value is None:
                value = _values([primary], text, row["gold"], record.lang).get(primary.name)
            row["correct"] = value

    def _per_record(self, kind: str, lang: str) -> list[Metric]:
        return [m for m in self.metrics if not m.corpus and m.applies_to(kind, lang)]


def _values(
    metrics: Sequence[Metric], prediction: str | None, reference: str, lang: str
) -> dict[str, float]:
    """Each metric's value (0.0 for a missing prediction); a None result is left out."""
    values = {}
    for metric in metrics:
        value = 0.0 if prediction is None else metric.fn(prediction, reference, lang=lang)
        if value is not None:
            values[metric.name] = float(value)
    return values


def _meta_fields(meta: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The requested meta keys, matched case-insensitively (VLMEvalKit lowercases columns)."""
    lowered = {str(k).lower(): v for k, v in meta.items()}
    return {key: meta.get(key, lowered.get(key.lower())) for key in keys}


def corpus_scores(
    rows: Sequence[Mapping[str, Any]], metrics: Sequence[Metric]
) -> dict[str, dict[str, Any]]:
    """Corpus-level metrics over the records of their kind, per language (their n-weighted mean
    is the overall value); missing predictions enter as empty strings."""
    result = {}
    for metric in (m for m in metrics if m.corpus):
        subset = [r for r in rows if metric.applies_to(r["kind"], r["lang"])]
        by_lang: dict[str, dict[str, Any]] = {}
        for lang in sorted({r["lang"] for r in subset}):
            part = [r for r in subset if r["lang"] == lang]
            value = metric.fn(
                [r["prediction"] or "" for r in part], [r["gold"] for r in part], lang=lang
            )
            value = value[0] if isinstance(value, tuple) else value
            by_lang[lang] = {"n": len(part), "value": float(value)}
        total = sum(c["n"] for c in by_lang.values())
        overall = sum(c["n"] * c["value"] for c in by_lang.values()) / total if total else None
        result[metric.name] = {"n": total, "value": overall, "by_lang": by_lang}
    return result


def score_records(
    records: Sequence[Record], predictions: Predictions, scorer: Scorer
) -> list[dict[str, Any]]:
    """One scores row per data record, in data order; refuses when no prediction id matches."""
    ids = {r.id for r in records}
    if records and predictions.texts and not ids & set(predictions.texts):
        raise MedvlError(
            f"{predictions.path}: none of its {len(predictions.texts)} ids match the data "
            f"(e.g. {next(iter(predictions.texts))!r} vs {records[0].id!r}); "
            "were the predictions made on this data file? If another tool numbered them, "
            "map its column to medvl's ids with --id-field NAME or --id-template "
            "(e.g. 'gmai_mmbench-val-{index}')"
        )
    return [scorer.score(r, *status_of(r.id, predictions)) for r in records]

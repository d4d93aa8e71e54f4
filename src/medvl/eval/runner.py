"""Run a model on a benchmark: convert the data, predict, score, and record what was done.

Layout of a run folder ``OUT``::

    data.jsonl            canonical records converted from --data (not written when --data is
                          already canonical JSONL of the benchmark's language and split)
    data.source.json      what data.jsonl was converted from, and the converter's report
    images/               images the converter decoded (GMAI-MMBench's base64 cells)
    predictions/<prompt>-<key>.jsonl   prediction cache, one file per key (see below)
    predictions/<prompt>-<key>.json    the parts of that key, readable
    predictions.jsonl     this run's predictions: the cache lines of the scored records
    data.first-N.jsonl    the scored records when --limit N leaves some out
    data.selected-N.jsonl the scored records when --where/--sample (and --limit) leave some out
    scores.jsonl, metrics.json         written by :func:`medvl.eval.scoring_run.score_files`
    run.json              resolved configuration, hashes, counts, timings, versions

**Conversion cache.** ``data.jsonl`` is reused while ``data.source.json`` matches: same input
fingerprint (a file's SHA-256; for a folder, every file's path and size plus the content of its
.json/.jsonl/.csv/.tsv/.txt files), format, language, split, options, image root and medvl
version, and ``data.jsonl`` still has the hash written there. ``reconvert`` forces it.

**Prediction cache key**: the first 16 hex digits of the SHA-256 of the JSON object
``{model fingerprint id, engine, input settings, prompt template digest, generation settings,
data SHA-256}``; input settings (local models only) are the precision, quantization and image
and video pixel budgets, which change what a model says from the same weights.
Batch size is not part of it (batched greedy outputs equal unbatched ones). Predictions are
written through :func:`medvl.infer.predict.predict_records`, batch by batch with fsync, so a
killed run resumes where it stopped; a run whose records are all in the cache never loads the
model. ``--limit N`` predicts and scores the first N records; a later run without it predicts
only the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medvl.data.jsonl import read_records, write_records
from medvl.data.paths import rebase_images
from medvl.data.record import Record
from medvl.data.select import Selected, Selection
from medvl.errors import ConfigError
from medvl.eval.benchmarks import Benchmark, get_benchmark
from medvl.eval.breakdown import BootstrapSettings
from medvl.eval.prompts import PromptTemplate, resolve_prompt
from medvl.eval.run_data import PreparedData, prepare_data
from medvl.eval.scoring import DEFAULT_MAX_PREDICTION_CHARS, check_gold
from medvl.eval.scoring_run import check_prediction_cap, resolve_protocol, score_files
from medvl.fileio import atomic_write_json, atomic_writer, check_writable_dir
from medvl.infer.engine import Engine, GenerationSettings
from medvl.infer.factory import EngineSpec, open_engine
from medvl.infer.predict import PredictSummary, predict_records, read_prediction_rows
from medvl.provenance import SCORING_PACKAGES, versions

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunConfig:
    """One benchmark run: which benchmark, data, prompt, generation settings, and where to."""

    bench: str = field(metadata={"help": "benchmark name (medvl eval benches)"})
    data: Path = field(metadata={"help": "the benchmark's files as published, or canonical JSONL"})
    out: Path = field(metadata={"help": "run folder (caches live there too)"})
    prompt: str = field(default="default", metadata={"help": "default, custom or a template"})
    system: str | None = field(default=None, metadata={"help": "system prompt text"})
    user_template: str | None = field(default=None, metadata={"help": "custom user turn"})
    settings: GenerationSettings | None = field(
        default=None, metadata={"help": "None: greedy with the benchmark's max_new_tokens"}
    )
    limit: int | None = field(default=None, metadata={"help": "only the first N records"})
    metrics: tuple[str, ...] | None = field(default=None, metadata={"help": "override"})
    breakdown: tuple[str, ...] = field(default=(), metadata={"help": "extra breakdown keys"})
    image_root: Path | None = field(default=None, metadata={"help": "where images are"})
    reconvert: bool = field(default=False, metadata={"help": "convert even if cached"})
    overwrite: bool = field(default=False, metadata={"help": "predict even if cached"})
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)
    protocol: str = field(
        default="medvl", metadata={"help": "scoring protocol (medvl.eval.protocols)"}
    )
    max_prediction_chars: int | None = field(
        default=DEFAULT_MAX_PREDICTION_CHARS,
        metadata={"help": "longer predictions are cut to their head for scoring; None: no cap"},
    )
    where: str | None = field(
        default=None, metadata={"help": "keep records matching this filter (medvl.data.select)"}
    )
    sample: int | None = field(
        default=None, metadata={"help": "score N records drawn with seed (after where)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of sample"})

    def __post_init__(self) -> None:
        check_prediction_cap(self.max_prediction_chars)
        self.selection()  # refuse a bad --where or --sample before any model loads
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be a positive number of records, got {self.limit}")
        if Path(self.out).is_file():
            raise ConfigError(f"--out {self.out} is a file; pass a folder for the run")
        check_writable_dir(self.out)  # before any model loads

    def selection(self) -> Selection:
        """The ``where``/``sample`` selection of this run (inactive when neither is set)."""
        return Selection(where=self.where, sample=self.sample, seed=self.seed)


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_benchmark` wrote and found."""

    out: Path
    run: dict[str, Any]
    metrics: dict[str, Any]
    cached: bool


# ---------------------------------------------------------------- predictions


def cache_key(
    fingerprint: dict[str, Any],
    engine: str,
    template: PromptTemplate,
    settings: GenerationSettings,
    data_sha256: str,
    inputs: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """``(key, parts)``: what identifies a set of predictions (see the module docstring).
    ``inputs``: the engine's :meth:`~medvl.infer.engine.Engine.input_settings` (precision,
    quantization, pixel budgets), left out of the key when the engine has none (a server)."""
    parts = {
        "model": fingerprint.get("id"),
        "engine": engine,
        **({"inputs": inputs} if inputs is not None else {}),
        "prompt": template.digest(),
        "settings": settings.to_dict(),
        "data_sha256": data_sha256,
    }
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16], parts


def _done_ids(path: Path) -> set[str]:
    """Ids with a prediction (not an error) in a cache file."""
    if not path.is_file():
        return set()
    return {row["id"] for row in read_prediction_rows(path) if not row.get("error")}


def _write_run_predictions(cache: Path, ids: Sequence[str], out: Path) -> None:
    """The cache lines of ``ids`` (first line per id), in ``ids`` order."""
    rows: dict[str, dict[str, Any]] = {}
    for row in read_prediction_rows(cache) if cache.is_file() else []:
        rows.setdefault(row["id"], row)
    with atomic_writer(out) as handle:
        for record_id in ids:
            if record_id in rows:
                handle.write(json.dumps(rows[record_id], ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- the run


def run_benchmark(
    config: RunConfig, model: EngineSpec | Engine, *, progress: Progress | None = None
) -> RunResult:
    """Convert (cached), predict (cached, resumable), score, and write ``run.json``.

    ``model`` is an :class:`EngineSpec` (opened only if predictions are missing, closed after)
    or an open :class:`Engine` (left open).
    """
    started, start = datetime.now(timezone.utc), time.perf_counter()
    bench = get_benchmark(config.bench)
    named = scoring_benchmark(bench)
    resolve_protocol(config.protocol, named, config.metrics)  # refuse before predicting
    template = resolve_prompt(
        config.prompt, bench.prompt, system=config.system, user_template=config.user_template
    )
    settings = config.settings or GenerationSettings(max_new_tokens=bench.max_new_tokens)
    out = Path(config.out)
    data = prepare_data(
        bench, config.data, out, image_root=config.image_root, reconvert=config.reconvert
    )
    records = read_records(data.path)
    selected = config.selection().apply(records)
    chosen = selected.check(data.path)
    scored = chosen[: config.limit] if config.limit else chosen
    check_gold(scored, data.path)
    prompted = [template.apply(record) for record in scored]
    step = _Prediction(out, template, settings, data, config.overwrite)
    step.run(model, prompted, progress)
    predictions = out / "predictions.jsonl"
    _write_run_predictions(step.path, [r.id for r in scored], predictions)
    scored_path = data.path
    if len(scored) < len(records):
        kind = "selected" if config.selection().active else "first"
        scored_path = out / f"data.{kind}-{len(scored)}.jsonl"
        write_records(scored_path, rebase_images(scored, data.path.parent, out))
    extra = [k for k in config.breakdown if k not in bench.breakdown]
    result = score_files(
        scored_path,
        predictions,
        out,
        metrics=(config.metrics or bench.metrics) if config.protocol == "medvl" else None,
        breakdown_keys=[*bench.breakdown, *extra],
        bootstrap=config.bootstrap,
        protocol=config.protocol,
        benchmark=named,
        max_prediction_chars=config.max_prediction_chars,
    )
    run = {
        "schema": "medvl.run/1",
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - start, 3),
        "bench": _bench_info(bench),
        "data": {
            **_data_info(config, data, records, scored, scored_path),
            "selection": _selection_info(config, selected),
        },
        "model": _model_info(model, step),
        "prompt": {"name": template.name, "hash": template.digest(), **template.to_dict()},
        "generation": settings.to_dict(),
        "cache": step.info(len(scored)),
        "outputs": {
            name: str(out / name)
            for name in ("run.json", "predictions.jsonl", "scores.jsonl", "metrics.json")
        },
        "versions": versions((*SCORING_PACKAGES, "torch", "transformers", "peft")),
    }
    atomic_write_json(out / "run.json", run)
    return RunResult(out, run, result.metrics, cached=step.summary is None)


class _Prediction:
    """The prediction step: find the cache file of this key, fill in what it lacks."""

    def __init__(
        self,
        out: Path,
        template: PromptTemplate,
        settings: GenerationSettings,
        data: PreparedData,
        overwrite: bool,
    ):
        self.out, self.template, self.settings = out, template, settings
        self.data, self.overwrite = data, overwrite
        self.summary: PredictSummary | None = None
        self.fingerprint: dict[str, Any] = {}
        self.engine = ""

    def run(self, model: EngineSpec | Engine, records: Sequence[Record], progress: Any) -> None:
        engine = model if isinstance(model, Engine) else None
        fingerprint = engine.fingerprint() if engine else model.fingerprint()
        if fingerprint is not None:
            inputs = engine.input_settings() if engine else model.input_settings()
            self._key(fingerprint, engine.name if engine else model.engine, inputs)
            ids = {r.id for r in records}
            if not self.overwrite and ids <= _done_ids(self.path):
                logger.info("%s: all %d predictions cached", self.path, len(ids))
                return
        opened = engine is None
        engine = engine or open_engine(model)
        try:
            self._key(engine.fingerprint(), engine.name, engine.input_settings())  # as loaded
            self.summary = predict_records(
                engine,
                records,
                self.data.path.parent,
                self.path,
                self.settings,
                overwrite=self.overwrite,
                progress=progress,
            )
        finally:
            if opened:
                engine.close()

    def _key(self, fingerprint: dict[str, Any], engine: str, inputs: dict | None) -> None:
        self.fingerprint, self.engine = fingerprint, engine
        self.key, self.parts = cache_key(
            fingerprint, engine, self.template, self.settings, self.data.sha256, inputs
        )
        self.path = self.out / "predictions" / f"{self.template.name}-{self.key}.jsonl"
        described = self.path.with_suffix(".json")
        if not described.is_file():
            body = {"key": self.key, **self.parts, "prompt_template": self.template.to_dict()}
            atomic_write_json(described, body)

    def info(self, n: int) -> dict[str, Any]:
        """The ``cache`` section of run.json."""
        summary = self.summary
        if summary is None:
            status, reused, predicted, errors, seconds = "cached", n, 0, 0, 0.0
        else:
            status = "resumed" if summary.skipped else "predicted"
            reused, predicted, errors = summary.skipped, summary.written, summary.errors
            seconds = round(summary.seconds, 3)
        return {
            "key": self.key,
            "path": str(self.path),
            "parts": self.parts,
            "status": status,
            "reused": reused,
            "predicted": predicted,
            "errors": errors,
            "predict_seconds": seconds,
        }


def _model_info(model: EngineSpec | Engine, step: _Prediction) -> dict[str, Any]:
    described = model.describe() if isinstance(model, EngineSpec) else {}
    return {"fingerprint": step.fingerprint, **described, "engine": step.engine}


def scoring_benchmark(bench: Benchmark) -> str | None:
    """The name the scorer picks a protocol's rules by: None for ``custom`` (any canonical
    JSONL, no rules of its own), so the rules follow each record's kind, as with
    ``medvl eval score`` without ``--bench``."""
    return None if bench.name == "custom" else bench.name


def _bench_info(bench: Benchmark) -> dict[str, Any]:
    return {
        "name": bench.name,
        "description": bench.description,
        "reader": asdict(bench.reader),
        "metrics": list(bench.metrics) if bench.metrics else None,
        "breakdown": list(bench.breakdown),
        "default_prompt": bench.prompt,
        "default_max_new_tokens": bench.max_new_tokens,
    }


def _selection_info(config: RunConfig, selected: Selected) -> dict[str, Any] | None:
    """What ``where``/``sample`` kept, or None when neither was set."""
    if not selected.selection.active:
        return None
    return {
        "where": config.where,
        "sample": config.sample,
        "seed": config.seed if config.sample is not None else None,
        "matched": selected.matched,
        "kept": len(selected.records),
        "summary": selected.summary(config.data),
    }


def _data_info(
    config: RunConfig,
    data: PreparedData,
    records: Sequence[Record],
    scored: Sequence[Record],
    scored_path: Path,
) -> dict[str, Any]:
    return {
        "input": str(Path(config.data).resolve()),
        "source": data.source,
        "path": str(data.path),
        "sha256": data.sha256,
        "conversion": data.status,
        "converter_report": data.report,
        "records": len(records),
        "limit": config.limit,
        "scored": len(scored),
        "scored_path": str(scored_path),
    }

"""Scoring files: read the data and predictions, write ``scores.jsonl`` and ``metrics.json``.

:func:`score_files` is the one path from files to numbers (the ``medvl eval score`` command and
:func:`medvl.eval.runner.run_benchmark` both call it). It resolves the scoring protocol (medvl's
own metrics, or another tool's rules from :mod:`medvl.eval.protocols`), checks the inputs
(every record has a gold answer, the prediction cap is sane), scores each record with
:class:`medvl.eval.scoring.Scorer`, and writes both files atomically; ``metrics.json`` also
records hashes of the inputs, the settings, and the ids that were cut or left unscored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.errors import ConfigError
from medvl.eval.breakdown import DEFAULT_KEYS, RECORD_KEYS, BootstrapSettings, metrics_json
from medvl.eval.predictions_file import read_prediction_texts
from medvl.eval.protocols import DEFAULT_PROTOCOL, ScoringProtocol, check_benchmark, get_protocol
from medvl.eval.scoring import (
    DEFAULT_MAX_PREDICTION_CHARS,
    Extractor,
    Scorer,
    as_metric,
    check_gold,
    corpus_scores,
    default_extractor,
    metric_table,
    score_records,
    select_metrics,
)
from medvl.provenance import file_sha256


def resolve_protocol(
    name: str, benchmark: str | None, metrics: Sequence[str] | None
) -> ScoringProtocol | None:
    """The protocol object that judges answers, or None for medvl's own metrics; refuses a
    benchmark the protocol has no rules for, and ``--metrics`` under another tool's rules."""
    protocol = get_protocol(name)
    check_benchmark(protocol, benchmark)
    if protocol.name == DEFAULT_PROTOCOL:
        return None
    if metrics:
        raise ConfigError(
            f"--metrics applies to the medvl protocol; protocol {name!r} reports its own "
            "numbers (drop --metrics, or score again with --protocol medvl)"
        )
    return protocol


def protocol_info(protocol: ScoringProtocol) -> dict[str, str]:
    """What ``metrics.json`` records of the protocol: its name, title and upstream source."""
    return {"name": protocol.name, "title": protocol.title, "follows": protocol.follows}


def check_prediction_cap(max_chars: int | None) -> None:
    """Refuse a cap that would cut every answer to nothing (None means no cap)."""
    if max_chars is not None and (isinstance(max_chars, bool) or max_chars < 1):
        raise ConfigError(
            f"max_prediction_chars must be a positive number of characters, got {max_chars!r} "
            f"(default {DEFAULT_MAX_PREDICTION_CHARS}; None for no cap)"
        )


@dataclass(frozen=True)
class ScoreRun:
    """What :func:`score_files` wrote: the run folder, its two files and the metrics summary."""

    out_dir: Path
    scores_path: Path
    metrics_path: Path
    metrics: dict[str, Any]


def score_files(
    data_path: str | Path,
    predictions_path: str | Path,
    out_dir: str | Path,
    *,
    metrics: Sequence[str] | None = None,
    breakdown_keys: Sequence[str] = (),
    bootstrap: BootstrapSettings | None = None,
    table: Mapping[str, Any] | None = None,
    extract: Extractor | None = None,
    protocol: str = DEFAULT_PROTOCOL,
    benchmark: str | None = None,
    max_prediction_chars: int | None = DEFAULT_MAX_PREDICTION_CHARS,
    id_field: str | None = None,
    prediction_field: str | None = None,
    id_template: str | None = None,
) -> ScoreRun:
    """Score ``predictions_path`` against ``data_path``; write ``scores.jsonl`` + ``metrics.json``.

    ``predictions_path`` is a JSONL or a CSV/TSV/xlsx table; ``id_field``/``prediction_field``
    name its id and text columns, ``id_template`` builds the id from columns instead (see
    :func:`~medvl.eval.predictions_file.read_prediction_texts`).

    ``table`` (name -> :class:`Metric` or ``MetricSpec``) and ``extract`` default to the real
    ``medvl.eval.metrics.METRICS`` and ``medvl.eval.extract.extract_choice``. ``protocol`` names
    whose rules judge each answer (:mod:`medvl.eval.protocols`; ``medvl`` by default); under
    another tool's protocol the metrics are that tool's, and ``metrics`` must be None.
    ``benchmark`` (a :data:`medvl.eval.benchmarks.BENCHMARKS` name) picks the protocol's rules
    for that benchmark and is recorded in ``metrics.json``. ``max_prediction_chars`` caps each
    prediction (None: no cap); how many were cut, and which, go to ``metrics.json``.
    """
    from medvl.data.jsonl import read_records
    from medvl.fileio import atomic_write_json, atomic_writer

    judge = resolve_protocol(protocol, benchmark, metrics)
    check_prediction_cap(max_prediction_chars)
    records = read_records(data_path)
    check_gold(records, data_path)
    predictions = read_prediction_texts(
        predictions_path,
        id_field=id_field,
        prediction_field=prediction_field,
        id_template=id_template,
    )
    full = {n: as_metric(n, s) for n, s in (table or metric_table()).items()}
    selected = select_metrics(full, metrics) if judge is None else []
    meta_keys = [k for k in breakdown_keys if k not in RECORD_KEYS]
    scorer = Scorer(
        selected,
        full,
        extract or default_extractor(),
        meta_keys,
        Path(data_path).parent,
        protocol=judge,
        benchmark=benchmark,
        max_prediction_chars=max_prediction_chars,
    )
    rows = score_records(records, predictions, scorer)
    keys = [*DEFAULT_KEYS, *(k for k in breakdown_keys if k not in DEFAULT_KEYS)]
    settings = {
        "data": str(Path(data_path).resolve()),
        "data_sha256": file_sha256(data_path),
        "predictions": str(predictions.path.resolve()),
        "predictions_sha256": predictions.sha256,
        "prediction_models": predictions.models,
        "metrics": [m.name for m in selected],
        "breakdown": keys,
        "bootstrap": (bootstrap or BootstrapSettings()).to_dict(),
        "duplicates": "first line kept",
        "benchmark": benchmark,
        "protocol": protocol_info(get_protocol(protocol)),
        "max_prediction_chars": max_prediction_chars,
    }
    body = metrics_json(rows, corpus_scores(rows, selected), predictions, settings)
    left_out = [r["id"] for r in rows if r["correct"] is None and r["kind"] != "report"]
    body["counts"]["not_scored"] = len(left_out)
    body["problems"]["not_scored_ids"] = left_out
    cut = [r["id"] for r in rows if r["truncated_from"] is not None]
    body["counts"]["truncated"] = len(cut)
    body["problems"]["truncated_ids"] = cut
    out_dir = Path(out_dir)
    scores_path, metrics_path = out_dir / "scores.jsonl", out_dir / "metrics.json"
    with atomic_writer(scores_path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_json(metrics_path, body)
    return ScoreRun(out_dir, scores_path, metrics_path, body)

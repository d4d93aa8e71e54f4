"""The model x benchmark table of a report over runs on different benchmarks (VLMEvalKit-style).

Rows are models, columns benchmarks; a cell is the benchmark's headline metric (``accuracy``
when every run of the benchmark has it, else their first common metric) for that model's run,
with its cluster-bootstrap interval, ``n``, ``clusters`` and the **protocol** it was scored
under. Where a benchmark is scored under one protocol and published under another, the numbers
are not comparable, so the protocol travels with every number.

Who a run is (:func:`run_identity`): ``metrics.json`` ``settings["benchmark"]``,
``settings["protocol"]["name"]`` and ``settings["model"]``; else the run folder's ``run.json``
(written by ``medvl eval run``: ``bench.name``, ``protocol``, ``model.model`` or the model
fingerprint id); else the rows' ``dataset`` field (the most common one), the prediction file's
model names and the run name. The protocol defaults to ``medvl``.

The **average** column is the plain mean of a row's cell means (benchmarks weigh equally, as in
the Lingshu and VLMEvalKit tables). It is given only for a row with a cell in every column,
all under one protocol and one headline metric; otherwise it is left empty and the table's note
says why. It has no interval.

Published numbers under the same protocol are listed under the table
(:func:`medvl.eval.published.published_lines`, lines of text).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from medvl.errors import MedvlError
from medvl.eval import published as published_numbers

DEFAULT_PROTOCOL = "medvl"
UNKNOWN_BENCHMARK = "unknown"


def _name(value: Any, *keys: str) -> str | None:
    """A non-empty name from a string, or from the first of ``keys`` in a dict."""
    if isinstance(value, Mapping):
        value = next((value[k] for k in keys if value.get(k)), None)
    if value is None or not str(value).strip():
        return None
    return str(value).strip()


def run_identity(
    name: str,
    metrics: Mapping[str, Any],
    run_json: Mapping[str, Any] | None,
    rows: Sequence[Mapping[str, Any]],
) -> dict[str, str]:
    """``{"benchmark", "model", "protocol"}`` of one run (see the module docstring)."""
    settings = metrics.get("settings") or {}
    run_json = run_json or {}
    datasets = Counter(str(r["dataset"]) for r in rows if r.get("dataset"))
    benchmark = (
        _name(settings.get("benchmark"), "name")
        or _name(run_json.get("bench"), "name")
        or (datasets.most_common(1)[0][0] if datasets else None)
        or UNKNOWN_BENCHMARK
    )
    protocol = (
        _name(settings.get("protocol"), "name")
        or _name(run_json.get("protocol"), "name")
        or DEFAULT_PROTOCOL
    )
    fingerprint = (run_json.get("model") or {}).get("fingerprint") or {}
    model = (
        _name(settings.get("model"), "name", "model", "id")
        or _name(run_json.get("model"), "model")
        or _name(fingerprint, "id")
        or _name(", ".join(settings.get("prediction_models") or []))
        or name
    )
    return {"benchmark": benchmark, "model": model, "protocol": protocol}


def row_labels(infos: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """Run name -> table row: the model, so a row holds a model's runs on every benchmark;
    ``model [protocol]`` when the model has two runs on one benchmark under different
    protocols; ``... (run)`` when a row would still hold two runs of one benchmark."""
    labels = {i["name"]: i["model"] for i in infos}
    labels = _split_clashes(infos, labels, lambda info: f"[{info['protocol']}]")
    return _split_clashes(infos, labels, lambda info: f"({info['name']})")


def _split_clashes(
    infos: Sequence[Mapping[str, str]], labels: dict[str, str], suffix: Any
) -> dict[str, str]:
    """Labels with ``suffix(info)`` added to every run of a row that holds two runs of one
    benchmark."""
    seen = Counter((labels[i["name"]], i["benchmark"]) for i in infos)
    split = {labels[i["name"]] for i in infos if seen[(labels[i["name"]], i["benchmark"])] > 1}
    return {
        i["name"]: f"{labels[i['name']]} {suffix(i)}"
        if labels[i["name"]] in split
        else labels[i["name"]]
        for i in infos
    }


def headline_metric(summaries: Sequence[Mapping[str, Any]], order: Sequence[str]) -> str | None:
    """``accuracy`` if every summary has it, else the first metric of ``order`` they all have."""
    common = [m for m in order if all(m in s for s in summaries)]
    if "accuracy" in common:
        return "accuracy"
    return common[0] if common else None


def build_table(
    infos: Sequence[Mapping[str, Any]], summaries: Mapping[str, Mapping[str, Any]], order: list[str]
) -> dict[str, Any]:
    """The table dict: ``models``, ``benchmarks``, ``headline`` per benchmark, ``cells``
    (model -> benchmark -> cell), ``average`` (model -> cell or None), ``notes``, ``published``.

    ``infos`` are the runs' identities with ``name``; ``summaries`` run name -> metrics.json
    ``summary``; ``order`` the metric order.
    """
    labels = row_labels(infos)
    benchmarks = list(dict.fromkeys(i["benchmark"] for i in infos))
    models = list(dict.fromkeys(labels[i["name"]] for i in infos))
    headline = {
        b: headline_metric([summaries[i["name"]] for i in infos if i["benchmark"] == b], order)
        for b in benchmarks
    }
    cells: dict[str, dict[str, Any]] = {m: {} for m in models}
    for info in infos:
        metric = headline[info["benchmark"]]
        est = summaries[info["name"]].get(metric) if metric else None
        cell = {"run": info["name"], "metric": metric, "protocol": info["protocol"]}
        cells[labels[info["name"]]][info["benchmark"]] = {**cell, **(est or {})}
    averages, notes = {}, []
    for model in models:
        averages[model], reason = _average(cells[model], benchmarks)
        if reason:
            notes.append(f"{model}: no average, {reason}")
    pairs = list(dict.fromkeys((i["benchmark"], i["protocol"]) for i in infos))
    return {
        "models": models,
        "benchmarks": benchmarks,
        "headline": headline,
        "cells": cells,
        "average": averages,
        "notes": notes,
        "published": published(pairs),
    }


def _average(row: Mapping[str, Any], benchmarks: list[str]) -> tuple[dict | None, str]:
    """The row's average cell, or None and the reason there is none."""
    missing = [b for b in benchmarks if b not in row or row[b].get("mean") is None]
    if missing:
        return None, f"not scored on {', '.join(missing)}"
    protocols = sorted({row[b]["protocol"] for b in benchmarks})
    if len(protocols) > 1:
        return None, f"its cells are under different protocols ({', '.join(protocols)})"
    metrics = sorted({str(row[b]["metric"]) for b in benchmarks})
    if len(metrics) > 1:
        return None, f"its cells are different metrics ({', '.join(metrics)})"
    mean = sum(row[b]["mean"] for b in benchmarks) / len(benchmarks)
    return {"mean": mean, "protocol": protocols[0], "metric": metrics[0]}, ""


def published_lines(benchmark: str, protocol: str) -> list[str]:
    """Published numbers for ``benchmark`` under ``protocol`` as lines of text (none for a
    benchmark the published table does not know)."""
    try:
        return [str(line) for line in published_numbers.published_lines(benchmark, protocol)]
    except MedvlError:  # a benchmark the table does not know
        return []


def published(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """``{"lines": {"benchmark · protocol": [line, ...]}}`` for the pairs with published lines."""
    found = {f"{b} · {p}": published_lines(b, p) for b, p in pairs}
    return {"lines": {k: v for k, v in found.items() if v}}


def table_csv(table: Mapping[str, Any]) -> str:
    """Long format: one row per (model, benchmark) cell, then each model's ``average`` row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    head = ["model", "benchmark", "run", "metric", "protocol", "n", "clusters", "mean"]
    writer.writerow([*head, "ci_low", "ci_high"])
    for model in table["models"]:
        for bench in table["benchmarks"]:
            cell = table["cells"][model].get(bench)
            if cell:
                keys = ["run", "metric", "protocol", "n", "clusters", "mean", "ci_low", "ci_high"]
                writer.writerow([model, bench, *(cell.get(k) for k in keys)])
        avg = table["average"].get(model)
        if avg:
            writer.writerow(
                [model, "average", "", avg["metric"], avg["protocol"], "", "", avg["mean"], "", ""]
            )
    return out.getvalue()

"""Compare several scored runs: tables, paired significance tests, and the report files.

Each run is a folder written by ``medvl eval score`` (``scores.jsonl`` + ``metrics.json``, and
``run.json`` when ``medvl eval run`` wrote it). Runs are grouped by benchmark
(:func:`medvl.eval.benchmark_table.run_identity`). Within a benchmark, records are paired by id
over the ids common to its runs; every non-baseline run is tested against the baseline per
metric with a paired cluster bootstrap, plus McNemar's test for 0/1 metrics (see
:mod:`medvl.eval.compare`). The p-values of one run-baseline pair are Holm-corrected across its
metrics, and a difference is marked significant when its Holm-adjusted bootstrap p is below
``1 - confidence``. The per-run means and intervals come from each run's own ``metrics.json``
(all of its records); the tests use only the common ids, and say how many.

Runs on one benchmark give a ``paired`` report (the comparison at the top level). Runs on
several give a ``benchmarks`` report: the model x benchmark table
(:mod:`medvl.eval.benchmark_table`) and one comparison per benchmark in ``comparisons``. Both
carry the table and each run's protocol, which the outputs show next to every number.

So that the report explains itself, each run also carries its ``identity`` (benchmark, data
file and hash, protocol, prompt template, system prompt, generation settings, a readable model
name and its fingerprint: :mod:`medvl.eval.report_identity`), and each comparison its
per-category deltas against the baseline with paired intervals (``group_deltas``,
:mod:`medvl.eval.report_deltas`) and a gallery of examples (:mod:`medvl.eval.report_gallery`).
The metric ids are explained by :mod:`medvl.eval.glossary`.

:func:`write_report` writes ``report.md``, ``report.json``, ``estimates.csv`` (every mean and
interval, long format), ``tests.csv`` (every paired test), ``benchmarks.csv`` (the model x
benchmark table, long format) and ``report.html`` (self-contained).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.errors import MedvlError
from medvl.eval.benchmark_table import build_table, run_identity
from medvl.eval.breakdown import ACCURACY, BootstrapSettings, row_value
from medvl.eval.clusters import row_clusters
from medvl.eval.compare import discordant_counts, holm, is_binary, mcnemar, paired_bootstrap
from medvl.eval.report_deltas import group_deltas
from medvl.eval.report_files import (  # re-exported: the report's public API
    REPORT_FILES,
    estimates_csv,
    markdown,
    tests_csv,
    write_report,
)
from medvl.eval.report_gallery import select_gallery
from medvl.eval.report_identity import NOT_RECORDED, identity_block, read_first_prediction
from medvl.eval.report_tables import comparisons, fmt, fmt_estimate, fmt_n, fmt_p
from medvl.provenance import SCORING_PACKAGES, versions

__all__ = [
    "REPORT_FILES",
    "Run",
    "build_report",
    "comparisons",
    "estimates_csv",
    "fmt",
    "fmt_estimate",
    "fmt_n",
    "fmt_p",
    "load_run",
    "markdown",
    "run_names",
    "tests_csv",
    "write_report",
]


@dataclass
class Run:
    """One scored run: its name, folder, ``metrics.json``, scores rows by id, who it is
    (``benchmark``, ``model``, ``protocol``) and the facts of its identity block."""

    name: str
    path: Path
    metrics: dict[str, Any]
    rows: dict[str, dict[str, Any]]
    identity: dict[str, str]
    facts: dict[str, str] = field(default_factory=dict)

    @property
    def protocol(self) -> str:
        return self.identity["protocol"]


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Read a run folder; a missing or broken file raises a :class:`MedvlError` naming it."""
    path = Path(path)
    files = {n: path / n for n in ("metrics.json", "scores.jsonl")}
    for file in files.values():
        if not file.is_file():
            raise MedvlError(
                f"{path}: no {file.name}; pass folders written by 'medvl eval score --out DIR'"
            )
    try:
        metrics = json.loads(files["metrics.json"].read_text(encoding="utf-8"))
        rows = [
            json.loads(line)
            for line in files["scores.jsonl"].open(encoding="utf-8")
            if line.strip()
        ]
        run_json = _read_run_json(path / "run.json")
    except json.JSONDecodeError as exc:
        raise MedvlError(f"{path}: broken JSON ({exc}); score the run again") from None
    name = name or path.name
    identity = run_identity(name, metrics, run_json, rows)
    settings = metrics.get("settings") or {}
    facts = identity_block(
        identity, metrics, run_json, read_first_prediction(settings.get("predictions"))
    )
    if not settings.get("model") and facts["model"] != NOT_RECORDED:
        identity["model"] = facts["model"]  # readable, never a dict's repr
    return Run(name, path, metrics, {row["id"]: row for row in rows}, identity, facts)


def _read_run_json(path: Path) -> dict[str, Any] | None:
    """``run.json`` of a run folder written by ``medvl eval run``, if there is one."""
    if not path.is_file():
        return None
    body = json.loads(path.read_text(encoding="utf-8"))
    return body if isinstance(body, dict) else None


def run_names(paths: Sequence[Path], names: Sequence[str] | None) -> list[str]:
    """``names`` if given (one per run, unique), else folder names made unique."""
    if names:
        if len(names) != len(paths) or len(set(names)) != len(names):
            raise MedvlError(
                f"--names has {len(names)} name(s) for {len(paths)} run(s); give one unique "
                "name per run, comma-separated"
            )
        return list(names)
    result: list[str] = []
    for path in paths:
        base = Path(path).resolve().name or "run"
        candidate, k = base, 2
        while candidate in result:
            candidate, k = f"{base}-{k}", k + 1
        result.append(candidate)
    return result


def build_report(
    paths: Sequence[str | Path],
    *,
    names: Sequence[str] | None = None,
    baseline: str | None = None,
    settings: BootstrapSettings | None = None,
) -> dict[str, Any]:
    """The comparison of the runs in ``paths`` as one JSON-ready dict (see module docstring)."""
    settings = settings or BootstrapSettings(resamples=2000)
    if len(paths) < 1:
        raise MedvlError("give at least one run folder (two or more to compare)")
    paths = [Path(p) for p in paths]
    runs = [load_run(p, n) for p, n in zip(paths, run_names(paths, names), strict=True)]
    _split_model_names(runs)
    base = _baseline(runs, baseline)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.identity["benchmark"], []).append(run)
    comparisons = [
        _comparison(bench, group, _group_baseline(group, base), settings)
        for bench, group in groups.items()
    ]
    infos = [{"name": r.name, **r.identity} for r in runs]
    table = build_table(
        infos, {r.name: r.metrics.get("summary", {}) for r in runs}, _metric_order(runs)
    )
    report: dict[str, Any] = {
        "schema": "medvl.report/2",
        "mode": "paired" if len(groups) == 1 else "benchmarks",
        "runs": [_run_info(run) for run in runs],
        "benchmarks": list(groups),
        "table": table,
    }
    if len(groups) == 1:
        report.update(comparisons[0])
        report["comparisons"] = []
    else:
        report.update(_empty_comparison())
        report["comparisons"] = comparisons
        report["tests"] = [t for c in comparisons for t in c["tests"]]
        report["warnings"] = [f"{c['benchmark']}: {w}" for c in comparisons for w in c["warnings"]]
    alpha = 1.0 - settings.confidence
    report["settings"] = {
        "bootstrap": settings.to_dict(),
        "paired_on": "ids common to the runs of a benchmark",
        "multiple_testing": f"Holm across the metrics of each run-baseline pair; alpha {alpha:g}",
    }
    report["versions"] = versions(SCORING_PACKAGES)
    return report


def _split_model_names(runs: list[Run]) -> None:
    """Add the short fingerprint to readable model names that two different models share."""
    prints: dict[str, set[str]] = {}
    for run in runs:
        prints.setdefault(run.identity["model"], set()).add(run.facts.get("model fingerprint", ""))
    for run in runs:
        fingerprint = run.facts.get("model fingerprint", NOT_RECORDED)
        if len(prints[run.identity["model"]]) > 1 and fingerprint != NOT_RECORDED:
            run.identity["model"] += f" ({fingerprint.split(':')[-1][:8]})"


def _comparison(
    benchmark: str, runs: list[Run], base: Run, settings: BootstrapSettings
) -> dict[str, Any]:
    """The paired comparison of the runs of one benchmark against ``base``."""
    common = [i for i in base.rows if all(i in run.rows for run in runs)]
    metrics = _metric_order(runs)
    headline = ACCURACY if ACCURACY in metrics else (metrics[0] if metrics else None)
    breakdowns = _breakdowns(runs)
    others = {r.name: r.rows for r in runs if r is not base}
    rows = {r.name: r.rows for r in runs}
    return {
        "benchmark": benchmark,
        "run_names": [r.name for r in runs],
        "protocols": {r.name: r.protocol for r in runs},
        "baseline": base.name,
        "pairing": {"common_ids": len(common), "ids_per_run": {r.name: len(r.rows) for r in runs}},
        "metrics": metrics,
        "headline": headline,
        "overall": {
            m: {r.name: r.metrics.get("summary", {}).get(m) for r in runs} for m in metrics
        },
        "corpus": _corpus(runs),
        "breakdowns": breakdowns,
        "tests": [
            t for r in runs if r is not base for t in _tests(base, r, common, metrics, settings)
        ],
        "group_deltas": group_deltas(
            base.rows, others, common, headline, list(breakdowns), settings
        ),
        "gallery": select_gallery(
            base.name, rows, common, (base.metrics.get("settings") or {}).get("data")
        ),
        "warnings": _warnings(runs, common),
    }


def _empty_comparison() -> dict[str, Any]:
    """The top-level comparison keys of a ``benchmarks`` report (each benchmark has its own)."""
    return {
        "benchmark": None,
        "run_names": [],
        "protocols": {},
        "baseline": None,
        "pairing": None,
        "metrics": [],
        "headline": None,
        "overall": {},
        "corpus": {},
        "breakdowns": {},
        "group_deltas": {},
        "gallery": None,
    }


def _baseline(runs: list[Run], name: str | None) -> Run:
    if name is None:
        return runs[0]
    for run in runs:
        if name in (run.name, str(run.path)):
            return run
    raise MedvlError(
        f"--baseline {name!r} is not one of the runs ({', '.join(r.name for r in runs)})"
    )


def _group_baseline(group: list[Run], base: Run) -> Run:
    """The baseline within one benchmark: ``base`` itself, else the run of the same model, else
    the benchmark's first run."""
    if any(r is base for r in group):
        return base
    same = [r for r in group if r.identity["model"] == base.identity["model"]]
    return same[0] if same else group[0]


def _metric_order(runs: list[Run]) -> list[str]:
    """``accuracy`` first, then the runs' metrics in their scoring order (metrics.json's
    summary is key-sorted; ``settings.metrics`` keeps the table order)."""
    names: dict[str, None] = {ACCURACY: None}
    for run in runs:
        names.update(dict.fromkeys(run.metrics.get("settings", {}).get("metrics", [])))
    for run in runs:
        names.update(dict.fromkeys(sorted(run.metrics.get("summary", {}))))
    present = {m for run in runs for m in run.metrics.get("summary", {})}
    return [name for name in names if name in present]


def _run_info(run: Run) -> dict[str, Any]:
    settings, counts = run.metrics.get("settings", {}), run.metrics.get("counts", {})
    return {
        "name": run.name,
        "path": str(run.path),
        **run.identity,
        "n_records": run.metrics.get("n_records", len(run.rows)),
        "data": settings.get("data"),
        "data_sha256": settings.get("data_sha256"),
        "predictions": settings.get("predictions"),
        "predictions_sha256": settings.get("predictions_sha256"),
        "models": settings.get("prediction_models", []),
        "identity": run.facts,
        "counts": counts,
        "unparsed_rate": (run.metrics.get("unparsed") or {}).get("rate"),
    }


def _corpus(runs: list[Run]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for run in runs:
        for metric, cell in (run.metrics.get("corpus") or {}).items():
            result.setdefault(metric, {})[run.name] = cell.get("value")
    return result


def _breakdowns(runs: list[Run]) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """``{key: {group: {metric: {run: estimate}}}}`` over every key any run has."""
    result: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for run in runs:
        for key, groups in (run.metrics.get("breakdowns") or {}).items():
            for group, cells in groups.items():
                for metric, est in cells.items():
                    target = result.setdefault(key, {}).setdefault(group, {})
                    target.setdefault(metric, {})[run.name] = est
    order = [k for run in runs for k in run.metrics.get("settings", {}).get("breakdown", [])]
    keys = sorted(result, key=lambda k: order.index(k) if k in order else len(order))
    return {k: dict(sorted(result[k].items())) for k in keys}


def _tests(
    base: Run, run: Run, common: list[str], metrics: list[str], settings: BootstrapSettings
) -> list[dict[str, Any]]:
    """Paired cluster bootstrap (and McNemar for 0/1 values) of ``run`` against ``base`` per
    metric, Holm-corrected across the metrics; clusters come from the baseline's rows."""
    labels = dict(zip(common, row_clusters([base.rows[i] for i in common]), strict=True))
    tests = []
    for metric in metrics:
        pairs = [
            (row_value(base.rows[i], metric), row_value(run.rows[i], metric), i) for i in common
        ]
        pairs = [p for p in pairs if p[0] is not None and p[1] is not None]
        if not pairs:
            continue
        a, b = [p[0] for p in pairs], [p[1] for p in pairs]
        clusters = [labels[p[2]] for p in pairs] if settings.clustered else None
        test = {"metric": metric, "run": run.name, "baseline": base.name}
        test["protocol"] = _protocol_pair(base, run)
        test.update(paired_bootstrap(a, b, settings, clusters).to_dict())
        binary = is_binary(a) and is_binary(b)
        test["mcnemar"] = mcnemar(*discordant_counts(a, b)).to_dict() if binary else None
        tests.append(test)
    _holm(tests, alpha=1.0 - settings.confidence)
    return tests


def _protocol_pair(base: Run, run: Run) -> str:
    if base.protocol == run.protocol:
        return run.protocol
    return f"{run.protocol} vs {base.protocol}"


def _holm(tests: list[dict[str, Any]], alpha: float) -> None:
    """Add ``p_holm`` and ``significant`` (Holm-adjusted bootstrap p < alpha) to each test, and
    ``p_holm`` to each McNemar result (corrected across the 0/1 metrics)."""
    for test, adjusted in zip(tests, holm([t["p_value"] for t in tests]), strict=True):
        test["p_holm"] = adjusted
        test["significant"] = adjusted is not None and adjusted < alpha
    with_mcnemar = [t["mcnemar"] for t in tests if t["mcnemar"]]
    for mc, adjusted in zip(with_mcnemar, holm([m["p_value"] for m in with_mcnemar]), strict=True):
        mc["p_holm"] = adjusted


def _warnings(runs: list[Run], common: list[str]) -> list[str]:
    warnings = []
    hashes = {r.metrics.get("settings", {}).get("data_sha256") for r in runs}
    if len(hashes) > 1:
        warnings.append(
            f"the runs were scored on different data files; tests use the {len(common)} ids "
            "common to all runs, while each run's own means use all of its records"
        )
    protocols = sorted({r.protocol for r in runs})
    if len(protocols) > 1:
        warnings.append(
            f"the runs were scored under different protocols ({', '.join(protocols)}); their "
            "differences mix the models with the scoring rules"
        )
    for run in runs:
        counts = run.metrics.get("counts", {})
        if counts.get("missing"):
            warnings.append(f"{run.name}: {counts['missing']} record(s) had no prediction (0)")
    return warnings

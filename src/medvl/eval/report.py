"""Compare several scored runs: tables, paired significance tests, and the report files.

Each run is a folder written by ``medvl eval score`` (``scores.jsonl`` + ``metrics.json``).
Records are paired by id over the ids common to all runs; every non-baseline run is tested
against the baseline per metric with a paired bootstrap, plus McNemar's test for 0/1 metrics
(see :mod:`medvl.eval.compare`). The per-run means and intervals come from each run's own
``metrics.json`` (all of its records); the tests use only the common ids, and say how many.

:func:`write_report` writes ``report.md``, ``report.json``, ``estimates.csv`` (every mean and
interval, long format), ``tests.csv`` (every paired test) and ``report.html`` (self-contained).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.errors import MedvlError
from medvl.eval.breakdown import ACCURACY, BootstrapSettings, row_value, versions
from medvl.eval.compare import discordant_counts, is_binary, mcnemar, paired_bootstrap
from medvl.fileio import atomic_write_json, atomic_write_text

REPORT_FILES = ("report.md", "report.json", "estimates.csv", "tests.csv", "report.html")


@dataclass
class Run:
    """One scored run: its name, folder, ``metrics.json`` and scores rows by id."""

    name: str
    path: Path
    metrics: dict[str, Any]
    rows: dict[str, dict[str, Any]]


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
    except json.JSONDecodeError as exc:
        raise MedvlError(f"{path}: broken JSON ({exc}); score the run again") from None
    return Run(name or path.name, path, metrics, {row["id"]: row for row in rows})


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
    base = _baseline(runs, baseline)
    common = [i for i in base.rows if all(i in run.rows for run in runs)]
    metrics = _metric_order(runs)
    return {
        "schema": "medvl.report/1",
        "runs": [_run_info(run) for run in runs],
        "baseline": base.name,
        "pairing": {"common_ids": len(common), "ids_per_run": {r.name: len(r.rows) for r in runs}},
        "metrics": metrics,
        "headline": ACCURACY if ACCURACY in metrics else (metrics[0] if metrics else None),
        "overall": {
            m: {r.name: r.metrics.get("summary", {}).get(m) for r in runs} for m in metrics
        },
        "corpus": _corpus(runs),
        "breakdowns": _breakdowns(runs),
        "tests": [
            t for r in runs if r is not base for t in _tests(base, r, common, metrics, settings)
        ],
        "warnings": _warnings(runs, common),
        "settings": {"bootstrap": settings.to_dict(), "paired_on": "ids common to all runs"},
        "versions": versions(),
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
        "n_records": run.metrics.get("n_records", len(run.rows)),
        "data": settings.get("data"),
        "data_sha256": settings.get("data_sha256"),
        "predictions": settings.get("predictions"),
        "predictions_sha256": settings.get("predictions_sha256"),
        "models": settings.get("prediction_models", []),
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
    """Paired bootstrap (and McNemar for 0/1 values) of ``run`` against ``base`` per metric."""
    tests = []
    for metric in metrics:
        pairs = [(row_value(base.rows[i], metric), row_value(run.rows[i], metric)) for i in common]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if not pairs:
            continue
        a, b = [p[0] for p in pairs], [p[1] for p in pairs]
        test = {"metric": metric, "run": run.name, "baseline": base.name}
        test.update(paired_bootstrap(a, b, settings).to_dict())
        binary = is_binary(a) and is_binary(b)
        test["mcnemar"] = mcnemar(*discordant_counts(a, b)).to_dict() if binary else None
        tests.append(test)
    return tests


def _warnings(runs: list[Run], common: list[str]) -> list[str]:
    warnings = []
    hashes = {r.metrics.get("settings", {}).get("data_sha256") for r in runs}
    if len(hashes) > 1:
        warnings.append(
            f"the runs were scored on different data files; tests use the {len(common)} ids "
            "common to all runs, while each run's own means use all of its records"
        )
    for run in runs:
        counts = run.metrics.get("counts", {})
        if counts.get("missing"):
            warnings.append(f"{run.name}: {counts['missing']} record(s) had no prediction (0)")
    return warnings


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table, or an en dash for none."""
    return "–" if value is None else f"{value:.{digits}f}"


def fmt_estimate(est: dict[str, Any] | None) -> str:
    """``0.612 [0.571, 0.650]`` for an estimate dict."""
    if not est or est.get("mean") is None:
        return "–"
    return f"{fmt(est['mean'])} [{fmt(est['ci_low'])}, {fmt(est['ci_high'])}]"


def fmt_p(p: float | None) -> str:
    """A p-value: three decimals, or ``<0.001``."""
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    from medvl.eval.report_html import report_tables

    lines = ["# medvl evaluation report", ""]
    for table in report_tables(report):
        lines += [f"## {table['title']}", ""]
        if table.get("note"):
            lines += [table["note"], ""]
        lines.append("| " + " | ".join(table["header"]) + " |")
        lines.append("|" + "---|" * len(table["header"]))
        lines += [
            "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table["rows"]
        ]
        lines.append("")
    lines += [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines).rstrip() + "\n"


def estimates_csv(report: dict[str, Any]) -> str:
    """Every mean and interval, one row per (run, breakdown, group, metric)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run", "breakdown", "group", "metric", "n", "mean", "ci_low", "ci_high"])
    cells = [("overall", "all", m, per_run) for m, per_run in report["overall"].items()]
    for key, groups in report["breakdowns"].items():
        cells += [(key, g, m, per_run) for g, ms in groups.items() for m, per_run in ms.items()]
    for key, group, metric, per_run in cells:
        for run, est in per_run.items():
            if est:
                writer.writerow(
                    [run, key, group, metric, est["n"], est["mean"], est["ci_low"], est["ci_high"]]
                )
    return out.getvalue()


def tests_csv(report: dict[str, Any]) -> str:
    """Every paired test, one row per (run, metric)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    head = [
        "metric",
        "run",
        "baseline",
        "n",
        "mean_baseline",
        "mean_run",
        "delta",
        "ci_low",
        "ci_high",
    ]
    writer.writerow([*head, "p_bootstrap", "mcnemar_b", "mcnemar_c", "p_mcnemar", "mcnemar_method"])
    for test in report["tests"]:
        mc = test["mcnemar"] or {}
        row = [test[k] for k in head] + [test["p_value"]]
        writer.writerow([*row, mc.get("b"), mc.get("c"), mc.get("p_value"), mc.get("method")])
    return out.getvalue()


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write every report file into ``out_dir``; returns ``{file name: path}``."""
    from medvl.eval.report_html import render_html

    out_dir = Path(out_dir)
    paths = {name: out_dir / name for name in REPORT_FILES}
    atomic_write_text(paths["report.md"], markdown(report))
    atomic_write_json(paths["report.json"], report)
    atomic_write_text(paths["estimates.csv"], estimates_csv(report))
    atomic_write_text(paths["tests.csv"], tests_csv(report))
    atomic_write_text(paths["report.html"], render_html(report))
    return paths

"""The report's files: Markdown, the CSV tables, and :func:`write_report`.

The tables themselves are built once by :func:`medvl.eval.report_tables.report_tables` and
shared by Markdown and HTML. Every mean carries ``n (clusters)``, and every number the protocol
of the run it comes from (in the column header, the ``protocol`` column or a suffix).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from medvl.eval.benchmark_table import table_csv
from medvl.eval.report_html import render_html
from medvl.eval.report_tables import SMALL_LEGEND, comparisons, report_tables
from medvl.fileio import atomic_write_json, atomic_write_text

REPORT_FILES = (
    "report.md",
    "report.json",
    "estimates.csv",
    "tests.csv",
    "benchmarks.csv",
    "report.html",
)
#: tests.csv columns added with clustered bootstrap, Holm correction and protocols.
EXTRA = ("clusters", "p_bootstrap_holm", "significant", "p_mcnemar_holm", "protocol")


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    lines = ["# medvl evaluation report", "", SMALL_LEGEND, ""]
    for table in report_tables(report):
        lines += [f"## {table['title']}", ""]
        if table.get("note"):
            lines += [table["note"], ""]
        lines.append("| " + " | ".join(_md_cell(c) for c in table["header"]) + " |")
        lines.append("|" + "---|" * len(table["header"]))
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table["rows"]]
        lines.append("")
        if table.get("footer"):
            lines += [f"- {line}" for line in table["footer"]] + [""]
    lines += [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines).rstrip() + "\n"


def _md_cell(text: str) -> str:
    """A Markdown table cell: pipes escaped, line breaks as ``<br>``."""
    return text.replace("|", "\\|").replace("\n", "<br>")


def estimates_csv(report: dict[str, Any]) -> str:
    """Every mean and interval, one row per (run, breakdown, group, metric)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    head = ["run", "breakdown", "group", "metric", "n", "mean", "ci_low", "ci_high"]
    writer.writerow([*head, "clusters", "benchmark", "protocol"])
    for comparison in comparisons(report):
        protocols = comparison["protocols"]
        cells = [("overall", "all", m, per_run) for m, per_run in comparison["overall"].items()]
        for key, groups in comparison["breakdowns"].items():
            cells += [(key, g, m, per) for g, ms in groups.items() for m, per in ms.items()]
        for key, group, metric, per_run in cells:
            for run, est in per_run.items():
                if est:
                    values = [est["n"], est["mean"], est["ci_low"], est["ci_high"]]
                    extra = [est.get("clusters"), comparison["benchmark"], protocols.get(run)]
                    writer.writerow([run, key, group, metric, *values, *extra])
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
    writer.writerow(
        [*head, "p_bootstrap", "mcnemar_b", "mcnemar_c", "p_mcnemar", "mcnemar_method", *EXTRA]
    )
    for test in report["tests"]:
        mc = test["mcnemar"] or {}
        row = [test[k] for k in head] + [test["p_value"]]
        row += [mc.get("b"), mc.get("c"), mc.get("p_value"), mc.get("method")]
        row += [test["clusters"], test["p_holm"], test["significant"], mc.get("p_holm")]
        writer.writerow([*row, test["protocol"]])
    return out.getvalue()


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write every report file into ``out_dir``; returns ``{file name: path}``."""
    out_dir = Path(out_dir)
    paths = {name: out_dir / name for name in REPORT_FILES}
    atomic_write_text(paths["report.md"], markdown(report))
    atomic_write_json(paths["report.json"], report)
    atomic_write_text(paths["estimates.csv"], estimates_csv(report))
    atomic_write_text(paths["tests.csv"], tests_csv(report))
    atomic_write_text(paths["benchmarks.csv"], table_csv(report["table"]))
    atomic_write_text(paths["report.html"], render_html(report))
    return paths

"""The comparison report's tables and plots, and its self-contained HTML page.

:func:`report_tables` turns a report dict (:func:`medvl.eval.report.build_report`) into plain
tables shared by the Markdown and HTML outputs: the runs, the model x benchmark table (with the
published numbers under the same protocol below it), then per benchmark the overall means, the
tests against the baseline (raw and Holm-adjusted p), corpus metrics and breakdowns. Run columns
are headed ``run · protocol``; ``n`` columns read ``n (clusters)`` and flag single records.
:func:`report_plots` draws the charts with matplotlib's object API (no pyplot state) as base64
PNGs: overall means with their 95% intervals, the deltas against the baseline with
paired-bootstrap intervals, and per-category bars of the headline metric. :func:`render_html`
fills ``resources/report.html.jinja``: inline CSS, images as ``data:`` URIs, no external
resource, so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import io
from importlib import resources
from typing import Any

from medvl.eval.report_files import comparisons, fmt, fmt_estimate, fmt_n, fmt_p

MAX_GROUPS = 40  # categories drawn per breakdown plot (largest n first); the tables keep all
_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3")


def report_tables(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Tables as ``{title, note, header, rows, plot, footer}`` with every cell a string."""
    tables = [_runs_table(report), _benchmark_table(report)]
    several = len(comparisons(report)) > 1
    for i, comparison in enumerate(comparisons(report)):
        prefix = f"{comparison['benchmark']}: " if several else ""
        tables += _comparison_tables(comparison, prefix, f"{i}:")
    return tables


def _comparison_tables(c: dict[str, Any], prefix: str, plot: str) -> list[dict[str, Any]]:
    """The tables of one benchmark's comparison; plot ids start with ``plot``."""
    runs = c["run_names"]
    heads = [_run_head(c, r) for r in runs]
    tables = [_overall_table(c, runs, heads, prefix, plot)]
    if c["tests"]:
        tables.append(_tests_table(c, prefix, plot))
    if c["corpus"]:
        rows = [[m, *(fmt(v.get(r)) for r in runs)] for m, v in c["corpus"].items()]
        tables.append(_table(f"{prefix}Corpus-level metrics", ["metric", *heads], rows))
    headline = c["headline"]
    for key, groups in c["breakdowns"].items():
        rows = []
        for group in _scored_groups(groups, headline):
            per_run = groups[group][headline]
            first = next((e for e in per_run.values() if e), None)
            rows.append([group, fmt_n(first), *(fmt_estimate(per_run.get(r)) for r in runs)])
        note = f"{headline}, mean [95% CI]; every metric of every group is in estimates.csv"
        title = f"{prefix}By {key}"
        tables.append(_table(title, [key, "n (clusters)", *heads], rows, note, f"{plot}by:{key}"))
    return tables


def _run_head(c: dict[str, Any], run: str) -> str:
    """A run's column header: ``name · protocol``."""
    return f"{run} · {c['protocols'].get(run, 'medvl')}"


def _table(
    title: str,
    header: list[str],
    rows: list[list[str]],
    note: str = "",
    plot: str = "",
    footer: list[str] | None = None,
) -> dict[str, Any]:
    """A table; ``plot`` names the plot (:func:`report_plots`) shown under it in the HTML,
    ``footer`` lines are listed under it."""
    return {
        "title": title,
        "header": header,
        "rows": rows,
        "note": note,
        "plot": plot,
        "footer": footer or [],
    }


def _scored_groups(groups: dict[str, dict[str, Any]], metric: str) -> list[str]:
    """The groups (in name order) where ``metric`` has a value for some run."""
    return [g for g, cells in groups.items() if any((cells.get(metric) or {}).values())]


def _runs_table(report: dict[str, Any]) -> dict[str, Any]:
    header = ["run", "benchmark", "protocol", "model", "records", "missing", "empty"]
    header += ["duplicate", "unknown", "unparsed MCQ", "data sha256", "predictions sha256"]
    rows = []
    for run in report["runs"]:
        c = run["counts"]
        cells = [run["name"], run["benchmark"], run["protocol"], run["model"]]
        cells.append(str(run["n_records"]))
        cells += [str(c.get(k, 0)) for k in ("missing", "empty", "duplicate", "unknown")]
        rate = run["unparsed_rate"]
        cells.append("–" if rate is None else f"{100 * rate:.1f}%")
        cells += [(run["data_sha256"] or "")[:12], (run["predictions_sha256"] or "")[:12]]
        rows.append(cells)
    notes = []
    for c in comparisons(report):
        where = f"{c['benchmark']}: " if report["mode"] == "benchmarks" else ""
        notes.append(
            f"{where}baseline {c['baseline']}, {c['pairing']['common_ids']} ids common to its runs"
        )
    return _table("Runs", header, rows, "; ".join(notes))


def _benchmark_table(report: dict[str, Any]) -> dict[str, Any]:
    """Models x benchmarks: headline mean [95% CI] · protocol, and the average where allowed."""
    table = report["table"]
    benches = table["benchmarks"]
    header = ["model", *(f"{b} ({table['headline'][b] or '–'})" for b in benches), "average"]
    rows = []
    for model in table["models"]:
        cells = [model]
        for bench in benches:
            cell = table["cells"][model].get(bench)
            cells.append(_cell_text(cell) if cell else "")
        avg = table["average"][model]
        cells.append(f"{fmt(avg['mean'])} · {avg['protocol']}" if avg else "–")
        rows.append(cells)
    note = (
        "headline mean [95% cluster-bootstrap CI] · protocol, n=records (clusters); the "
        "average (no interval) is the mean over benchmarks, given only for a model scored on "
        "every benchmark under one protocol and one metric"
    )
    return _table("Models × benchmarks", header, rows, note, footer=_table_footer(table))


def _cell_text(cell: dict[str, Any]) -> str:
    if cell.get("mean") is None:
        return f"– · {cell['protocol']}"
    return f"{fmt_estimate(cell)} · {cell['protocol']}, n={fmt_n(cell)}"


def _table_footer(table: dict[str, Any]) -> list[str]:
    """Why an average is missing, and the published numbers under the same protocol."""
    lines = list(table["notes"])
    published = table["published"]
    if not published["available"]:
        lines.append(
            "published numbers: not available in this medvl (hook: "
            "medvl.eval.benchmark_table.published_lines)"
        )
    elif not published["lines"]:
        lines.append("published numbers: none under these benchmarks and protocols")
    for found in published["lines"].values():
        lines += [line.strip() for line in found]
    return lines


def _overall_table(
    c: dict[str, Any], runs: list[str], heads: list[str], prefix: str, plot: str
) -> dict[str, Any]:
    rows = []
    for metric, per_run in c["overall"].items():
        first = per_run.get(c["baseline"]) or next((e for e in per_run.values() if e), None)
        rows.append([metric, fmt_n(first), *(fmt_estimate(per_run.get(r)) for r in runs)])
    note = "mean [95% percentile cluster-bootstrap CI] over each run's records"
    header = ["metric", "n (clusters)", *heads]
    return _table(f"{prefix}Overall", header, rows, note, plot=f"{plot}overall")


def _tests_table(c: dict[str, Any], prefix: str, plot: str) -> dict[str, Any]:
    header = ["metric", "run", "protocol", "n paired (clusters)", c["baseline"], "run mean"]
    header += ["delta [95% CI]", "p (paired bootstrap)", "p Holm", "significant"]
    header += ["McNemar b/c", "p (McNemar)", "p McNemar Holm"]
    rows = []
    for t in c["tests"]:
        mc = t["mcnemar"]
        delta = f"{t['delta']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]"
        cells = [t["metric"], t["run"], t["protocol"], fmt_n(t)]
        cells += [fmt(t["mean_baseline"]), fmt(t["mean_run"]), delta]
        cells += [fmt_p(t["p_value"]), fmt_p(t["p_holm"]), "yes" if t["significant"] else "no"]
        if mc:
            cells += [f"{mc['b']}/{mc['c']}", f"{fmt_p(mc['p_value'])} ({mc['method']})"]
            cells.append(fmt_p(mc.get("p_holm")))
        else:
            cells += ["–", "–", "–"]
        rows.append(cells)
    note = (
        "delta = run − baseline on the paired records, resampling clusters (images or "
        "patients); significant: Holm-adjusted bootstrap p below 0.05 across this pair's "
        "metrics; McNemar for 0/1 metrics only, treating records as independent"
    )
    title = f"{prefix}Against the baseline ({c['baseline']})"
    return _table(title, header, rows, note, plot=f"{plot}deltas")


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _bar_values(cells: list[dict | None]) -> tuple[list[float], list[float], list[float]]:
    """Means and the lower/upper error-bar lengths (0 where an interval is missing)."""
    means, low, high = [], [], []
    for cell in cells:
        mean = (cell or {}).get("mean")
        lo, hi = (cell or {}).get("ci_low"), (cell or {}).get("ci_high")
        means.append(float("nan") if mean is None else mean)
        low.append(0.0 if mean is None or lo is None else max(mean - lo, 0.0))
        high.append(0.0 if mean is None or hi is None else max(hi - mean, 0.0))
    return means, low, high


def _bars(
    title: str,
    labels: list[str],
    series: dict[str, list[dict | None]],
    xlabel: str,
    colors: dict[str, str],
) -> str:
    """Horizontal grouped bars with interval error bars; ``series`` is run -> estimates."""
    import numpy as np
    from matplotlib.figure import Figure

    k = max(len(series), 1)
    height = 1.2 + 0.28 * len(labels) * k
    fig = Figure(figsize=(8, min(height, 30)))
    ax = fig.add_subplot()
    y = np.arange(len(labels), dtype=float)
    width = 0.8 / k
    for i, (name, cells) in enumerate(series.items()):
        means, low, high = _bar_values(cells)
        ax.barh(
            y + i * width, means, width, xerr=[low, high], capsize=2, label=name, color=colors[name]
        )
    ax.set_yticks(y + width * (k - 1) / 2, labels)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _png(fig)


def report_plots(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    """``{plot id: {title, png}}``: per comparison ``i``, ``i:overall``, ``i:deltas`` (against
    the baseline) and ``i:by:KEY`` per breakdown key; a run keeps its colour in every plot."""
    runs = [r["name"] for r in report["runs"]]
    colors = {run: _COLORS[i % len(_COLORS)] for i, run in enumerate(runs)}
    plots = {}
    several = len(comparisons(report)) > 1
    for i, c in enumerate(comparisons(report)):
        prefix = f"{c['benchmark']}: " if several else ""
        plots.update({f"{i}:{k}": v for k, v in _comparison_plots(c, colors, prefix).items()})
    return plots


def _comparison_plots(
    c: dict[str, Any], colors: dict[str, str], prefix: str
) -> dict[str, dict[str, str]]:
    runs = c["run_names"]
    plots = {}
    metrics = list(c["overall"])
    if metrics:
        series = {r: [c["overall"][m].get(r) for m in metrics] for r in runs}
        title = f"{prefix}Overall (mean, 95% CI)"
        plots["overall"] = {"title": title, "png": _bars(title, metrics, series, "score", colors)}
    if c["tests"]:
        plots["deltas"] = {
            "title": f"{prefix}Deltas against the baseline",
            "png": _delta_plot(c, colors),
        }
    headline = c["headline"]
    for key, groups in c["breakdowns"].items():
        labels = _largest_groups(groups, headline)
        if not labels:
            continue
        series = {r: [groups[g][headline].get(r) for g in labels] for r in runs}
        title = f"{prefix}{headline} by {key} (mean, 95% CI)"
        plots[f"by:{key}"] = {"title": title, "png": _bars(title, labels, series, headline, colors)}
    return plots


def _largest_groups(groups: dict[str, dict[str, Any]], metric: str) -> list[str]:
    """Up to :data:`MAX_GROUPS` scored groups with the most records, in name order."""

    def size(group: str) -> int:
        return max((e or {}).get("n", 0) for e in groups[group][metric].values())

    scored = _scored_groups(groups, metric)
    return sorted(sorted(scored, key=size, reverse=True)[:MAX_GROUPS])


def _delta_plot(report: dict[str, Any], colors: dict[str, str]) -> str:
    runs = [r for r in report["run_names"] if r != report["baseline"]]
    metrics = list(dict.fromkeys(t["metric"] for t in report["tests"]))
    by_key = {(t["run"], t["metric"]): t for t in report["tests"]}
    series = {}
    for run in runs:
        cells = []
        for metric in metrics:
            t = by_key.get((run, metric))
            cells.append(
                {"mean": t["delta"], "ci_low": t["ci_low"], "ci_high": t["ci_high"]} if t else None
            )
        series[run] = cells
    title = f"run − {report['baseline']} (paired bootstrap 95% CI)"
    return _bars(title, metrics, series, "delta", colors)


def render_html(report: dict[str, Any]) -> str:
    """The self-contained HTML page of the report."""
    import jinja2

    template_text = (
        resources.files("medvl").joinpath("resources/report.html.jinja").read_text(encoding="utf-8")
    )
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(template_text).render(
        report=report,
        summary=_summary(report),
        tables=report_tables(report),
        plots=report_plots(report),
    )


def _summary(report: dict[str, Any]) -> str:
    """The line under the title: runs, benchmarks, baselines, pairing, versions, bootstrap."""
    boot = report["settings"]["bootstrap"]
    parts = [f"{len(report['runs'])} run(s) on {len(report['benchmarks'])} benchmark(s)"]
    for c in comparisons(report):
        where = f"{c['benchmark']}: " if report["mode"] == "benchmarks" else ""
        parts.append(
            f"{where}baseline {c['baseline']}, {c['pairing']['common_ids']} ids common to its runs"
        )
    parts.append(f"medvl {report['versions']['medvl']}, Python {report['versions']['python']}")
    parts.append(
        f"cluster bootstrap ({boot.get('cluster_by', 'record')}): {boot['resamples']} "
        f"resamples, seed {boot['seed']}; {report['settings']['multiple_testing']}"
    )
    return "; ".join(parts) + "."

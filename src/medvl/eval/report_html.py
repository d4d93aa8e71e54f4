"""The comparison report's tables and plots, and its self-contained HTML page.

:func:`report_tables` turns a report dict (:func:`medvl.eval.report.build_report`) into plain
tables shared by the Markdown and HTML outputs. :func:`report_plots` draws the charts with
matplotlib's object API (no pyplot state) as base64 PNGs: overall means with their 95% intervals,
the deltas against the baseline with paired-bootstrap intervals, and per-category bars of the
headline metric. :func:`render_html` fills ``resources/report.html.jinja``: inline CSS, images as
``data:`` URIs, no external resource, so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import io
from importlib import resources
from typing import Any

from medvl.eval.report import fmt, fmt_estimate, fmt_p

MAX_GROUPS = 40  # categories drawn per breakdown plot (largest n first); the tables keep all
_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3")


def report_tables(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Tables as ``{title, note, header, rows}`` with every cell already a string."""
    runs = [r["name"] for r in report["runs"]]
    tables = [_runs_table(report), _overall_table(report, runs)]
    if report["tests"]:
        tables.append(_tests_table(report))
    if report["corpus"]:
        rows = [[m, *(fmt(v.get(r)) for r in runs)] for m, v in report["corpus"].items()]
        tables.append(_table("Corpus-level metrics", ["metric", *runs], rows))
    headline = report["headline"]
    for key, groups in report["breakdowns"].items():
        rows = []
        for group in _scored_groups(groups, headline):
            per_run = groups[group][headline]
            n = next((e["n"] for e in per_run.values() if e), 0)
            rows.append([group, str(n), *(fmt_estimate(per_run.get(r)) for r in runs)])
        note = f"{headline}, mean [95% CI]; every metric of every group is in estimates.csv"
        tables.append(_table(f"By {key}", [key, "n", *runs], rows, note, plot=f"by:{key}"))
    return tables


def _table(
    title: str, header: list[str], rows: list[list[str]], note: str = "", plot: str = ""
) -> dict[str, Any]:
    """A table; ``plot`` names the plot (:func:`report_plots`) shown under it in the HTML."""
    return {"title": title, "header": header, "rows": rows, "note": note, "plot": plot}


def _scored_groups(groups: dict[str, dict[str, Any]], metric: str) -> list[str]:
    """The groups (in name order) where ``metric`` has a value for some run."""
    return [g for g, cells in groups.items() if any((cells.get(metric) or {}).values())]


def _runs_table(report: dict[str, Any]) -> dict[str, Any]:
    header = ["run", "records", "missing", "empty", "duplicate", "unknown", "unparsed MCQ"]
    header += ["data sha256", "predictions sha256", "model"]
    rows = []
    for run in report["runs"]:
        c = run["counts"]
        cells = [run["name"], str(run["n_records"])]
        cells += [str(c.get(k, 0)) for k in ("missing", "empty", "duplicate", "unknown")]
        rate = run["unparsed_rate"]
        cells.append("–" if rate is None else f"{100 * rate:.1f}%")
        cells += [(run["data_sha256"] or "")[:12], (run["predictions_sha256"] or "")[:12]]
        cells.append(", ".join(run["models"]) or "–")
        rows.append(cells)
    pairing = report["pairing"]
    note = f"baseline: {report['baseline']}; {pairing['common_ids']} ids common to all runs"
    return _table("Runs", header, rows, note)


def _overall_table(report: dict[str, Any], runs: list[str]) -> dict[str, Any]:
    rows = []
    for metric, per_run in report["overall"].items():
        n = per_run.get(report["baseline"]) or next((e for e in per_run.values() if e), None)
        rows.append(
            [metric, str(n["n"] if n else 0), *(fmt_estimate(per_run.get(r)) for r in runs)]
        )
    note = "mean [95% percentile-bootstrap CI] over each run's records"
    return _table("Overall", ["metric", "n", *runs], rows, note, plot="overall")


def _tests_table(report: dict[str, Any]) -> dict[str, Any]:
    header = ["metric", "run", "n paired", report["baseline"], "run mean", "delta [95% CI]"]
    header += ["p (paired bootstrap)", "McNemar b/c", "p (McNemar)"]
    rows = []
    for t in report["tests"]:
        mc = t["mcnemar"]
        delta = f"{t['delta']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]"
        cells = [t["metric"], t["run"], str(t["n"]), fmt(t["mean_baseline"]), fmt(t["mean_run"])]
        cells += [delta, fmt_p(t["p_value"])]
        cells += (
            [f"{mc['b']}/{mc['c']}", f"{fmt_p(mc['p_value'])} ({mc['method']})"]
            if mc
            else ["–", "–"]
        )
        rows.append(cells)
    note = "delta = run − baseline on the paired records; McNemar for 0/1 metrics only"
    title = f"Against the baseline ({report['baseline']})"
    return _table(title, header, rows, note, plot="deltas")


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
    """``{plot id: {title, png}}``: ``overall``, ``deltas`` (against the baseline) and
    ``by:KEY`` per breakdown key; a run keeps its colour in every plot."""
    runs = [r["name"] for r in report["runs"]]
    colors = {run: _COLORS[i % len(_COLORS)] for i, run in enumerate(runs)}
    plots = {}
    metrics = list(report["overall"])
    if metrics:
        series = {r: [report["overall"][m].get(r) for m in metrics] for r in runs}
        title = "Overall (mean, 95% CI)"
        plots["overall"] = {"title": title, "png": _bars(title, metrics, series, "score", colors)}
    if report["tests"]:
        plots["deltas"] = {
            "title": "Deltas against the baseline",
            "png": _delta_plot(report, colors),
        }
    headline = report["headline"]
    for key, groups in report["breakdowns"].items():
        labels = _largest_groups(groups, headline)
        if not labels:
            continue
        series = {r: [groups[g][headline].get(r) for g in labels] for r in runs}
        title = f"{headline} by {key} (mean, 95% CI)"
        plots[f"by:{key}"] = {"title": title, "png": _bars(title, labels, series, headline, colors)}
    return plots


def _largest_groups(groups: dict[str, dict[str, Any]], metric: str) -> list[str]:
    """Up to :data:`MAX_GROUPS` scored groups with the most records, in name order."""

    def size(group: str) -> int:
        return max((e or {}).get("n", 0) for e in groups[group][metric].values())

    scored = _scored_groups(groups, metric)
    return sorted(sorted(scored, key=size, reverse=True)[:MAX_GROUPS])


def _delta_plot(report: dict[str, Any], colors: dict[str, str]) -> str:
    runs = [r["name"] for r in report["runs"] if r["name"] != report["baseline"]]
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
        report=report, tables=report_tables(report), plots=report_plots(report)
    )

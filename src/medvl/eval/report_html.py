"""The comparison report's plots and its self-contained HTML page.

The tables come from :func:`medvl.eval.report_tables.report_tables` (shared with Markdown).
:func:`report_plots` draws the charts with matplotlib's object API (no pyplot state) as base64
PNGs: overall means with their 95% intervals, the deltas against the baseline with
paired-bootstrap intervals, and per-category bars of the headline metric. :func:`render_html`
fills ``resources/report.html.jinja``: inline CSS, images as ``data:`` URIs, no external
resource, so the file can be mailed or archived alone. :func:`gallery_views` adds the gallery's
thumbnails (small base64 JPEGs, :func:`medvl.eval.report_gallery.thumbnail`) at render time; the
report dict keeps image paths only.
"""

from __future__ import annotations

import base64
import io
import json
from importlib import resources
from typing import Any

from medvl.eval.report_gallery import filmstrip, thumbnail
from medvl.eval.report_tables import (
    SMALL_LEGEND,
    SMALL_MARK,
    comparisons,
    report_tables,
    scored_groups,
)

MAX_GROUPS = 40  # categories drawn per breakdown plot (largest n first); the tables keep all
_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3")


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

    scored = scored_groups(groups, metric)
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
        galleries=gallery_views(report),
        small_mark=SMALL_MARK,
        small_legend=SMALL_LEGEND,
    )


def gallery_views(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per comparison with a gallery: ``{title, rules, problem, sections}``; each section is
    ``(heading, examples)`` and each example gains ``thumbs`` (``{src, why}`` per image) and
    ``strips`` (``{frames, why}`` per video: :func:`~medvl.eval.report_gallery.filmstrip`)."""
    cache: dict[str, Any] = {}  # image path or video entry (JSON) -> its thumbnail(s)
    views = []
    several = len(comparisons(report)) > 1
    for c in comparisons(report):
        gallery = c.get("gallery")
        if not gallery:
            continue
        sections = []
        if gallery["disagreements"]:
            heading = f"Where the runs disagree (baseline {c['baseline']})"
            sections.append((heading, _with_thumbs(gallery["disagreements"], cache)))
        for run, examples in gallery["errors"].items():
            if examples:
                sections.append((f"Assertive errors of {run}", _with_thumbs(examples, cache)))
        prefix = f"{c['benchmark']}: " if several else ""
        views.append(
            {
                "title": f"{prefix}Examples",
                "rules": gallery["rules"],
                "problem": gallery["problem"],
                "sections": sections,
            }
        )
    return views


def _with_thumbs(examples: list[dict[str, Any]], cache: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for example in examples:
        thumbs = []
        for path in example["images"]:
            if path not in cache:
                cache[path] = thumbnail(path)
            src, why = cache[path]
            thumbs.append({"src": src, "why": why})
        strips = []
        for entry in example.get("videos") or []:
            key = json.dumps(entry, sort_keys=True)
            if key not in cache:
                cache[key] = filmstrip(entry)
            frames, why = cache[key]
            strips.append({"frames": frames, "why": why})
        out.append({**example, "thumbs": thumbs, "strips": strips})
    return out


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

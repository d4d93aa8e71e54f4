"""The report's tables, shared by its Markdown and HTML pages, and their number formats.

:func:`report_tables` turns a report dict (:func:`medvl.eval.report.build_report`) into plain
tables: the runs, the model x benchmark table (with the published numbers under the same protocol
below it), then per benchmark the overall means, the tests against the baseline (raw and
Holm-adjusted p), corpus metrics, breakdowns and per-category deltas against the baseline. The
first table says what was compared (:mod:`medvl.eval.report_identity`), the last explains every
metric id shown (:mod:`medvl.eval.glossary`). Run columns are headed ``run · protocol``; ``n``
columns read ``n (clusters)`` and flag cells of fewer than :data:`SMALL_N` records. Every cell is a
string.
"""

from __future__ import annotations

from typing import Any

from medvl.eval.glossary import UNKNOWN, lookup

#: Cells with fewer records than this are flagged with :data:`SMALL_MARK`.
SMALL_N = 10
SMALL_MARK = f"⚠ n<{SMALL_N}"
SMALL_LEGEND = (
    f"{SMALL_MARK}: fewer than {SMALL_N} records in this cell; its interval is wide (none for "
    "a single record), so read it as an anecdote, not an estimate"
)


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table, or an en dash for none."""
    return "–" if value is None else f"{value:.{digits}f}"


def fmt_estimate(est: dict[str, Any] | None) -> str:
    """``0.612 [0.571, 0.650]`` for an estimate dict."""
    if not est or est.get("mean") is None:
        return "–"
    return f"{fmt(est['mean'])} [{fmt(est['ci_low'])}, {fmt(est['ci_high'])}]"


def fmt_n(est: dict[str, Any] | None) -> str:
    """``n (clusters)``, e.g. ``40 (12)``; fewer than :data:`SMALL_N` records are flagged."""
    if not est:
        return "0"
    clusters = est.get("clusters")
    text = str(est["n"]) if clusters is None else f"{est['n']} ({clusters})"
    return f"{text} {SMALL_MARK}" if est["n"] < SMALL_N else text


def fmt_p(p: float | None) -> str:
    """A p-value: three decimals, or ``<0.001``."""
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def comparisons(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-benchmark comparisons of a report (a ``paired`` report is its own)."""
    return report.get("comparisons") or [report]


def report_tables(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Tables as ``{title, note, header, rows, plot, footer}`` with every cell a string."""
    tables = [identity_table(report), _runs_table(report), _benchmark_table(report)]
    several = len(comparisons(report)) > 1
    for i, comparison in enumerate(comparisons(report)):
        prefix = f"{comparison['benchmark']}: " if several else ""
        tables += _comparison_tables(comparison, prefix, f"{i}:")
    tables.append(glossary_table(report))
    return tables


def identity_table(report: dict[str, Any]) -> dict[str, Any]:
    """What was compared: one row per fact (benchmark, data, prompt, settings, model), one
    column per run."""
    runs = report["runs"]
    facts = list(dict.fromkeys(k for run in runs for k in run.get("identity") or {}))
    rows = [
        [fact, *((run.get("identity") or {}).get(fact, "not recorded") for run in runs)]
        for fact in facts
    ]
    note = (
        "from each run's run.json (medvl eval run), metrics.json settings and the first line of "
        "its predictions file; 'not recorded' where none of them says"
    )
    return _table("What was compared", ["", *(r["name"] for r in runs)], rows, note)


def shown_metrics(report: dict[str, Any]) -> list[tuple[str, str]]:
    """``(metric id, protocol)`` of every metric the report shows, in table order."""
    shown: dict[tuple[str, str], None] = {}
    for c in comparisons(report):
        for table in ("overall", "corpus"):
            for metric, per_run in c[table].items():
                for run, value in per_run.items():
                    if value is not None:
                        shown[(metric, c["protocols"].get(run, "medvl"))] = None
    return list(shown)


def glossary_table(report: dict[str, Any]) -> dict[str, Any]:
    """Every metric id shown, with the records it applies to and one sentence on it; an id
    meaning something else under another tool's protocol gets a row per meaning."""
    rows: dict[tuple[str, str | None], list[str]] = {}
    for metric, protocol in shown_metrics(report):
        entry = lookup(metric, protocol)
        key = (metric, entry.protocol if entry else protocol)
        if entry is None:
            rows[key] = [metric, protocol, "?", UNKNOWN]
        else:
            rows[key] = [metric, entry.protocol or "medvl", entry.label, entry.text]
    note = (
        "what each metric id measures and how (medvl.eval.glossary); 'defined by' is the tool "
        "whose rules give the id its meaning; every mean is over the records the metric applies "
        "to, missing answers scored 0"
    )
    header = ["metric", "defined by", "applies to", "what it measures"]
    return _table("Metric glossary", header, list(rows.values()), note)


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
        for group in scored_groups(groups, headline):
            per_run = groups[group][headline]
            first = next((e for e in per_run.values() if e), None)
            rows.append([group, fmt_n(first), *(fmt_estimate(per_run.get(r)) for r in runs)])
        note = f"{headline}, mean [95% CI]; every metric of every group is in estimates.csv"
        title = f"{prefix}By {key}"
        tables.append(_table(title, [key, "n (clusters)", *heads], rows, note, f"{plot}by:{key}"))
    if c.get("group_deltas"):
        tables.append(_group_delta_table(c, prefix))
    return tables


def _group_delta_table(c: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Per breakdown key and group: n paired, the baseline mean, then per run
    ``delta [95% CI]`` against the baseline."""
    runs = [r for r in c["run_names"] if r != c["baseline"]]
    rows = []
    for key, groups in c["group_deltas"].items():
        for group, per_run in groups.items():
            first = next(iter(per_run.values()))
            cells = [key, group, fmt_n(first), fmt(first["mean_baseline"])]
            cells += [fmt_delta(per_run[r]) if r in per_run else "–" for r in runs]
            rows.append(cells)
    heads = [f"{r} − {c['baseline']} [95% CI]" for r in runs]
    header = ["by", "group", "n paired (clusters)", f"{c['baseline']} mean", *heads]
    note = (
        f"{c['headline']}: run − baseline on the records of each group common to both "
        "(grouped by the baseline's record), paired cluster bootstrap 95% CI; not corrected "
        "for the number of groups: it says where a difference lies, not whether there is one"
    )
    return _table(f"{prefix}Deltas by category against {c['baseline']}", header, rows, note)


def fmt_delta(t: dict[str, Any]) -> str:
    """``+0.125 [-0.050, +0.300]`` for a paired test result."""
    if t.get("delta") is None:
        return "–"
    return f"{t['delta']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]"


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
    """A table; ``plot`` names the plot (:func:`medvl.eval.report_html.report_plots`) shown under
    it in the HTML, ``footer`` lines are listed under it."""
    return {
        "title": title,
        "header": header,
        "rows": rows,
        "note": note,
        "plot": plot,
        "footer": footer or [],
    }


def scored_groups(groups: dict[str, dict[str, Any]], metric: str) -> list[str]:
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
    if not published["lines"]:
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
        delta = fmt_delta(t)
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

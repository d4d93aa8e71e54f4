"""The Compare tab: two runs on the same data, the records they disagree on first, and the paired
statistics of ``medvl report``.

The statistics are :func:`medvl.eval.report.build_report`'s, unchanged: per metric, the paired
cluster bootstrap of the difference B - A over the ids common to both runs (interval and p,
Holm-adjusted across metrics) and McNemar's test on 0/1 metrics. Records are ordered by how much
the runs disagree: a different outcome first (one right, the other wrong), then a different
extracted answer or prediction, then agreement.

Everything below :func:`build_compare_tab` is plain Python, tested without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.eval.breakdown import BootstrapSettings
from medvl.eval.report import build_report
from medvl.eval.report_tables import fmt, fmt_p
from medvl.ui.pictures import picture
from medvl.ui.results import outcome
from medvl.ui.runs import RunView, open_run

#: Disagreement levels, most interesting first.
LEVELS = ("outcome differs", "answer differs", "agree")
PAIR_HEADERS = ["id", "disagreement", "gold", "A outcome", "B outcome", "A prediction", "B pred."]
TEST_HEADERS = [
    "metric",
    "n",
    "A mean",
    "B mean",
    "B - A",
    "95% CI",
    "p (bootstrap)",
    "p (Holm)",
    "McNemar b/c",
    "McNemar p",
]


@dataclass
class Comparison:
    """Two opened runs, their report (:func:`build_report`) and the paired ids in order."""

    a: RunView
    b: RunView
    report: dict[str, Any]
    pairs: list[tuple[str, str]]  # (id, level), disagreements first


def _answer(row: dict[str, Any]) -> str:
    value = row.get("extracted")
    return str(value if value is not None else row.get("prediction") or "").strip().lower()


def disagreement(row_a: dict[str, Any], row_b: dict[str, Any]) -> str:
    """One of :data:`LEVELS` for the two rows of one record."""
    if outcome(row_a) != outcome(row_b):
        return LEVELS[0]
    return LEVELS[1] if _answer(row_a) != _answer(row_b) else LEVELS[2]


def paired_ids(a: RunView, b: RunView) -> list[tuple[str, str]]:
    """``(id, level)`` for the ids common to both runs: disagreements first, file order within."""
    common = [i for i in a.run.rows if i in b.run.rows]
    levels = [(i, disagreement(a.run.rows[i], b.run.rows[i])) for i in common]
    return sorted(levels, key=lambda pair: LEVELS.index(pair[1]))


def compare_runs(path_a: str | Path, path_b: str | Path, resamples: int = 1000) -> Comparison:
    """Open both runs and compute the report with A as the baseline."""
    a, b = open_run(path_a), open_run(path_b)
    report = build_report(
        [a.run.path, b.run.path],
        names=_names(a, b),
        baseline=_names(a, b)[0],
        settings=BootstrapSettings(resamples=resamples),
    )
    return Comparison(a, b, report, paired_ids(a, b))


def _names(a: RunView, b: RunView) -> list[str]:
    return [f"A {a.name}", f"B {b.name}"]


def stats_table(comparison: Comparison) -> list[list[str]]:
    """One line per metric: the paired test of B against A (columns :data:`TEST_HEADERS`)."""
    lines = []
    for test in comparison.report.get("tests", []):
        mc = test.get("mcnemar")
        lines.append(
            [
                test["metric"],
                f"{test['n']} ({test['clusters']})",
                fmt(test["mean_baseline"]),
                fmt(test["mean_run"]),
                fmt(test["delta"]),
                f"[{fmt(test['ci_low'])}, {fmt(test['ci_high'])}]",
                fmt_p(test["p_value"]),
                fmt_p(test.get("p_holm")) + (" *" if test.get("significant") else ""),
                f"{mc['b']}/{mc['c']}" if mc else "–",
                fmt_p(mc["p_value"]) if mc else "–",
            ]
        )
    return lines


def summary_markdown(comparison: Comparison) -> str:
    """Counts of each disagreement level, what was paired, and the report's warnings."""
    counts = {level: 0 for level in LEVELS}
    for _, level in comparison.pairs:
        counts[level] += 1
    pairing = comparison.report.get("pairing") or {}
    lines = [
        f"**A** = `{comparison.a.run.path}` · **B** = `{comparison.b.run.path}` · "
        f"{pairing.get('common_ids', len(comparison.pairs))} records in common",
        "",
        " · ".join(f"**{n}** {level}" for level, n in counts.items()),
        "",
        "B - A per metric, paired on the common records (cluster bootstrap; * Holm-adjusted "
        "p < 0.05; McNemar b = only A right, c = only B right).",
    ]
    lines += [f"- ⚠ {w}" for w in comparison.report.get("warnings", [])]
    return "\n".join(lines)


def _short(text: Any, limit: int = 60) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pairs_table(comparison: Comparison) -> list[list[str]]:
    """One line per common record (columns :data:`PAIR_HEADERS`), disagreements first."""
    lines = []
    for record_id, level in comparison.pairs:
        ra, rb = comparison.a.run.rows[record_id], comparison.b.run.rows[record_id]
        lines.append(
            [
                record_id,
                level,
                _short(ra.get("gold"), 30),
                outcome(ra),
                outcome(rb),
                _short(ra.get("prediction")),
                _short(rb.get("prediction")),
            ]
        )
    return lines


def pair_markdown(comparison: Comparison, index: int) -> tuple[Any, str]:
    """(preview or None, markdown) of the ``index``-th pair: question, gold, both answers."""
    if not comparison.pairs:
        return None, "_The runs have no record in common._"
    record_id, level = comparison.pairs[max(0, min(index, len(comparison.pairs) - 1))]
    ra, rb = comparison.a.run.rows[record_id], comparison.b.run.rows[record_id]
    record = comparison.a.record(record_id) or comparison.b.record(record_id)
    images = comparison.a.image_paths(record_id) or comparison.b.image_paths(record_id)
    lines = [f"### {record_id} — {level}"]
    if record is not None:
        lines += [f"**Question:** {record.question}"]
    lines += [f"**Gold:** `{ra.get('gold')}`", ""]
    for label, row in (("A", ra), ("B", rb)):
        lines += [
            f"**{label}** ({outcome(row)}, extracted `{row.get('extracted')}`, "
            f"rule `{row.get('rule')}`):",
            "",
            "> " + " ".join(str(row.get("prediction") or "(empty)").split()),
            "",
        ]
    return (picture(images[0]) if images else None), "\n".join(lines)


def build_compare_tab(runs: list[str]) -> None:
    """The tab's components and events (call inside a ``gr.Tab`` of the app's ``gr.Blocks``)."""
    import gradio as gr

    from medvl.errors import MedvlError

    state = gr.State(None)
    with gr.Row():
        run_a = gr.Dropdown(
            runs,
            value=runs[0] if runs else None,
            label="Run A (baseline)",
            allow_custom_value=True,
        )
        run_b = gr.Dropdown(
            runs,
            value=runs[1] if len(runs) > 1 else None,
            label="Run B",
            allow_custom_value=True,
        )
        resamples = gr.Number(1000, label="Bootstrap resamples", precision=0, minimum=1)
        go = gr.Button("Compare", variant="primary", elem_id="compare-go")
    summary = gr.Markdown("Pick two run folders scored on the same data.")
    tests = gr.Dataframe(headers=TEST_HEADERS, interactive=False, label="Paired statistics")
    pairs = gr.Dataframe(
        headers=PAIR_HEADERS, interactive=False, wrap=True, max_height=320, label="Records"
    )
    with gr.Row():
        image = gr.Image(label="Image", type="pil", interactive=False, height=280, scale=1)
        detail = gr.Markdown(line_breaks=True)

    def run(a, b, n):
        if not a or not b:
            raise gr.Error("pick two run folders")
        try:
            comparison = compare_runs(a, b, int(n or 1000))
        except MedvlError as exc:
            raise gr.Error(str(exc)) from None
        shown = pair_markdown(comparison, 0)
        return (
            comparison,
            summary_markdown(comparison),
            stats_table(comparison),
            (pairs_table(comparison)),
            *shown,
        )

    def picked(comparison, evt: gr.SelectData):
        return pair_markdown(comparison, evt.index[0]) if comparison else (None, "")

    go.click(run, [run_a, run_b, resamples], [state, summary, tests, pairs, image, detail])
    picked.__annotations__["evt"] = gr.SelectData  # a string under PEP 563; Gradio needs the class
    pairs.select(picked, state, [image, detail])

"""The Results tab: open an eval run folder, filter its records, look at one, export the set.

Filters combine (AND): the outcome, answer type, question type, language, one meta key (any key
of the records' ``meta``, e.g. ``modality``) with one of its values, and a text search over the
id, question, gold answer and prediction. The outcome is read from the row's ``correct``: 1 is
*correct*, 0 is *wrong*, a value in between (open answers scored by a graded metric) is
*partial*, and no value (not scored, or a report scored only by corpus metrics) is *not scored*.
A record's images and the frames of its videos (volumes, series) are shown in a slice scroller.

Everything below :func:`build_results_tab` is plain Python, tested without a browser.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.errors import MedvlError
from medvl.eval.glossary import lookup
from medvl.fileio import atomic_write_bytes
from medvl.ui.runs import ROW_FIELDS, RunView, open_run
from medvl.ui.volume_view import build_scroller, record_media, scroller_updates

ALL = "(all)"
NONE = "(none)"
OUTCOMES = (ALL, "correct", "wrong", "partial", "not scored")
TABLE_HEADERS = ["id", "outcome", "kind", "question type", "lang", "gold", "prediction", "rule"]
_PREVIEW = 80
ROW_FILTER_KEYS = ("answer_type", "question_type", "lang")


def outcome(row: dict[str, Any]) -> str:
    """``correct`` (1), ``wrong`` (0), ``partial`` (in between) or ``not scored`` (None)."""
    value = row.get("correct")
    if value is None:
        return "not scored"
    if value >= 1.0:
        return "correct"
    return "wrong" if value <= 0.0 else "partial"


def field_value(view: RunView, row: dict[str, Any], key: str) -> str:
    """The row's value of ``key`` (a row field, else a meta key) as text; ``(none)`` if absent."""
    value = row.get(key) if key in ROW_FIELDS else view.meta(row).get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return NONE
    return str(value)


def meta_keys(view: RunView) -> list[str]:
    """Every meta key the run's rows or records carry, sorted."""
    return sorted({key for row in view.rows for key in view.meta(row)})


def choices(view: RunView, key: str) -> list[str]:
    """``(all)`` then the distinct values of ``key`` over the run, most frequent first."""
    counts: dict[str, int] = {}
    for row in view.rows:
        value = field_value(view, row, key)
        counts[value] = counts.get(value, 0) + 1
    return [ALL, *sorted(counts, key=lambda v: (-counts[v], v))]


@dataclass(frozen=True)
class RowFilter:
    """What the Results tab keeps; ``(all)`` or an empty ``meta_key``/``text`` keeps everything."""

    outcome: str = ALL
    answer_type: str = ALL
    question_type: str = ALL
    lang: str = ALL
    meta_key: str = ""
    meta_value: str = ALL
    text: str = ""

    def keeps(self, view: RunView, row: dict[str, Any]) -> bool:
        """Whether ``row`` passes every filter."""
        if self.outcome != ALL and outcome(row) != self.outcome:
            return False
        for key in ("answer_type", "question_type", "lang"):
            wanted = getattr(self, key)
            if wanted != ALL and field_value(view, row, key) != wanted:
                return False
        meta_wanted = self.meta_key and self.meta_value != ALL
        if meta_wanted and field_value(view, row, self.meta_key) != self.meta_value:
            return False
        return not self.text.strip() or self.text.strip().lower() in searchable(view, row)


def searchable(view: RunView, row: dict[str, Any]) -> str:
    """The lower-cased text a search looks in: id, question, gold and prediction."""
    record = view.record(row["id"])
    parts = [row["id"], record.question if record else "", row.get("gold"), row.get("prediction")]
    return "\n".join(str(p) for p in parts if p).lower()


def filter_rows(view: RunView, row_filter: RowFilter) -> list[dict[str, Any]]:
    """The rows that pass ``row_filter``, in file order."""
    return [row for row in view.rows if row_filter.keeps(view, row)]


def _short(text: Any, limit: int = _PREVIEW) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One short line per row for the tab's table (columns :data:`TABLE_HEADERS`)."""
    return [
        [
            row["id"],
            outcome(row),
            str(row.get("kind") or ""),
            str(row.get("question_type") or ""),
            str(row.get("lang") or ""),
            _short(row.get("gold"), 40),
            _short(row.get("prediction")),
            str(row.get("rule") or ""),
        ]
        for row in rows
    ]


def metric_lines(metrics: dict[str, Any], protocol: str | None = None) -> list[str]:
    """A Markdown table of one record's metrics, each explained by :mod:`medvl.eval.glossary`
    (under the run's ``protocol`` when it gives the id its own meaning)."""
    lines = ["| metric | value | applies to | what it measures |", "|---|---|---|---|"]
    for name, value in metrics.items():
        shown = (
            "–" if value is None else f"{value:.4g}" if isinstance(value, int | float) else value
        )
        entry = lookup(name, protocol)
        scope, text = (entry.label, entry.text) if entry else ("?", "")
        lines.append(f"| `{name}` | {shown} | {scope} | {text} |")
    return lines


def record_markdown(view: RunView, row: dict[str, Any]) -> str:
    """The whole story of one record: question, options, gold, prediction, extraction, metrics."""
    record = view.record(row["id"])
    lines = [f"### {row['id']} — {outcome(row)}"]
    if record is not None:
        lines += ["**Question**", "", _quote(record.question)]
        if record.options:
            lines += ["", *(f"- **{k}.** {v}" for k, v in record.options.items())]
        if record.videos:
            lines += [
                "",
                *(f"**Video {i + 1}:** `{_entry(v)}`" for i, v in enumerate(record.videos)),
            ]
    elif view.note:
        lines.append(f"_{view.note}_")
    lines += [
        "",
        f"**Gold:** {_inline(row.get('gold'))}",
        "",
        "**Prediction**",
        "",
        _quote(row.get("prediction") or "(empty)"),
        "",
        f"**Extracted answer:** {_inline(row.get('extracted'))} · "
        f"**rule:** {_inline(row.get('rule'))} · **correct:** {_inline(row.get('correct'))}",
    ]
    meta = view.meta(row)
    if meta:
        lines += ["", "**Meta:** " + ", ".join(f"{k}={v}" for k, v in sorted(meta.items()))]
    if row.get("metrics"):
        lines += ["", *metric_lines(row["metrics"], view.run.protocol)]
    return "\n".join(lines)


def _entry(spec: Any) -> str:
    """A video entry in one line, its frame list shortened."""
    entry = spec.to_dict()
    if "frames" in entry and len(entry["frames"]) > 2:
        frames = entry["frames"]
        entry["frames"] = [frames[0], f"... {len(frames) - 2} more ...", frames[-1]]
    return json.dumps(entry, ensure_ascii=False)


def _inline(value: Any) -> str:
    return "—" if value is None else f"`{value}`"


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in str(text).splitlines() or [""])


def export_row(view: RunView, row: dict[str, Any]) -> dict[str, Any]:
    """A scores row with its question, images, video entries (paths resolved against the data
    file's folder, as the images are) and outcome added (the exported form)."""
    record = view.record(row["id"])
    return {
        **row,
        "question": record.question if record else None,
        "images": [str(p) for p in view.image_paths(row["id"])],
        "videos": _videos(record, view.data_path) if record else [],
        "outcome": outcome(row),
        "meta": view.meta(row),
    }


def _videos(record: Any, data_path: Path | None) -> list[dict[str, Any]]:
    """The record's video entries with relative paths made absolute (kept as is without a
    data file to resolve them against)."""
    if data_path is None:
        return [spec.to_dict() for spec in record.videos]
    base = data_path.parent
    return [
        spec.rebased(lambda p: str(Path(p) if Path(p).is_absolute() else base / p)).to_dict()
        for spec in record.videos
    ]


def export_rows(view: RunView, rows: list[dict[str, Any]], fmt: str, out_dir: Path) -> Path:
    """Write ``rows`` as ``<run>.filtered.jsonl`` or ``.csv`` in ``out_dir``; returns the path.

    CSV columns: the row's scalar fields (``images`` joined by ``;``, ``videos`` as a JSON
    list of entries), then ``meta.<key>`` and ``metrics.<name>`` columns.
    """
    full = [export_row(view, row) for row in rows]
    path = Path(out_dir) / f"{view.name}.filtered.{fmt}"
    if fmt == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in full)
    elif fmt == "csv":
        text = _csv_text(full)
    else:
        raise ValueError(f"unknown export format {fmt!r}; use jsonl or csv")
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def _csv_text(rows: list[dict[str, Any]]) -> str:
    flat = []
    for row in rows:
        line = {k: v for k, v in row.items() if k not in ("meta", "metrics", "images", "videos")}
        line["images"] = ";".join(row["images"])
        line["videos"] = json.dumps(row["videos"], ensure_ascii=False) if row["videos"] else ""
        line.update({f"meta.{k}": v for k, v in row["meta"].items()})
        line.update({f"metrics.{k}": v for k, v in (row.get("metrics") or {}).items()})
        flat.append(line)
    columns = list(dict.fromkeys(k for line in flat for k in line))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue()


def count_line(shown: int, view: RunView) -> str:
    """``"12 of 40 records"`` plus the run's note, if any."""
    line = f"**{shown} of {len(view.rows)} records** in `{view.run.path}`"
    return f"{line}\n\n_{view.note}_" if view.note else line


def media(view: RunView, row: dict[str, Any]) -> list[Any]:
    """``(picture, caption)`` of the row's images, then of its videos' frames
    (:func:`medvl.ui.volume_view.record_media`); empty without the data record."""
    record = view.record(row["id"])
    if record is None or view.data_path is None:
        return []
    return record_media(record, view.data_path.parent)


def show(view: RunView, rows: list[dict[str, Any]], index: int) -> tuple[list[Any], str]:
    """(pictures with captions for the scroller, markdown) of the ``index``-th shown row."""
    if not rows:
        return [], "_No record matches the filters._"
    row = rows[max(0, min(index, len(rows) - 1))]
    return media(view, row), record_markdown(view, row)


def build_results_tab(runs: list[str], export_dir: Path) -> None:
    """The tab's components and events (call inside a ``gr.Tab`` of the app's ``gr.Blocks``)."""
    import gradio as gr

    view_state, rows_state = gr.State(None), gr.State([])
    with gr.Row():
        folder = gr.Dropdown(
            runs,
            value=runs[0] if runs else None,
            label="Run folder",
            allow_custom_value=True,
            scale=4,
            elem_id="results-run",
        )
        load = gr.Button("Open run", variant="primary", scale=1, elem_id="results-open")
    with gr.Row():
        outcome_box = gr.Dropdown(list(OUTCOMES), value=ALL, label="Outcome", elem_id="f-outcome")
        answer_type = gr.Dropdown([ALL], value=ALL, label="Answer type")
        question_type = gr.Dropdown([ALL], value=ALL, label="Question type")
        lang = gr.Dropdown([ALL], value=ALL, label="Language")
        meta_key = gr.Dropdown([], value=None, label="Meta key")
        meta_value = gr.Dropdown([ALL], value=ALL, label="Meta value")
        text = gr.Textbox(label="Search", placeholder="id, question, gold, prediction")
    count = gr.Markdown("Open a run folder written by `medvl eval run`.", elem_id="results-count")
    grid = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, wrap=True, max_height=320)
    with gr.Row():
        with gr.Column(scale=1):
            scroller = build_scroller("Image / slices", "results-scroller")
        detail = gr.Markdown(elem_id="results-detail", line_breaks=True)
    with gr.Row():
        fmt = gr.Radio(["jsonl", "csv"], value="jsonl", label="Export format")
        export = gr.Button("Export filtered set")
        exported = gr.File(label="Exported file", interactive=False)
    filters = [outcome_box, answer_type, question_type, lang, meta_key, meta_value, text]

    def shown(view, rows, index):
        items, markdown = show(view, rows, index)
        return *scroller_updates(items), markdown

    def apply(view, *values):
        if view is None:
            return [], [], "Open a run folder first.", *scroller_updates([]), ""
        rows = filter_rows(view, RowFilter(*(v if v is not None else "" for v in values)))
        return rows, table(rows), count_line(len(rows), view), *shown(view, rows, 0)

    def opened(path):
        try:
            view = open_run(path)
        except MedvlError as exc:
            raise gr.Error(str(exc)) from None
        picks = [gr.update(choices=choices(view, k), value=ALL) for k in ROW_FILTER_KEYS]
        keys = meta_keys(view)
        return view, *picks, gr.update(choices=keys, value=None), gr.update(choices=[ALL])

    outputs = [rows_state, grid, count, *scroller, detail]
    load.click(
        opened, folder, [view_state, answer_type, question_type, lang, meta_key, meta_value]
    ).then(apply, [view_state, *filters], outputs)
    for box in filters:
        box.change(apply, [view_state, *filters], outputs)
    meta_key.change(
        lambda view, key: gr.update(
            choices=choices(view, key) if view and key else [ALL], value=ALL
        ),
        [view_state, meta_key],
        meta_value,
    )

    def picked(view, rows, evt: gr.SelectData):
        return shown(view, rows, evt.index[0]) if view else (*scroller_updates([]), "")

    picked.__annotations__["evt"] = gr.SelectData  # a string under PEP 563; Gradio needs the class
    grid.select(picked, [view_state, rows_state], [*scroller, detail])
    export.click(
        lambda view, rows, f: export_rows(view, rows, f, export_dir) if view else None,
        [view_state, rows_state, fmt],
        exported,
    )

"""The Data tab: browse a canonical JSONL file with its images, its ``stats`` plots, and the
problems ``medvl data validate`` finds, record by record. A record's videos (volumes, series,
slice lists) are shown frame by frame in a slice scroller, as the model gets them.

One :func:`open_data` call reads the file once for browsing (:func:`check_jsonl`, which keeps
every record that parses) and once through :func:`medvl.data.validate.validate_jsonl` (schema,
turn order, empty answers, every image present and readable; no tokenizer, so no token-length
check). The plots are :func:`medvl.data.stats.plot_stats`'s, drawn into a scratch folder.

Everything below :func:`build_data_tab` is plain Python, tested without a browser.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.data.jsonl import check_jsonl
from medvl.data.record import Record
from medvl.data.stats import dataset_stats, format_stats_table, plot_stats
from medvl.data.validate import Problem, validate_jsonl
from medvl.errors import MedvlError
from medvl.ui.pictures import picture
from medvl.ui.volume_view import build_scroller, record_media, scroller_updates

RECORD_HEADERS = [
    "id",
    "split",
    "lang",
    "answer type",
    "question type",
    "modality",
    "question",
    "answer",
    "problems",
]
PROBLEM_HEADERS = ["id", "line", "code", "field", "message"]


@dataclass
class DataView:
    """A JSONL file: the records that parse, every validation problem, and the statistics."""

    path: Path
    records: list[Record]
    problems: list[Problem]
    stats: dict[str, Any]
    plots: list[Path] = field(default_factory=list)

    def problems_of(self, record_id: str) -> list[Problem]:
        """The validation problems of one record."""
        return [p for p in self.problems if p.record_id == record_id]

    def image_paths(self, record: Record) -> list[Path]:
        """The record's images resolved against the file's folder (present or not)."""
        return record.image_paths(self.path.parent)


def open_data(path: str | Path, plot_dir: Path | None = None) -> DataView:
    """Read, validate and summarise ``path``; plots go to ``plot_dir`` (a new scratch folder
    when None). A missing file raises a :class:`MedvlError` naming it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MedvlError(f"{path}: no such file; pass a canonical JSONL file (medvl data convert)")
    checked = check_jsonl(path)
    validation = validate_jsonl(path, check_images=True, workers=1)
    stats = dataset_stats(checked.records, path.parent)
    plot_dir = plot_dir or Path(tempfile.mkdtemp(prefix="medvl-ui-stats-"))
    plots = plot_stats(stats, plot_dir) if checked.records else []
    return DataView(path, checked.records, validation.problems, stats, plots)


def _short(text: Any, limit: int = 70) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def select_records(view: DataView, only_problems: bool = False, text: str = "") -> list[Record]:
    """The records to list: all, or only those with problems; optionally matching ``text`` in
    the id, question or answer (case-insensitive)."""
    needle = text.strip().lower()
    flagged = {p.record_id for p in view.problems}
    return [
        r
        for r in view.records
        if (not only_problems or r.id in flagged)
        and (not needle or needle in f"{r.id}\n{r.question}\n{r.answer or ''}".lower())
    ]


def records_table(view: DataView, records: list[Record]) -> list[list[str]]:
    """One line per record (columns :data:`RECORD_HEADERS`)."""
    return [
        [
            r.id,
            r.split,
            r.lang,
            r.answer_type or "",
            r.question_type or "",
            str(r.meta.get("modality") or ""),
            _short(r.question),
            _short(r.answer if r.answer is not None else r.reference, 40),
            str(len(view.problems_of(r.id))),
        ]
        for r in records
    ]


def problems_table(view: DataView) -> list[list[str]]:
    """Every validation problem, grouped by record in file order (columns
    :data:`PROBLEM_HEADERS`)."""
    ordered = sorted(view.problems, key=lambda p: (p.line if p.line is not None else 0, p.code))
    return [
        [p.record_id or "", "" if p.line is None else str(p.line), p.code, p.field, p.message]
        for p in ordered
    ]


def summary_markdown(view: DataView) -> str:
    """Records, records with problems, and problems by code."""
    flagged = {p.record_id or f"line {p.line}" for p in view.problems}
    codes: dict[str, int] = {}
    for p in view.problems:
        codes[p.code] = codes.get(p.code, 0) + 1
    line = f"**{len(view.records)} records** in `{view.path}` · **{len(flagged)}** with problems"
    if codes:
        line += " (" + ", ".join(f"{code}: {n}" for code, n in sorted(codes.items())) + ")"
    return line


def record_view(view: DataView, record: Record) -> tuple[list[Any], list[Any], str]:
    """(pictures of its images, ``(frame, caption)`` of its videos' frames, markdown) of one
    record: its turns, answer, videos, meta and problems."""
    images = [picture(p) for p in view.image_paths(record) if p.is_file()]
    images = [image for image in images if image is not None]
    lines = [f"### {record.id}", f"`{record.dataset}` · {record.split} · {record.lang}", ""]
    for message in record.messages:
        lines += [f"**{message.role}:**", "", _quote(message.content), ""]
    if record.options:
        lines += [*(f"- **{k}.** {v}" for k, v in record.options.items()), ""]
    lines.append(f"**Answer:** `{record.answer}` · {record.answer_type} · {record.question_type}")
    for i, spec in enumerate(record.videos):
        lines += ["", f"**Video {i + 1}:** {spec.kind} `{spec.paths(view.path.parent)[0]}`"]
    if record.meta:
        scalars = {k: v for k, v in record.meta.items() if not isinstance(v, list | dict)}
        lines += ["", "**Meta:** " + ", ".join(f"{k}={v}" for k, v in scalars.items())]
    for problem in view.problems_of(record.id):
        lines.append(f"- ⚠ `{problem.code}` {problem.field}: {problem.message}")
    missing = [str(p) for p in view.image_paths(record) if not p.is_file()]
    lines += [f"- ⚠ image not found: `{p}`" for p in missing]
    frames = record_media(record, view.path.parent, with_images=False) if record.videos else []
    return images, frames, "\n".join(lines)


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines() or [""])


def build_data_tab(data: str | None) -> None:
    """The tab's components and events (call inside a ``gr.Tab`` of the app's ``gr.Blocks``)."""
    import gradio as gr

    view_state, shown_state = gr.State(None), gr.State([])
    with gr.Row():
        path = gr.Textbox(data or "", label="Canonical JSONL file", scale=4)
        load = gr.Button("Open", variant="primary", scale=1, elem_id="data-open")
    summary = gr.Markdown("Open a canonical JSONL file (`medvl data convert` writes one).")
    with gr.Row():
        only = gr.Checkbox(False, label="Only records with problems")
        text = gr.Textbox(label="Search", placeholder="id, question, answer")
    grid = gr.Dataframe(headers=RECORD_HEADERS, interactive=False, wrap=True, max_height=300)
    with gr.Row():
        with gr.Column(scale=1):
            images = gr.Gallery(label="Images", columns=3, height=280, object_fit="contain")
            scroller = build_scroller("Video frames", "data-scroller", height=260, visible=False)
        detail = gr.Markdown(line_breaks=True)
    problems = gr.Dataframe(
        headers=PROBLEM_HEADERS, interactive=False, wrap=True, label="Validation problems"
    )
    with gr.Accordion("Statistics (medvl data stats)", open=True):
        plots = gr.Gallery(label="Plots", columns=4, height=260, object_fit="contain")
    with gr.Accordion("Statistics as a table", open=False):
        stats_text = gr.Code(label="Table", language=None, max_lines=30)

    def shown(view, record):
        pictures, frames, markdown = record_view(view, record)
        return pictures, *scroller_updates(frames, True), markdown

    def listed(view, only_problems, needle):
        if view is None:
            return [], [], [], *scroller_updates([], True), ""
        records = select_records(view, only_problems, needle or "")
        if not records:
            return [], [], [], *scroller_updates([], True), "_No record matches._"
        return records, records_table(view, records), *shown(view, records[0])

    def opened(file):
        try:
            view = open_data(file)
        except MedvlError as exc:
            raise gr.Error(str(exc)) from None
        plot_files = [str(p) for p in view.plots]
        table = format_stats_table(view.stats)
        return view, summary_markdown(view), plot_files, table, problems_table(view)

    def picked(view, records, evt: gr.SelectData):
        if not view or not records:
            return [], *scroller_updates([], True), ""
        return shown(view, records[evt.index[0]])

    outputs = [shown_state, grid, images, *scroller, detail]
    load.click(opened, path, [view_state, summary, plots, stats_text, problems]).then(
        listed, [view_state, only, text], outputs
    )
    only.change(listed, [view_state, only, text], outputs)
    text.submit(listed, [view_state, only, text], outputs)
    picked.__annotations__["evt"] = gr.SelectData  # a string under PEP 563; Gradio needs the class
    grid.select(picked, [view_state, shown_state], [images, *scroller, detail])

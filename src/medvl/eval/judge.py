"""An LLM judge for open answers, run after scoring: optional, never the default.

Rule metrics (exact match, token F1) call "left lung" wrong against "lung, left". A judge model
served behind any OpenAI-compatible endpoint (vLLM serving Qwen, ``medvl serve``) is asked, with a
fixed and versioned prompt (:data:`PROMPT_VERSION`, :data:`SYSTEM_PROMPT`,
:data:`USER_TEMPLATE`), whether the prediction answers the question with the same meaning as the
reference. It reads a run folder's ``scores.jsonl`` and the data records (for the questions) and
adds to that folder:

- ``judge.jsonl``: one line per judged record (id, verdict, raw reply, cache key, source);
- ``judge_review.csv``: a seeded sample for human review, disagreements with the rule first;
- a ``judge`` section in ``metrics.json`` (:mod:`medvl.eval.judge_report`).

**Verdicts** (:func:`parse_verdict`) are read deterministically from the reply, never guessed:
``correct``, ``incorrect`` or ``unparsed``. Records without a prediction (missing or empty) are
``incorrect`` without a request, as the rule metrics score them 0. A request the server refuses
(4xx for that one request) is ``error`` and is retried on the next run.

**Cache**: verdicts are stored in a JSONL file (default ``OUT/judge_cache.jsonl``) keyed by the
SHA-256 of (prompt version, question, reference, prediction, judge model); each verdict is
appended and fsynced as it arrives, so a killed run resumes, and a rerun with everything cached
sends no request at all (not even the model check). Requests are sent with temperature 0 by a
few threads, each with a timeout.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.data.record import Record
from medvl.eval.judge_client import (
    CORRECT,
    DEFAULT_KINDS,
    ERROR,
    INCORRECT,
    KINDS,
    UNPARSED,
    JudgeClient,
    JudgeConfig,
    JudgeError,
    VerdictCache,
)
from medvl.eval.scoring import gold_answer

__all__ = [
    "CORRECT",
    "DEFAULT_KINDS",
    "INCORRECT",
    "KINDS",
    "PROMPT_VERSION",
    "UNPARSED",
    "JudgeConfig",
    "JudgeError",
    "JudgeRun",
    "cache_key",
    "judge_messages",
    "parse_verdict",
    "run_judge",
]

PROMPT_VERSION = "medvl-judge/1"
SYSTEM_PROMPT = (
    "You grade answers to questions about medical images. You are given the question, the "
    "reference answer and a model's answer; you do not see the image. Decide whether the "
    "model's answer gives the same answer to the question as the reference, in meaning. "
    "Synonyms, abbreviations, spelling variants, word order and extra words that neither change "
    "nor contradict the meaning are fine. An answer that contradicts the reference, names "
    "something else, hedges between several answers, or leaves out a part of the reference that "
    "the question asks for is INCORRECT. Reply with exactly one word: CORRECT or INCORRECT."
)
USER_TEMPLATE = (
    "<question>\n{question}\n</question>\n"
    "<reference>\n{reference}\n</reference>\n"
    "<answer>\n{prediction}\n</answer>\n"
    "Is the answer correct? Reply with one word: CORRECT or INCORRECT."
)
CACHE_NAME, VERDICTS_NAME, REVIEW_NAME = "judge_cache.jsonl", "judge.jsonl", "judge_review.csv"

_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_LEAD_RE = re.compile(
    r"^[\s*_`\"'#>\-]*(?:(?:final\s+)?(?:verdict|answer|judg(?:e)?ment|grade)\s*[:\-]\s*)?"
    r"[\s*_`\"']*([A-Za-z]+)",
    re.IGNORECASE,
)
_VERDICT_WORD_RE = re.compile(r"\b(correct|incorrect)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Item:
    """One record to judge: its texts, the rule verdict (``correct``) and the cache key."""

    id: str
    kind: str
    question: str
    reference: str
    prediction: str | None
    rule: float | None
    key: str
    cluster: str | None = None  # the scores row's resampling cluster (image/patient)


# ---------------------------------------------------------------- prompt and verdict


def judge_messages(question: str, reference: str, prediction: str) -> list[dict[str, str]]:
    """The chat messages sent for one record (system prompt + filled user template)."""
    user = USER_TEMPLATE.format(
        question=question.strip(), reference=reference.strip(), prediction=prediction.strip()
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_verdict(reply: str | None) -> str:
    """``correct``, ``incorrect`` or ``unparsed``, read from the reply without guessing.

    ``<think>...</think>`` blocks are removed (an unclosed one is unparsed). The first word of
    the first non-empty line, after markdown marks and an optional ``Verdict:``/``Answer:``
    label, must be CORRECT or INCORRECT (any case), and that line must not name both verdicts.
    "Correct.", "**INCORRECT**" and "Verdict: correct" parse; "The answer is correct", "Not
    correct", "1" and "CORRECT or INCORRECT" do not.
    """
    if not reply:
        return UNPARSED
    text = _THINK_RE.sub("", reply)
    if "<think>" in text.lower():
        return UNPARSED
    line = next((part for part in text.splitlines() if part.strip()), "")
    found = _LEAD_RE.match(line)
    word = found.group(1).lower() if found else ""
    if word not in (CORRECT, INCORRECT):
        return UNPARSED
    if len({w.lower() for w in _VERDICT_WORD_RE.findall(line)}) > 1:
        return UNPARSED
    return word


def cache_key(question: str, reference: str, prediction: str, model: str) -> str:
    """SHA-256 hex of (prompt version, question, reference, prediction, judge model)."""
    parts = [PROMPT_VERSION, question, reference, prediction, model]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


# ---------------------------------------------------------------- the step


def record_texts(record: Record) -> tuple[str, str]:
    """``(question, reference)`` as the judge sees them; for a multiple-choice record the
    options follow the question and the reference is the gold letter with its option text."""
    question, reference = record.question, gold_answer(record) or ""
    if record.options:
        listed = "\n".join(f"{k}. {v}" for k, v in record.options.items())
        question = f"{question}\nOptions:\n{listed}"
        reference = f"{reference}. {record.options.get(reference, '')}".strip()
    return question, reference


def select_items(
    rows: Sequence[Mapping[str, Any]],
    records: Mapping[str, Record],
    kinds: Sequence[str],
    model: str,
) -> list[Item]:
    """The scores rows of ``kinds`` as :class:`Item`, in data order (prediction None when the
    record has no usable prediction: missing, empty or an error)."""
    items = []
    for row in rows:
        if row.get("kind") not in kinds:
            continue
        question, reference = record_texts(records[row["id"]])
        text = row.get("prediction")
        prediction = text if isinstance(text, str) and text.strip() else None
        correct = row.get("correct")
        key = cache_key(question, reference, prediction or "", model)
        rule = float(correct) if correct is not None else None
        items.append(
            Item(
                row["id"],
                row["kind"],
                question,
                reference,
                prediction,
                rule,
                key,
                row.get("cluster"),
            )
        )
    return items


def judge_items(
    items: Sequence[Item], cache: VerdictCache, config: JudgeConfig, model: str
) -> tuple[list[dict[str, Any]], int]:
    """One verdict row per item; returns ``(rows, requests sent)``.

    Cached keys and empty predictions send nothing; each distinct uncached key is asked once.
    """
    todo: dict[str, Item] = {}
    for item in items:
        if item.prediction is not None and cache.get(item.key) is None:
            todo.setdefault(item.key, item)
    refused: dict[str, str] = {}
    if todo:
        refused = _ask_all(list(todo.values()), cache, config, model)
    rows = [_verdict_row(item, cache, refused, todo) for item in items]
    return rows, len(todo)


def _ask_all(
    items: Sequence[Item], cache: VerdictCache, config: JudgeConfig, model: str
) -> dict[str, str]:
    """Ask the server about ``items`` (``config.workers`` in flight); cache each verdict as it
    arrives. Returns key -> refusal message for requests the server refused."""
    client = JudgeClient(config)
    refused: dict[str, str] = {}
    try:
        model = client.resolve_model(model)
        with ThreadPoolExecutor(config.workers, thread_name_prefix="medvl-judge") as pool:
            pending: set[Future] = {pool.submit(_ask_one, client, model, i) for i in items}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        key, reply, problem = future.result()  # re-raises JudgeError
                        if problem is not None:
                            refused[key] = problem
                        else:
                            cache.add([_cache_entry(key, reply, model)])
            finally:
                for future in pending:
                    future.cancel()
    finally:
        client.close()
    return refused


def _ask_one(client: JudgeClient, model: str, item: Item) -> tuple[str, str | None, str | None]:
    messages = judge_messages(item.question, item.reference, item.prediction or "")
    reply, problem = client.ask(model, messages)
    return item.key, reply, problem


def _cache_entry(key: str, reply: str | None, model: str) -> dict[str, Any]:
    return {
        "key": key,
        "verdict": parse_verdict(reply),
        "reply": reply,
        "prompt_version": PROMPT_VERSION,
        "model": model,
    }


def _verdict_row(
    item: Item, cache: VerdictCache, refused: Mapping[str, str], asked: Mapping[str, Item]
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": item.id,
        "kind": item.kind,
        "key": item.key,
        "rule": item.rule,
        "cluster": item.cluster,
    }
    if item.prediction is None:
        return {**row, "verdict": INCORRECT, "reply": None, "source": "no prediction"}
    if item.key in refused:
        return {**row, "verdict": ERROR, "reply": None, "source": refused[item.key]}
    entry = cache.get(item.key) or {}
    source = "judge" if item.key in asked else "cache"
    return {
        **row,
        "verdict": entry.get("verdict", ERROR),
        "reply": entry.get("reply"),
        "source": source,
    }


@dataclass(frozen=True)
class JudgeRun:
    """What :func:`run_judge` wrote, its ``judge`` section, and how many requests it sent."""

    verdicts_path: Path
    review_path: Path
    metrics_path: Path
    section: dict[str, Any]
    requests: int


def run_judge(
    out_dir: str | Path, config: JudgeConfig, data_path: str | Path | None = None
) -> JudgeRun:
    """Judge a scored run folder (``scores.jsonl`` + ``metrics.json``) and add to it.

    ``data_path`` (the scored records, for the questions) defaults to the data file recorded in
    ``metrics.json``.
    """
    from medvl.eval.judge_report import judge_section, review_rows, write_review
    from medvl.fileio import atomic_write_json, atomic_writer

    out_dir = Path(out_dir)
    rows, body = _scored_run(out_dir)
    records = _records(Path(data_path or body["settings"]["data"]), rows)
    for stale in (out_dir / VERDICTS_NAME, out_dir / REVIEW_NAME):  # never left from a past run
        stale.unlink(missing_ok=True)
    model = config.model or _served_model(config)
    items = select_items(rows, records, config.kinds, model)
    cache = VerdictCache(config.cache or out_dir / CACHE_NAME)
    verdicts, requests = judge_items(items, cache, config, model)
    verdicts_path = out_dir / VERDICTS_NAME
    with atomic_writer(verdicts_path) as handle:
        for row in verdicts:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    texts = {
        i.id: {"question": i.question, "reference": i.reference, "prediction": i.prediction}
        for i in items
    }
    review_path = out_dir / REVIEW_NAME
    write_review(review_path, review_rows(verdicts, texts, config.sample, config.seed))
    about = {
        "prompt_version": PROMPT_VERSION,
        "model": model,
        "url": config.url.rstrip("/"),
        "kinds": list(config.kinds),
        "requests": requests,
        "cache": str(cache.path),
        "verdicts_file": str(verdicts_path),
        "review_file": str(review_path),
        "review_rows": min(config.sample, len(verdicts)),
        "review_seed": config.seed,
        "rule_protocol": _protocol(body),
    }
    section = judge_section(verdicts, about, _bootstrap(body))
    body["judge"] = section
    metrics_path = out_dir / "metrics.json"
    atomic_write_json(metrics_path, body)
    return JudgeRun(verdicts_path, review_path, metrics_path, section, requests)


def _scored_run(out_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of ``scores.jsonl`` and the body of ``metrics.json`` of a scored run folder."""
    scores, metrics = out_dir / "scores.jsonl", out_dir / "metrics.json"
    if not scores.is_file() or not metrics.is_file():
        raise JudgeError(
            f"{out_dir}: no scores.jsonl/metrics.json; the judge runs on a scored run folder "
            "(run 'medvl eval score' or 'medvl eval run' first)"
        )
    with scores.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return rows, json.loads(metrics.read_text(encoding="utf-8"))


def _records(data_path: Path, rows: Sequence[Mapping[str, Any]]) -> dict[str, Record]:
    """The data records by id; every scored id must be there."""
    from medvl.data.jsonl import read_records

    if not data_path.is_file():
        raise JudgeError(f"{data_path}: the scored data file is gone; pass it again with --data")
    records = {r.id: r for r in read_records(data_path)}
    absent = [row["id"] for row in rows if row["id"] not in records]
    if absent:
        raise JudgeError(
            f"{data_path}: {len(absent)} scored ids are not in this data file (e.g. "
            f"{absent[0]!r}); judge with the data file the run was scored on"
        )
    return records


def _protocol(body: Mapping[str, Any]) -> str:
    """The scoring protocol that set the rows' ``correct`` (``settings.protocol``)."""
    spec = body.get("settings", {}).get("protocol")
    return str((spec.get("name") if isinstance(spec, Mapping) else spec) or "medvl")


def _served_model(config: JudgeConfig) -> str:
    client = JudgeClient(config)
    try:
        return client.resolve_model(None)
    finally:
        client.close()


def _bootstrap(body: Mapping[str, Any]) -> Any:
    """The run's bootstrap settings (only the fields :class:`BootstrapSettings` knows)."""
    from dataclasses import fields

    from medvl.eval.breakdown import BootstrapSettings

    saved = body.get("settings", {}).get("bootstrap") or {}
    known = {f.name for f in fields(BootstrapSettings)}
    return BootstrapSettings(**{k: v for k, v in saved.items() if k in known})

"""Run a pipeline step by step, skipping steps whose inputs and settings did not change.

A step's fingerprint hashes its kind, its resolved settings, its recipe's content, the content of
the files it reads from outside the pipeline, and the fingerprints of the steps it reads from. A
finished step leaves ``<out>/.medvl_step.json`` with its fingerprint; on the next run an equal
fingerprint means "up to date". So rerunning after a crash or an edit redoes only the changed
step and the steps after it that read from it. A training step killed half way resumes from its
last complete checkpoint when rerun with unchanged settings, and an eval step from its prediction
cache (:mod:`medvl.eval.runner`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.errors import ConfigError
from medvl.fileio import atomic_write_json
from medvl.pipeline.spec import Pipeline, Step
from medvl.pipeline.steps import KINDS, ProgressMaker, external_inputs
from medvl.provenance import file_sha256, versions

logger = logging.getLogger(__name__)
DONE = ".medvl_step.json"
STARTED = ".medvl_step_started.json"
RESUMABLE = ("sft", "grpo")  # resume from their last complete checkpoint
CACHED = ("eval",)  # keep their prediction cache; the runner predicts only what is missing


def _content_hash(path: Path) -> str:
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()  # a folder: names, sizes and mtimes (content would be too slow)
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = item.stat()
        digest.update(f"{item.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def fingerprint(step: Step, upstream: dict[str, str], workdir: Path) -> str:
    """The hash that decides whether ``step`` is up to date."""
    outside = [p for p in external_inputs(step) if workdir.resolve() not in p.resolve().parents]
    payload = {
        "kind": step.kind,
        "params": step.params,
        "inputs": {str(p): _content_hash(p) for p in outside},
        "upstream": {name: upstream[name] for name in step.depends},
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class StepPlan:
    """Whether a step will run, and why."""

    step: Step
    fingerprint: str
    up_to_date: bool
    reason: str


@dataclass
class RunResult:
    """What a pipeline run did, step by step."""

    plans: list[StepPlan]
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def check_kinds(pipeline: Pipeline) -> None:
    """Refuse a pipeline with a step of a kind medvl does not know, before anything runs."""
    for index, step in enumerate(pipeline.steps, start=1):
        if step.kind not in KINDS:
            raise ConfigError(
                f"{pipeline.source}: step {index} ({step.name}): unknown kind {step.kind!r}; "
                f"kinds: {', '.join(KINDS)}"
            )


def plan(pipeline: Pipeline) -> list[StepPlan]:
    """Decide for every step whether it is up to date (nothing is run)."""
    check_kinds(pipeline)
    upstream: dict[str, str] = {}
    stale: set[str] = set()
    plans = []
    for step in pipeline.steps:
        step_fingerprint = fingerprint(step, upstream, pipeline.workdir)
        upstream[step.name] = step_fingerprint
        done = _read(step.out / DONE)
        if any(dep in stale for dep in step.depends):
            reason = "an input step reruns"
        elif done is None:
            reason = "never completed"
        elif done.get("fingerprint") != step_fingerprint:
            reason = "settings or inputs changed"
        else:
            reason = ""
        if reason:
            stale.add(step.name)
        plans.append(StepPlan(step, step_fingerprint, not reason, reason or "up to date"))
    return plans


def _quiet(line: str) -> None:
    """The default ``echo``: say nothing."""


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_pipeline(
    pipeline: Pipeline,
    *,
    echo: Callable[[str], Any] = _quiet,
    progress: ProgressMaker | None = None,
) -> RunResult:
    """Run every stale step in order; write ``<workdir>/manifest.json`` after each step.

    ``echo`` gets one line per step as it starts and ends (the CLI passes ``print``); the library
    itself prints nothing. ``progress`` makes each long step's progress display (convert,
    training, eval): a bar on a terminal, timed lines in a log (the CLI's ``progress_for``).
    """
    plans = plan(pipeline)
    result = RunResult(plans)
    total = len(plans)
    for index, item in enumerate(plans, start=1):
        step = item.step
        if item.up_to_date:
            echo(f"[{index}/{total}] {step.name} ({step.kind}): up to date, skipped")
            result.summaries[step.name] = (_read(step.out / DONE) or {}).get("summary", {})
            continue
        echo(f"[{index}/{total}] {step.name} ({step.kind}): running ({item.reason})")
        started = time.perf_counter()
        _prepare_out(step, item.fingerprint)
        summary = KINDS[step.kind](step, progress=progress)
        seconds = time.perf_counter() - started
        atomic_write_json(
            step.out / DONE,
            {
                "fingerprint": item.fingerprint,
                "kind": step.kind,
                "params": step.params,
                "summary": summary,
                "seconds": round(seconds, 2),
            },
        )
        result.summaries[step.name], result.seconds[step.name] = summary, seconds
        echo(f"[{index}/{total}] {step.name}: done in {seconds:.1f} s")
        _write_manifest(pipeline, result)
    _write_manifest(pipeline, result)
    return result


def _prepare_out(step: Step, step_fingerprint: str) -> None:
    """Start clean, unless a resumable step was killed with the same settings."""
    started = _read(step.out / STARTED)
    killed = bool(started) and started.get("fingerprint") == step_fingerprint
    if killed and step.kind in RESUMABLE:
        step.params = {**step.params, "resume": True}
        logger.info("%s: resuming from its last complete checkpoint", step.name)
    elif killed and step.kind in CACHED:
        logger.info("%s: resuming from its prediction cache", step.name)
    elif step.out.exists():
        shutil.rmtree(step.out)
    step.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(step.out / STARTED, {"fingerprint": step_fingerprint})


def _write_manifest(pipeline: Pipeline, result: RunResult) -> None:
    steps = []
    for item in result.plans:
        done = _read(item.step.out / DONE) or {}
        steps.append(
            {
                "name": item.step.name,
                "kind": item.step.kind,
                "fingerprint": item.fingerprint,
                "status": "ran"
                if item.step.name in result.seconds
                else ("skipped" if item.up_to_date else "pending"),
                "params": item.step.params,
                "recipe": str(item.step.recipe or ""),
                "seconds": done.get("seconds"),
                "summary": done.get("summary"),
            }
        )
    atomic_write_json(
        pipeline.workdir / "manifest.json",
        {
            "pipeline": pipeline.name,
            "source": str(pipeline.source),
            "versions": versions(),
            "steps": steps,
        },
    )

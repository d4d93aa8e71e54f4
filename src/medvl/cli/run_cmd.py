"""``medvl run PIPELINE.yaml [STEP.KEY=VALUE ...] [--dry-run]``: a whole pipeline, incremental."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(groups) -> None:
    """Add the ``run`` command."""
    run = groups.add_parser("run", help="run a pipeline YAML step by step (skips up-to-date steps)")
    run.add_argument("pipeline", type=Path, help="pipeline YAML (see recipes/pipelines/)")
    run.add_argument(
        "overrides",
        nargs="*",
        metavar="STEP.KEY=VALUE",
        help="override a step setting, e.g. grpo.learning_rate=1e-5, or workdir=DIR",
    )
    run.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    run.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from medvl.pipeline.runner import plan, run_pipeline
    from medvl.pipeline.spec import load_pipeline

    pipeline = load_pipeline(args.pipeline, args.overrides)
    if args.dry_run:
        print(f"pipeline {pipeline.name} in {pipeline.workdir}:")
        for index, item in enumerate(plan(pipeline), start=1):
            state = "up to date" if item.up_to_date else f"will run ({item.reason})"
            print(f"  {index}. {item.step.name:<14} {item.step.kind:<8} {state}")
        return 0
    from medvl.progress import progress_for

    def progress(label: str, **units: str):
        return progress_for(label, args, **units)

    started = time.perf_counter()
    result = run_pipeline(pipeline, echo=lambda line: print(line, flush=True), progress=progress)
    print(
        f"pipeline {pipeline.name} finished in {time.perf_counter() - started:.0f} s; "
        f"manifest: {pipeline.workdir / 'manifest.json'}"
    )
    for summary in result.summaries.values():
        if "table" in summary:
            _print_table(summary["table"])
            print(f"report: {summary['html']}")
    return 0


def _print_table(rows: list[dict]) -> None:
    def cell(value) -> str:
        return "  -  " if value is None else f"{value:.3f}"

    print(
        f"{'model':<12} {'closed acc':>10} {'MCQ acc':>8} {'overall acc':>11} {'open token F1':>13}"
    )
    for row in rows:
        print(
            f"{row['run']:<12} {cell(row['closed_accuracy']):>10} {cell(row['mcq_accuracy']):>8} "
            f"{cell(row['accuracy']):>11} {cell(row['open_token_f1']):>13}"
        )

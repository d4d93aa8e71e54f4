"""``medvl eval run``: run a model on a benchmark (convert, predict with cache, score), print
what ran, how the caches were used, the results per category and published numbers beside them.

Heavy imports happen inside the command function, so ``medvl --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medvl.cli.arglists import comma_list
from medvl.cli.benches_cmd import add_protocol_arg
from medvl.cli.eval_score_cmd import add_prediction_cap_arg, prediction_cap, print_metrics
from medvl.cli.judge_cmd import add_judge_args, judge_run_folder
from medvl.cli.options import (
    add_generation_args,
    add_model_args,
    add_remote_args,
    engine_spec,
    generation_settings,
)
from medvl.cli.select_args import add_selection_args
from medvl.progress import progress_for

#: Groups printed per breakdown key in the run summary (the rest are in metrics.json).
SHOWN_GROUPS = 12


def register_run(subs) -> None:
    """Add ``eval run`` to the ``eval`` group's sub-commands."""
    run = subs.add_parser(
        "run",
        help="run a model on a benchmark: convert, predict (cached, resumable), score",
        description="Convert --data (cached in --out), predict with the model (cached per "
        "model, prompt and generation settings; a killed run resumes), score, and write "
        "run.json, scores.jsonl and metrics.json to --out.",
    )
    run.add_argument("--bench", required=True, help="benchmark name (see 'medvl eval benches')")
    run.add_argument(
        "--data", type=Path, required=True, help="the benchmark's files as published, or JSONL"
    )
    run.add_argument("--out", type=Path, help="run folder (default: runs/eval/BENCH)")
    run.add_argument(
        "--prompt",
        default="default",
        help="default (the benchmark's), reasoning, custom, as_is, huatuo or short_answer",
    )
    run.add_argument("--system", help="system prompt, sent in the system role")
    run.add_argument(
        "--user-template",
        help="with --prompt custom: the user turn, with {question}, {options}, {instruction}",
    )
    run.add_argument("--limit", type=int, help="only the first N records")
    run.add_argument("--batch-size", type=int, default=8, help="records per generate call")
    run.add_argument("--workers", type=int, help="image-loading threads (default: cores-1)")
    run.add_argument("--metrics", help="comma-separated metric names (default: the benchmark's)")
    run.add_argument("--breakdown", help="extra comma-separated breakdown keys")
    run.add_argument("--image-root", type=Path, help="folder holding the benchmark's images")
    run.add_argument("--reconvert", action="store_true", help="convert --data even if cached")
    run.add_argument("--overwrite", action="store_true", help="predict even if cached")
    run.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    add_protocol_arg(run)
    add_prediction_cap_arg(run)
    add_model_args(run, required=False)
    add_remote_args(run)
    add_generation_args(run)
    add_judge_args(run)
    add_selection_args(run)  # --sample shares the generation --seed
    run.set_defaults(func=run_bench, max_new_tokens=None)


def run_bench(args: argparse.Namespace) -> int:
    """Run ``--bench`` end to end (:func:`medvl.eval.runner.run_benchmark`), print, judge."""
    from medvl.eval.benchmarks import get_benchmark
    from medvl.eval.breakdown import BootstrapSettings
    from medvl.eval.runner import RunConfig, run_benchmark

    bench = get_benchmark(args.bench)
    if args.max_new_tokens is None:
        args.max_new_tokens = bench.max_new_tokens
    spec = engine_spec(args, batch_size=args.batch_size, workers=args.workers)
    config = RunConfig(
        bench=bench.name,
        data=args.data,
        out=args.out or Path("runs") / "eval" / bench.name,
        prompt=args.prompt,
        system=args.system,
        user_template=args.user_template,
        settings=generation_settings(args),
        limit=args.limit,
        metrics=tuple(comma_list(args.metrics)) or None,
        breakdown=tuple(comma_list(args.breakdown)),
        image_root=args.image_root,
        reconvert=args.reconvert,
        overwrite=args.overwrite,
        bootstrap=BootstrapSettings(resamples=args.resamples),
        protocol=args.protocol,
        max_prediction_chars=prediction_cap(args),
        where=args.where,
        sample=args.sample,
        seed=args.seed or 0,
    )
    with progress_for("eval", args, rate_unit="rec") as progress:
        result = run_benchmark(config, spec, progress=progress)
    _print_run(result.run, result.metrics)
    judge_run_folder(args, result.out, Path(result.run["data"]["scored_path"]))
    return 0


def _print_run(run: dict[str, Any], body: dict[str, Any]) -> None:
    """What ran, how the caches were used, overall and per-category results."""
    data, cache, prompt = run["data"], run["cache"], run["prompt"]
    report = data["converter_report"] or {}
    how = data["conversion"].replace("_", " ")
    dropped = [f"{k} {report[k]}" for k in ("skipped", "filtered") if report.get(k)]
    if dropped:
        how += f", {', '.join(dropped)} (see data.source.json)"
    print(
        f"{run['bench']['name']}: {data['scored']} of {data['records']} records of "
        f"{data['path']} [{how}]"
    )
    if data.get("selection"):
        print(f"  {data['selection']['summary']}")
    model = run["model"]
    print(
        f"  model {model.get('model') or model['fingerprint'].get('model')} "
        f"({model['fingerprint'].get('id')}), prompt {prompt['name']} ({prompt['hash']}), "
        f"max_new_tokens {run['generation']['max_new_tokens']}"
    )
    if cache["status"] == "cached":
        print(f"  predictions: all {cache['reused']} cached in {cache['path']}")
    else:
        print(
            f"  predictions: {cache['predicted']} predicted ({cache['errors']} errors) in "
            f"{cache['predict_seconds']:.1f} s, {cache['reused']} cached; {cache['path']}"
        )
    print_metrics(body)
    _print_breakdowns(body)
    _print_published_beside(run["bench"]["name"], body)
    print(f"  run: {run['outputs']['run.json']}")


def _print_published_beside(bench: str, body: dict[str, Any]) -> None:
    """Published numbers on the run's benchmark: its own protocol first, the rest apart."""
    from medvl.eval.published import published_lines, run_protocol

    for line in published_lines(bench, run_protocol(body.get("settings"))):
        print(f"  {line}")


def _print_breakdowns(body: dict[str, Any]) -> None:
    """The headline metric per group of each breakdown key that has more than one group."""
    from medvl.eval.report import fmt_estimate

    headline = next(iter(body["summary"]), None)
    for key, groups in body["breakdowns"].items():
        if headline is None or len(groups) < 2:
            continue
        print(f"  {headline} by {key}:")
        for label, cells in list(groups.items())[:SHOWN_GROUPS]:
            est = cells.get(headline)
            if est:
                print(f"    {label[:28]:<28} {fmt_estimate(est)}  n={est['n']}")
        if len(groups) > SHOWN_GROUPS:
            print(f"    ... {len(groups) - SHOWN_GROUPS} more in metrics.json")

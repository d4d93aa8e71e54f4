"""``medvl eval score|benches|run|perplexity`` and ``medvl report``: benchmarks, scoring,
perplexity and comparisons.

Heavy imports happen inside the command functions, so ``medvl --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medvl.cli.arglists import comma_list
from medvl.cli.benches_cmd import add_protocol_arg, run_benches, run_protocols
from medvl.cli.judge_cmd import add_judge_args, judge_run_folder
from medvl.cli.options import (
    add_generation_args,
    add_model_args,
    add_remote_args,
    engine_spec,
    generation_settings,
)
from medvl.cli.report_cmd import run_report
from medvl.cli.select_args import add_selection_args
from medvl.progress import progress_for

#: Groups printed per breakdown key in the run summary (the rest are in metrics.json).
SHOWN_GROUPS = 12


def register(groups) -> None:
    """Add the ``eval`` group and the ``report`` command."""
    parser = groups.add_parser(
        "eval", help="score predictions, list benchmarks", description="Evaluation."
    )
    subs = parser.add_subparsers(dest="action", metavar="ACTION", title="actions")
    subs.required = True

    score = subs.add_parser("score", help="score a predictions JSONL against canonical records")
    score.add_argument("--data", type=Path, required=True, help="canonical .jsonl with answers")
    score.add_argument(
        "--pred",
        type=Path,
        required=True,
        help="predictions .jsonl (id, prediction), or a .csv/.tsv/.xlsx table (VLMEvalKit's: "
        "index, prediction)",
    )
    score.add_argument(
        "--id-field",
        help="the key/column holding each record's id (default: id, question_id; tables also "
        "index)",
    )
    score.add_argument(
        "--prediction-field",
        help="the key/column holding the model's text (default: prediction, response, output, "
        "text)",
    )
    score.add_argument("--out", type=Path, required=True, help="run folder to write")
    score.add_argument("--metrics", help="comma-separated metric names, or 'all' (default set)")
    score.add_argument("--breakdown", help="comma-separated meta keys, e.g. modality,organ")
    score.add_argument(
        "--bench",
        help="the benchmark the data is (see 'eval benches'): adds its breakdown keys, picks "
        "the protocol's rules for it and names it in metrics.json",
    )
    add_protocol_arg(score)
    score.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    score.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    add_prediction_cap_arg(score)
    add_judge_args(score)
    score.set_defaults(func=run_score)

    benches = subs.add_parser(
        "benches",
        help="list benchmarks, their formats and breakdowns; --published: published scores",
    )
    benches.add_argument(
        "--published",
        action="store_true",
        help="list published scores per benchmark, model and scoring protocol, with sources",
    )
    benches.add_argument("--bench", help="with --published: only this benchmark")
    benches.add_argument("--protocol", help="with --published: only this scoring protocol")
    benches.set_defaults(func=run_benches)

    protocols = subs.add_parser(
        "protocols", help="list the scoring protocols (--protocol), what each follows and covers"
    )
    protocols.set_defaults(func=run_protocols)

    _register_run(subs)
    _register_perplexity(subs)

    report = groups.add_parser(
        "report",
        help="multi-model comparison report (HTML + tables), model x benchmark table",
        description="Compare run folders written by 'medvl eval score' or 'medvl eval run'. "
        "Runs on one benchmark are tested against the baseline (paired cluster bootstrap, "
        "McNemar, Holm across metrics); runs on several benchmarks also give a model x "
        "benchmark table with each cell's CI and protocol.",
    )
    report.add_argument(
        "runs", nargs="+", type=Path, help="run folders (scores.jsonl + metrics.json)"
    )
    report.add_argument("--out", type=Path, required=True, help="folder for the report files")
    report.add_argument(
        "--baseline",
        help="run name or folder to test against (default: first; per benchmark, the run of "
        "the same model)",
    )
    report.add_argument("--names", help="comma-separated display names, one per run")
    report.add_argument("--resamples", type=int, default=2000, help="paired bootstrap resamples")
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    report.add_argument(
        "--cluster-by",
        choices=("patient/image", "record"),
        default="patient/image",
        help="resampling unit of the paired tests: the rows' clusters (patient, else image, "
        "else record) or every record alone",
    )
    report.set_defaults(func=run_report)


def _register_run(subs) -> None:
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


def add_prediction_cap_arg(parser: argparse.ArgumentParser) -> None:
    """``--max-prediction-chars``: longer predictions are cut to their head for scoring."""
    parser.add_argument(
        "--max-prediction-chars",
        type=int,
        default=20_000,
        help="cut longer predictions to their first N characters before scoring (default "
        "20000; counted and listed in metrics.json; 0: no cap)",
    )


def _prediction_cap(args: argparse.Namespace) -> int | None:
    return args.max_prediction_chars or None


def _register_perplexity(subs) -> None:
    ppl = subs.add_parser(
        "perplexity",
        help="perplexity of the reference answers given image and question (teacher-forced)",
        description="Teacher-force each record's chat (system/user turns and images, then the "
        "reference answer) through the model and score the answer text tokens only (prompt, "
        "image tokens and the closing <|im_end|> masked). Writes OUT/perplexity.json: pooled "
        "perplexity exp(total nll / answer tokens), the mean per-record perplexity, per-record "
        "values and pooled perplexity per group.",
    )
    ppl.add_argument("--data", type=Path, required=True, help="canonical .jsonl with answers")
    ppl.add_argument("--out", type=Path, required=True, help="run folder to write")
    ppl.add_argument("--batch-size", type=int, default=8, help="records per forward pass")
    ppl.add_argument("--limit", type=int, help="only the first N records")
    ppl.add_argument(
        "--breakdown",
        help="extra comma-separated group keys (meta keys, e.g. modality,organ); answer_type, "
        "question_type and lang are always reported",
    )
    add_model_args(ppl)
    ppl.set_defaults(func=run_perplexity)


def run_score(args: argparse.Namespace) -> int:
    from medvl.eval.benchmarks import get_benchmark
    from medvl.eval.breakdown import BootstrapSettings
    from medvl.eval.scoring import score_files

    keys = comma_list(args.breakdown)
    if args.bench:
        keys += [k for k in get_benchmark(args.bench).breakdown if k not in keys]
    result = score_files(
        args.data,
        args.pred,
        args.out,
        metrics=comma_list(args.metrics) or None,
        breakdown_keys=keys,
        bootstrap=BootstrapSettings(resamples=args.resamples, seed=args.seed),
        protocol=args.protocol,
        benchmark=get_benchmark(args.bench).name if args.bench else None,
        max_prediction_chars=_prediction_cap(args),
        id_field=args.id_field,
        prediction_field=args.prediction_field,
    )
    print(f"scored {result.metrics['counts']['records']} records of {args.data} with {args.pred}")
    _print_metrics(result.metrics)
    print(f"  scores:  {result.scores_path}")
    print(f"  metrics: {result.metrics_path}")
    judge_run_folder(args, args.out, args.data)
    return 0


def _print_metrics(body: dict[str, Any]) -> None:
    """Overall means with CIs, corpus-level metrics, unparsed MCQ and prediction problems."""
    from medvl.eval.report import fmt_estimate

    counts = body["counts"]
    protocol = body.get("settings", {}).get("protocol") or {}
    if protocol.get("name", "medvl") != "medvl":
        print(f"  protocol: {protocol['name']} ({protocol.get('follows', '')})")
    for metric, est in body["summary"].items():
        print(f"  {metric:<18} {fmt_estimate(est)}  n={est['n']}")
    for metric, cell in body["corpus"].items():
        value = "–" if cell["value"] is None else f"{cell['value']:.3f}"
        print(f"  {metric:<18} {value}  n={cell['n']} (corpus-level)")
    unparsed = body["unparsed"]
    if unparsed["n"]:
        print(f"  unparsed MCQ       {unparsed['count']} of {unparsed['n']}")
    if counts.get("truncated"):
        cap = body.get("settings", {}).get("max_prediction_chars")
        print(
            f"  cut to {cap} chars  {counts['truncated']} predictions (ids in metrics.json; "
            "--max-prediction-chars)"
        )
    if counts.get("not_scored"):
        print(
            f"  not scored         {counts['not_scored']} of {counts['records']} records: the "
            "protocol's rules leave them out of accuracy (rule per record in scores.jsonl)"
        )
    problems = ", ".join(f"{k} {counts[k]}" for k in ("missing", "empty", "duplicate", "unknown"))
    print(f"  predictions        {problems}")
    if counts["duplicate"]:
        print("  note: duplicated ids keep their first line (listed in metrics.json)")


def run_bench(args: argparse.Namespace) -> int:
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
        max_prediction_chars=_prediction_cap(args),
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
    _print_metrics(body)
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


def run_perplexity(args: argparse.Namespace) -> int:
    from medvl.eval.perplexity import PerplexityConfig
    from medvl.eval.perplexity import run_perplexity as score

    spec = engine_spec(args, batch_size=args.batch_size)
    config = PerplexityConfig(
        data=args.data,
        out=args.out,
        limit=args.limit,
        breakdown=tuple(comma_list(args.breakdown)),
    )
    with progress_for("perplexity", args, rate_unit="rec") as progress:
        run = score(config, spec, progress=progress)
    _print_perplexity(run.body, args.data, run.path)
    return 0


def _print_perplexity(body: dict[str, Any], data: Path, path: Path) -> None:
    """Totals, then pooled perplexity per group of each key with more than one group."""
    counts = body["counts"]
    print(
        f"perplexity: {counts['scored']} of {counts['records']} records of {data} "
        f"({counts['skipped']} skipped without an answer), {body['tokens']} answer tokens"
    )
    model = body["model"]
    adapters = "".join(f" + {adapter}" for adapter in model.get("adapters") or [])
    print(f"  model {model.get('path')}{adapters} ({model.get('id')})")
    print(f"  {'pooled perplexity':<26} {body['perplexity']:10.3f}")
    print(f"  {'mean per-record perplexity':<26} {body['mean_record_perplexity']:10.3f}")
    for key, groups in body["groups"].items():
        if len(groups) < 2:
            continue
        print(f"  perplexity by {key}:")
        for label, cell in list(groups.items())[:SHOWN_GROUPS]:
            print(
                f"    {label[:28]:<28} {cell['perplexity']:10.3f}  "
                f"tokens={cell['tokens']}  n={cell['records']}"
            )
        if len(groups) > SHOWN_GROUPS:
            print(f"    ... {len(groups) - SHOWN_GROUPS} more in perplexity.json")
    print(f"  written: {path}")

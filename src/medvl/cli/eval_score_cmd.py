"""``medvl eval score``: score a predictions file against canonical records, print the summary.

Also the scoring options and the results summary that ``medvl eval run`` (which ends by scoring)
reuses: ``--max-prediction-chars`` (:func:`add_prediction_cap_arg`) and :func:`print_metrics`.
Heavy imports happen inside the command function, so ``medvl --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medvl.cli.arglists import comma_list
from medvl.cli.benches_cmd import add_protocol_arg
from medvl.cli.judge_cmd import add_judge_args, judge_run_folder


def register_score(subs) -> None:
    """Add ``eval score`` to the ``eval`` group's sub-commands."""
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
        "--id-template",
        metavar="TEMPLATE",
        help="build each id from the row's columns, e.g. 'gmai_mmbench-val-{index}' for "
        "VLMEvalKit's GMAI-MMBench sheet (medvl's ids carry benchmark and split in front)",
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


def add_prediction_cap_arg(parser: argparse.ArgumentParser) -> None:
    """``--max-prediction-chars``: longer predictions are cut to their head for scoring."""
    parser.add_argument(
        "--max-prediction-chars",
        type=int,
        default=20_000,
        help="cut longer predictions to their first N characters before scoring (default "
        "20000; counted and listed in metrics.json; 0: no cap)",
    )


def prediction_cap(args: argparse.Namespace) -> int | None:
    """The ``--max-prediction-chars`` value as scoring takes it: None for 0 (no cap)."""
    return args.max_prediction_chars or None


def run_score(args: argparse.Namespace) -> int:
    """Score ``--pred`` against ``--data`` into ``--out``; print the summary; run the judge."""
    from medvl.eval.benchmarks import get_benchmark
    from medvl.eval.breakdown import BootstrapSettings
    from medvl.eval.scoring_run import score_files

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
        max_prediction_chars=prediction_cap(args),
        id_field=args.id_field,
        prediction_field=args.prediction_field,
        id_template=args.id_template,
    )
    print(f"scored {result.metrics['counts']['records']} records of {args.data} with {args.pred}")
    print_metrics(result.metrics)
    print(f"  scores:  {result.scores_path}")
    print(f"  metrics: {result.metrics_path}")
    judge_run_folder(args, args.out, args.data)
    return 0


def print_metrics(body: dict[str, Any]) -> None:
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

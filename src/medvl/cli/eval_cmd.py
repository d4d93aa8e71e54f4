"""``medvl eval score|benches|run`` and ``medvl report``: scoring and comparison reports.

``eval run`` (benchmark inference) waits for the inference part and says so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medvl.errors import NotBuiltError, UnknownNameError


def _names(text: str | None) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``; None or empty -> []."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


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
        "--pred", type=Path, required=True, help="predictions .jsonl (id, prediction)"
    )
    score.add_argument("--out", type=Path, required=True, help="run folder to write")
    score.add_argument("--metrics", help="comma-separated metric names, or 'all' (default set)")
    score.add_argument("--breakdown", help="comma-separated meta keys, e.g. modality,organ")
    score.add_argument("--bench", help="add a benchmark's breakdown keys (see 'eval benches')")
    score.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    score.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    score.set_defaults(func=run_score)

    benches = subs.add_parser("benches", help="list benchmarks, their formats and breakdowns")
    benches.set_defaults(func=run_benches)

    run = subs.add_parser("run", help="run a model on a benchmark (not built yet)")
    run.add_argument("--bench", help="benchmark name (see 'eval benches')")
    run.add_argument("--model", help="model folder")
    run.add_argument("--out", type=Path, help="run folder")
    run.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    run.set_defaults(func=run_bench)

    report = groups.add_parser(
        "report",
        help="multi-model comparison report (HTML + tables)",
        description="Compare run folders written by 'medvl eval score'.",
    )
    report.add_argument(
        "runs", nargs="+", type=Path, help="run folders (scores.jsonl + metrics.json)"
    )
    report.add_argument("--out", type=Path, required=True, help="folder for the report files")
    report.add_argument("--baseline", help="run name or folder to test against (default: first)")
    report.add_argument("--names", help="comma-separated display names, one per run")
    report.add_argument("--resamples", type=int, default=2000, help="paired bootstrap resamples")
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    report.set_defaults(func=run_report)


def run_score(args: argparse.Namespace) -> int:
    from medvl.eval.breakdown import BENCHMARKS, BootstrapSettings
    from medvl.eval.report import fmt_estimate
    from medvl.eval.scoring import score_files

    keys = _names(args.breakdown)
    if args.bench:
        if args.bench not in BENCHMARKS:
            raise UnknownNameError("benchmark", args.bench, list(BENCHMARKS))
        keys += [k for k in BENCHMARKS[args.bench].keys if k not in keys]
    result = score_files(
        args.data,
        args.pred,
        args.out,
        metrics=_names(args.metrics) or None,
        breakdown_keys=keys,
        bootstrap=BootstrapSettings(resamples=args.resamples, seed=args.seed),
    )
    body = result.metrics
    counts = body["counts"]
    print(f"scored {counts['records']} records of {args.data} with {args.pred}")
    for metric, est in body["summary"].items():
        print(f"  {metric:<18} {fmt_estimate(est)}  n={est['n']}")
    for metric, cell in body["corpus"].items():
        value = "–" if cell["value"] is None else f"{cell['value']:.3f}"
        print(f"  {metric:<18} {value}  n={cell['n']} (corpus-level)")
    unparsed = body["unparsed"]
    if unparsed["n"]:
        print(f"  unparsed MCQ       {unparsed['count']} of {unparsed['n']}")
    problems = ", ".join(f"{k} {counts[k]}" for k in ("missing", "empty", "duplicate", "unknown"))
    print(f"  predictions        {problems}")
    if counts["duplicate"]:
        print("  note: duplicated ids keep their first line (listed in metrics.json)")
    print(f"  scores:  {result.scores_path}")
    print(f"  metrics: {result.metrics_path}")
    return 0


def run_benches(args: argparse.Namespace) -> int:
    from medvl.eval.breakdown import BENCHMARKS

    print(f"{'benchmark':<14} {'format':<14} {'kinds':<14} breakdown keys")
    for bench in BENCHMARKS.values():
        keys = ", ".join(bench.keys) or "-"
        print(f"{bench.name:<14} {bench.format:<14} {bench.kinds:<14} {keys}")
        print(f"{'':<14} reports: {bench.official}")
    print("convert with 'medvl data convert --format FORMAT', predict, then")
    print("'medvl eval score --bench NAME --data DATA.jsonl --pred PRED.jsonl --out DIR'")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    raise NotBuiltError(
        "'medvl eval run' is not built yet: running a model on a benchmark needs the inference "
        "part of medvl (still to come); score predictions you already have with "
        "'medvl eval score --data DATA.jsonl --pred PRED.jsonl --out DIR'"
    )


def run_report(args: argparse.Namespace) -> int:
    from medvl.eval.breakdown import BootstrapSettings
    from medvl.eval.report import build_report, fmt_estimate, fmt_p, write_report

    report = build_report(
        args.runs,
        names=_names(args.names) or None,
        baseline=args.baseline,
        settings=BootstrapSettings(resamples=args.resamples, seed=args.seed),
    )
    paths = write_report(report, args.out)
    runs = [r["name"] for r in report["runs"]]
    print(
        f"compared {len(runs)} runs on {report['pairing']['common_ids']} common ids "
        f"(baseline {report['baseline']})"
    )
    headline = report["headline"]
    if headline:
        for name in runs:
            print(f"  {name:<20} {headline} {fmt_estimate(report['overall'][headline].get(name))}")
    for test in report["tests"]:
        if test["metric"] == headline:
            mc = test["mcnemar"]
            extra = f", McNemar p={fmt_p(mc['p_value'])}" if mc else ""
            interval = f"[{test['ci_low']:+.3f}, {test['ci_high']:+.3f}]"
            print(
                f"  {test['run']} - {test['baseline']}: {test['delta']:+.3f} {interval}, "
                f"p={fmt_p(test['p_value'])}{extra}"
            )
    for warning in report["warnings"]:
        print(f"  warning: {warning}")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0

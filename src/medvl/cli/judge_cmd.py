"""The ``--judge-*`` flags of ``medvl eval score`` and ``medvl eval run``: the optional LLM judge
of open answers (:mod:`medvl.eval.judge`), run on the run folder after scoring.

Heavy imports happen inside :func:`judge_run_folder`, so ``medvl --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medvl.cli.arglists import comma_list


def add_judge_args(parser: argparse.ArgumentParser) -> None:
    """Add the judge's flags as their own argument group (all optional; off by default)."""
    group = parser.add_argument_group("LLM judge (optional; runs after scoring)")
    group.add_argument(
        "--judge-url", help="OpenAI-compatible base URL of the judge, e.g. http://host:8000/v1"
    )
    group.add_argument("--judge-model", help="served judge model name (default: the first listed)")
    group.add_argument("--judge-key-env", help="environment variable holding the judge's API key")
    group.add_argument(
        "--judge-kinds", default="open", help="record kinds to judge, comma-separated (open)"
    )
    group.add_argument(
        "--judge-sample", type=int, default=50, help="rows of judge_review.csv (default 50)"
    )
    group.add_argument("--judge-cache", type=Path, help="verdict cache (OUT/judge_cache.jsonl)")
    group.add_argument("--judge-workers", type=int, default=4, help="requests in flight")
    group.add_argument("--judge-timeout", type=float, default=120.0, help="seconds per request")


def judge_run_folder(args: argparse.Namespace, out: Path, data: Path) -> None:
    """Judge the scored run folder ``out`` when --judge-url is given, and print the result."""
    if not getattr(args, "judge_url", None):
        _drop_stale_verdicts(out)
        return
    from medvl.eval.judge import JudgeConfig, run_judge
    from medvl.eval.report import fmt_estimate

    config = JudgeConfig(
        url=args.judge_url,
        model=args.judge_model,
        api_key_env=args.judge_key_env,
        kinds=tuple(comma_list(args.judge_kinds)),
        sample=args.judge_sample,
        seed=getattr(args, "seed", None) or 0,  # eval run's --seed is for sampling: None
        cache=args.judge_cache,
        workers=args.judge_workers,
        timeout=args.judge_timeout,
    )
    done = run_judge(out, config, data)
    judge = done.section
    agreement = judge["agreement"]
    kappa, rate = (
        "-" if agreement[k] is None else f"{agreement[k]:.3f}" for k in ("kappa", "agreement")
    )
    print(
        f"  judge {judge['model']} ({judge['prompt_version']}): {judge['records']} records, "
        f"{done.requests} requests, {judge['unparsed']} unparsed, {judge['errors']} refused"
    )
    print(f"  judge accuracy     {fmt_estimate(judge['accuracy'])}  n={judge['n']}")
    print(
        f"  judge vs rule      kappa {kappa}, agreement {rate}  n={agreement['n']} "
        f"({judge['rule_protocol']} rule)"
    )
    print(f"  judge verdicts: {done.verdicts_path}; review sample: {done.review_path}")


def _drop_stale_verdicts(out: Path) -> None:
    """Scoring again without a judge wrote a metrics.json with no judge section: verdict files
    of an earlier judge run would no longer match it, so they go (the cache stays, so judging
    again sends no request)."""
    stale = [out / name for name in ("judge.jsonl", "judge_review.csv") if (out / name).exists()]
    for path in stale:
        path.unlink()
    if stale:
        print(
            f"  removed {', '.join(p.name for p in stale)} of an earlier judge run (no --judge-url)"
        )

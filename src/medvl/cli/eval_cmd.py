"""``medvl eval score|benches|protocols|run|perplexity`` and ``medvl report``: the ``eval`` group,
the listings, perplexity and comparisons.

``eval score`` lives in :mod:`medvl.cli.eval_score_cmd` and ``eval run`` in
:mod:`medvl.cli.eval_run_cmd`; this module registers them with the rest.

Heavy imports happen inside the command functions, so ``medvl --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medvl.cli.arglists import comma_list
from medvl.cli.benches_cmd import run_benches, run_protocols
from medvl.cli.eval_run_cmd import SHOWN_GROUPS, register_run
from medvl.cli.eval_score_cmd import register_score
from medvl.cli.options import add_model_args, engine_spec
from medvl.cli.report_cmd import run_report
from medvl.progress import progress_for


def register(groups) -> None:
    """Add the ``eval`` group and the ``report`` command."""
    parser = groups.add_parser(
        "eval", help="score predictions, list benchmarks", description="Evaluation."
    )
    subs = parser.add_subparsers(dest="action", metavar="ACTION", title="actions")
    subs.required = True

    register_score(subs)

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

    register_run(subs)
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

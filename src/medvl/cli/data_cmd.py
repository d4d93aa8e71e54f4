"""``medvl data``: generate, check and (later) convert datasets in the canonical format."""

from __future__ import annotations

import argparse
from pathlib import Path

from medvl.cli.planned_cmd import _add


def register(groups) -> None:
    """Add the ``data`` group."""
    data = groups.add_parser("data", help="datasets: phantom generation, validation, conversion")
    subs = data.add_subparsers(dest="data_command", metavar="ACTION", title="data actions")
    subs.required = True

    phantom = subs.add_parser(
        "phantom", help="generate the deterministic synthetic medical VQA dataset"
    )
    phantom.add_argument("--out", type=Path, required=True, help="output folder")
    phantom.add_argument("--n", type=int, default=600, help="number of records (default 600)")
    phantom.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    phantom.set_defaults(func=run_phantom)

    validate = subs.add_parser("validate", help="check canonical JSONL files record by record")
    validate.add_argument("files", type=Path, nargs="+", help="canonical .jsonl files")
    validate.add_argument(
        "--no-images", action="store_true", help="skip checking that image files exist and open"
    )
    validate.set_defaults(func=run_validate)

    _add(
        subs,
        "convert",
        "convert a public medical format into canonical JSONL",
        "data readers",
        "data convert",
    )
    _add(subs, "formats", "list the formats 'data convert' reads", "data readers", "data formats")


def run_phantom(args: argparse.Namespace) -> int:
    from medvl.data.phantom import generate_phantom

    if args.n < 10:
        from medvl.errors import ConfigError

        raise ConfigError(f"--n {args.n} is too small; use at least 10 records")
    summary = generate_phantom(args.out, n=args.n, seed=args.seed)
    print(f"phantom dataset (seed {args.seed}) written to {args.out}")
    for split, path in summary.paths.items():
        print(f"  {split:<5} {summary.counts[split]:>5} records  {path}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from medvl.data.images import check_record_images
    from medvl.data.jsonl import check_jsonl

    n_problems = 0
    for path in args.files:
        result = check_jsonl(path)
        problems = [str(p) for p in result.problems]
        if not args.no_images:
            problems += check_record_images(result.records, path)
        n_problems += len(problems)
        status = "ok" if not problems else f"{len(problems)} problem(s)"
        print(f"{path}: {len(result.records)} valid record(s), {status}")
        for line in problems[:50]:
            print(f"  {line}")
        if len(problems) > 50:
            print(f"  ... and {len(problems) - 50} more")
    return 0 if n_problems == 0 else 2

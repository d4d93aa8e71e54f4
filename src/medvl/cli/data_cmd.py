"""``medvl data``: generate, check and convert datasets in the canonical format."""

from __future__ import annotations

import argparse
from pathlib import Path

from medvl.cli import data_analysis_cmd, data_export_cmd, data_volumes_cmd
from medvl.cli.options import add_video_pixel_args, pixel_budget_args
from medvl.cli.select_args import add_selection_args
from medvl.errors import MedvlError


def register(groups) -> None:
    """Add the ``data`` group."""
    data = groups.add_parser("data", help="datasets: phantom generation, validation, conversion")
    subs = data.add_subparsers(dest="data_command", metavar="ACTION", title="data actions")
    subs.required = True
    _register_phantom(subs)
    _register_validate(subs)
    _register_convert(subs)
    data_analysis_cmd.register(subs)
    data_export_cmd.register(subs)
    data_volumes_cmd.register(subs)


def _register_convert(subs) -> None:
    convert = subs.add_parser("convert", help="convert a public medical format to canonical JSONL")
    convert.add_argument("--format", required=True, help="input format (see 'medvl data formats')")
    convert.add_argument("--input", type=Path, required=True, help="input file or folder")
    convert.add_argument("--out", type=Path, required=True, help="output canonical .jsonl")
    convert.add_argument(
        "--image-root", type=Path, help="where images are (default: input's folder)"
    )
    convert.add_argument("--lang", help="keep only records in this language (e.g. en, zh)")
    convert.add_argument(
        "--split",
        help="keep only records of this split, as the source records it (its file name, e.g. "
        "testset.json, or its own field); never relabels",
    )
    convert.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="format-specific option, e.g. dataset=my_set (repeatable)",
    )
    add_selection_args(convert, seed="seed of --sample (default 0)")
    convert.set_defaults(func=run_convert)
    formats = subs.add_parser("formats", help="list the formats 'data convert' reads")
    formats.set_defaults(func=run_formats)


def _register_phantom(subs) -> None:
    phantom = subs.add_parser(
        "phantom", help="generate the deterministic synthetic medical VQA dataset"
    )
    phantom.add_argument("--out", type=Path, required=True, help="output folder")
    phantom.add_argument(
        "--n", type=int, help="number of records (default 600; with --volumes: 200 volumes)"
    )
    phantom.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    volumes = phantom.add_argument_group("3-D phantom (video records)")
    volumes.add_argument(
        "--volumes",
        action="store_true",
        help="make CT/MRI-like volumes with spherical lesions and <video> questions instead",
    )
    volumes.add_argument("--slices", type=int, default=16, help="slices per volume (default 16)")
    volumes.add_argument("--size", type=int, default=64, help="slice width and height in px")
    volumes.add_argument(
        "--volume-format",
        choices=("nifti", "frames"),
        default="nifti",
        help="nifti: .nii.gz files and 'volume' entries (default); frames: PNG slices and "
        "'frames' entries",
    )
    phantom.set_defaults(func=run_phantom)


def _register_validate(subs) -> None:
    validate = subs.add_parser(
        "validate", help="check canonical JSONL files before training (schema, images, length)"
    )
    validate.add_argument("files", type=Path, nargs="+", help="canonical .jsonl files")
    validate.add_argument("--model", help="model folder (exact token counts) or family name")
    validate.add_argument("--max-length", type=int, help="refuse records longer than this")
    validate.add_argument("--min-pixels", type=int, help="override the processor's min_pixels")
    validate.add_argument("--max-pixels", type=int, help="override the processor's max_pixels")
    add_video_pixel_args(validate)
    validate.add_argument(
        "--decode",
        action="store_true",
        help="fully decode every image (slower; also catches truncated files)",
    )
    validate.add_argument("--no-images", action="store_true", help="skip image checks")
    validate.add_argument(
        "--root",
        type=Path,
        help="dataset root images must stay inside (default: none; paths are read as written, "
        "relative to the file's folder, '../' included)",
    )
    validate.add_argument("--workers", type=int, help="processes for image checks")
    validate.add_argument("--out-clean", type=Path, help="write the valid records here")
    validate.add_argument("--report", type=Path, help="write the JSON report here")
    validate.set_defaults(func=run_validate)


def run_phantom(args: argparse.Namespace) -> int:
    from medvl.data.phantom import generate_phantom

    if args.volumes:
        return _run_phantom_volumes(args)
    summary = generate_phantom(args.out, n=600 if args.n is None else args.n, seed=args.seed)
    print(
        f"phantom dataset (n {summary.n}, seed {summary.seed}) written to {summary.out_dir} "
        f"in {summary.seconds:.1f} s"
    )
    for split, path in summary.split_paths.items():
        types = ", ".join(f"{k} {v}" for k, v in summary.question_types[split].items())
        print(f"  {split:<5} {summary.counts[split]:>5} records  {path}  ({types})")
    return 0


def _run_phantom_volumes(args: argparse.Namespace) -> int:
    from medvl.data.phantom_volumes import generate_phantom_volumes

    summary = generate_phantom_volumes(
        args.out,
        n=200 if args.n is None else args.n,
        seed=args.seed,
        slices=args.slices,
        size=args.size,
        volume_format=args.volume_format,
    )
    per_patient = ", ".join(f"{k}: {v}" for k, v in summary.volumes_per_patient.items())
    print(
        f"phantom volumes (n {summary.n}, seed {summary.seed}, {args.slices} slices of "
        f"{args.size}x{args.size} px, {summary.volume_format}) written to {summary.out_dir} "
        f"in {summary.seconds:.1f} s"
    )
    print(f"  records   {summary.records_path}")
    print(f"  patients  {summary.patients} (volumes per patient -> patients: {per_patient})")
    for qtype, answers in summary.answers.items():
        counts = ", ".join(f"{k} {v}" for k, v in answers.items())
        print(f"  {qtype:<9} {summary.question_types[qtype]:>4}  ({counts})")
    print(f"  split by patient: medvl data split {summary.records_path} --out {args.out}/splits")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from medvl.config import apply_overrides
    from medvl.data.formats import convert
    from medvl.progress import progress_for

    options = apply_overrides({}, args.option)
    with progress_for("convert", args, unit="records read", rate_unit="rec") as progress:
        report = convert(
            args.format,
            args.input,
            args.out,
            image_root=args.image_root,
            lang=args.lang,
            split=args.split,
            where=args.where,
            sample=args.sample,
            seed=args.seed,
            progress=progress,
            **options,
        )
    print(report.summary())
    lines = report.problem_lines()
    for line in lines[:50]:
        print(f"  skipped {line}")
    if len(lines) > 50:
        print(f"  ... and {len(lines) - 50} more")
    failure = report.failure()
    if failure:  # nothing written, or the input was cut short: exit 2 with the reason
        raise MedvlError(failure)
    return 0


def run_formats(args: argparse.Namespace) -> int:
    from medvl.data.formats import list_formats

    for name, description in list_formats():
        print(f"{name:<14} {description}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from medvl.data.jsonl import write_records
    from medvl.data.paths import rebase_images
    from medvl.data.validate import validate_jsonl
    from medvl.errors import ConfigError
    from medvl.fileio import atomic_write_json
    from medvl.progress import progress_for

    if len(args.files) > 1 and (args.out_clean or args.report):
        raise ConfigError("--out-clean and --report take one input file; validate files one by one")
    if args.max_length is not None and args.model is None:
        raise ConfigError("--max-length needs --model (a model folder or family) to count tokens")
    counter, exact = None, True
    if args.model is not None:
        from medvl.models.processing import load_token_counter

        counter, exact = load_token_counter(args.model, **pixel_budget_args(args))
    n_problems = 0
    for path in args.files:
        with progress_for(f"validate {path.name}", args, unit="images", rate_unit="img") as shown:
            result = validate_jsonl(
                path,
                counter=counter,
                max_length=args.max_length,
                decode_images=args.decode,
                check_images=not args.no_images,
                root=args.root,
                workers=args.workers,
                progress=shown,
            )
        report = result.report()
        report["settings"]["token_counts_exact"] = exact if counter else None
        n_problems += len(result.problems)
        _print_report(report, exact)
        if args.report:
            atomic_write_json(args.report, report)
            print(f"  report: {args.report}")
        if args.out_clean:
            write_records(
                args.out_clean, rebase_images(result.valid, path.parent, args.out_clean.parent)
            )
            print(f"  clean subset ({len(result.valid)} records): {args.out_clean}")
    return 0 if n_problems == 0 else 2


def _print_report(report: dict, exact: bool) -> None:
    status = "ok" if not report["problems"] else f"{report['invalid']} refused"
    print(f"{report['file']}: {report['records']} records, {report['valid']} valid, {status}")
    for code, count in report["problems_by_code"].items():
        print(f"  {code:<14} {count}")
    for problem in report["problems"][:50]:
        where = f"line {problem['line']}" if problem["line"] else "?"
        ident = f" (id {problem['id']!r})" if problem["id"] else ""
        print(
            f"  {report['file']}:{where.removeprefix('line ')}{ident}: field "
            f"'{problem['field']}': {problem['message']}"
        )
    if len(report["problems"]) > 50:
        print(f"  ... and {len(report['problems']) - 50} more (see --report)")
    lengths = report["token_length"]
    if lengths:
        note = "" if exact else " (approximate text count: pass a model folder for exact)"
        print(
            f"  tokens per record: max {lengths['max']}, p95 {lengths['p95']}, "
            f"mean {lengths['mean']}{note}"
        )

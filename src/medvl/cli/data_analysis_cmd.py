"""``medvl data classify|leakage|stats|split``: look at a dataset before training on it."""

from __future__ import annotations

import argparse
from pathlib import Path

from medvl.cli.options import add_video_pixel_args, pixel_budget_args
from medvl.cli.select_args import add_selection_args, select_records
from medvl.errors import ConfigError


def register(subs) -> None:
    """Add the analysis actions to the ``data`` group."""
    classify = subs.add_parser("classify", help="fill answer_type/question_type (en + zh)")
    classify.add_argument("file", type=Path, help="canonical .jsonl")
    classify.add_argument("--out", type=Path, required=True, help="classified .jsonl")
    classify.add_argument("--mapping", type=Path, help="write the type mapping summary here")
    classify.add_argument("--rules-only", action="store_true", help="ignore dataset labels")
    classify.set_defaults(func=run_classify)

    leakage = subs.add_parser("leakage", help="find test images/questions that appear in train")
    leakage.add_argument("--train", type=Path, required=True, help="training .jsonl")
    leakage.add_argument("--test", type=Path, required=True, help="test .jsonl")
    leakage.add_argument("--report", type=Path, help="write the JSON report here")
    leakage.add_argument("--out-filtered", type=Path, help="write the test set without leaks")
    leakage.add_argument(
        "--phash-distance",
        type=int,
        default=18,
        help="256-bit pHash distance that counts as the same image (default 18)",
    )
    leakage.set_defaults(func=run_leakage)

    stats = subs.add_parser("stats", help="counts, answer lengths and token histograms")
    stats.add_argument("file", type=Path, help="canonical .jsonl")
    stats.add_argument("--model", help="model folder or family: adds token-length statistics")
    stats.add_argument("--min-pixels", type=int, help="override the processor's min_pixels")
    stats.add_argument("--max-pixels", type=int, help="override the processor's max_pixels")
    add_video_pixel_args(stats)
    stats.add_argument("--plots", type=Path, help="write PNG plots into this folder")
    stats.add_argument("--out", type=Path, help="write the statistics as JSON here")
    stats.set_defaults(func=run_stats)

    split = subs.add_parser(
        "split",
        help="deterministic stratified split; no image, patient or study in two splits",
    )
    split.add_argument("file", type=Path, help="canonical .jsonl")
    split.add_argument("--out", type=Path, required=True, help="folder for <split>.jsonl files")
    split.add_argument(
        "--fractions",
        default="train=0.8,val=0.1,test=0.1",
        help="comma-separated name=fraction (default train=0.8,val=0.1,test=0.1)",
    )
    split.add_argument("--seed", type=int, default=0)
    split.add_argument(
        "--stratify-by",
        default="answer_type",
        help="record field or meta key to balance (default answer_type; 'none')",
    )
    split.add_argument(
        "--group-by",
        default="default",
        help="comma-separated keys whose records stay in one split: content (file SHA-256), "
        "phash (near-duplicate images, as 'data leakage' sees them), patient (meta patient_id/"
        "PatientID/subject_id or DICOM PatientID), study (meta study_id/StudyInstanceUID or "
        "DICOM StudyInstanceUID), path (file name only: misses copies), meta.KEY, or 'none'. "
        "Default: content,phash,patient,study",
    )
    split.add_argument(
        "--phash-distance",
        type=int,
        default=18,
        help="256-bit pHash distance that counts as the same image (default 18, as 'leakage')",
    )
    split.add_argument(
        "--allow-leaks",
        action="store_true",
        help="write the splits even if the leakage check finds an image in two splits",
    )
    split.add_argument("--report", type=Path, help="write grouping and leakage counts as JSON")
    add_selection_args(split)  # --sample shares --seed
    split.add_argument(
        "--no-group-by-image",
        action="store_true",
        help="same as --group-by none --allow-leaks (not recommended)",
    )
    split.set_defaults(func=run_split)


def run_classify(args: argparse.Namespace) -> int:
    from medvl.data.jsonl import read_records, write_records
    from medvl.data.paths import rebase_images
    from medvl.data.taxonomy import classify_records
    from medvl.fileio import atomic_write_json

    records, summary = classify_records(read_records(args.file), use_labels=not args.rules_only)
    write_records(args.out, rebase_images(records, args.file.parent, args.out.parent))
    print(f"classified {summary['n']} records -> {args.out}")
    for question_type, by_answer in sorted(summary["counts"].items()):
        cells = ", ".join(f"{k} {v}" for k, v in sorted(by_answer.items()))
        print(f"  {question_type:<14} {cells}")
    print(f"  label sources: {summary['sources']}")
    if args.mapping:
        atomic_write_json(args.mapping, summary)
        print(f"  type mapping: {args.mapping}")
    return 0


def run_leakage(args: argparse.Namespace) -> int:
    from medvl.data.jsonl import read_records, write_records
    from medvl.data.leakage import filter_test, find_leakage
    from medvl.data.paths import rebase_images
    from medvl.fileio import atomic_write_json

    train, test = read_records(args.train), read_records(args.test)
    try:
        report = find_leakage(
            train, args.train.parent, test, args.test.parent, phash_distance=args.phash_distance
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    data = report.to_dict()
    print(f"leakage of {args.test} ({len(test)} records) into {args.train} ({len(train)}):")
    for kind, count in data["counts"].items():
        print(f"  {kind:<16} {count}")
    for pair in data["pairs"][:20]:
        print(f"  {pair['kind']}: test {pair['test_id']} ~ train {pair['train_id']}")
    if args.report:
        atomic_write_json(args.report, data)
        print(f"  report: {args.report}")
    if args.out_filtered:
        kept = filter_test(test, report)
        write_records(
            args.out_filtered, rebase_images(kept, args.test.parent, args.out_filtered.parent)
        )
        print(f"  filtered test set ({len(kept)} of {len(test)} kept): {args.out_filtered}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from medvl.data.jsonl import read_records
    from medvl.data.stats import dataset_stats, format_stats_table, plot_stats
    from medvl.fileio import atomic_write_json

    records = read_records(args.file)
    counts: dict = {}
    if args.model:
        from medvl.data.validate import validate_jsonl
        from medvl.models.processing import load_token_counter

        counter, _ = load_token_counter(args.model, **pixel_budget_args(args))
        result = validate_jsonl(args.file, counter=counter)
        records = [r for r in result.valid if r.id in result.token_lengths]
        counts = {  # the numbers the totals count: image sizes and video shapes as validated
            "token_counts": [result.token_lengths[r.id] for r in records],
            "image_token_counts": [result.image_tokens[r.id] for r in records],
        }
        if any(r.videos for r in records):
            counts["video_token_counts"] = [result.video_tokens[r.id] for r in records]
            counts["video_frame_counts"] = [
                sum(n for n, _, _ in result.video_shapes.get(r.id, [])) for r in records
            ]
    stats = dataset_stats(records, args.file.parent, **counts)
    print(format_stats_table(stats))
    if args.out:
        atomic_write_json(args.out, stats)
    if args.plots:
        for path in plot_stats(stats, args.plots):
            print(f"plot: {path}")
    return 0


def parse_fractions(text: str) -> dict[str, float]:
    """``"train=0.8,test=0.2"`` -> ``{"train": 0.8, "test": 0.2}`` with a clear error."""
    fractions = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        try:
            fractions[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(f"--fractions item {item!r} must look like name=0.8")
    return fractions


def run_split(args: argparse.Namespace) -> int:
    from medvl.data.jsonl import read_records, write_records
    from medvl.data.media_hashes import ImageHasher
    from medvl.data.paths import rebase_images
    from medvl.data.split import (
        check_split_leakage,
        raise_on_leaks,
        split_dataset,
        split_summary,
    )
    from medvl.fileio import atomic_write_json

    stratify = None if args.stratify_by.lower() == "none" else args.stratify_by
    group_by = "none" if args.no_group_by_image else args.group_by
    allow_leaks = args.allow_leaks or args.no_group_by_image
    if not 0 <= args.phash_distance <= 256:
        raise ConfigError(f"--phash-distance must be in 0..256 bits, got {args.phash_distance}")
    hasher, base = ImageHasher(), args.file.parent
    result = split_dataset(
        select_records(args, read_records(args.file), args.file),
        fractions=parse_fractions(args.fractions),
        seed=args.seed,
        stratify_by=stratify,
        group_by=group_by,
        base_dir=base,
        hasher=hasher,
        phash_distance=args.phash_distance,
    )
    _print_grouping(result.grouping)
    checks = check_split_leakage(
        result.splits, base, hasher=hasher, phash_distance=args.phash_distance
    )
    _print_checks(checks)
    if not allow_leaks:
        raise_on_leaks(checks)  # before writing: a leaking split is never written by default
    for name, records in result.splits.items():
        write_records(args.out / f"{name}.jsonl", rebase_images(records, base, args.out))
        print(f"  {name:<6} {len(records):>6} records -> {args.out / f'{name}.jsonl'}")
    summary = split_summary(result.splits, stratify)
    print(summary)
    if args.report:
        summary["grouping"] = result.grouping.summary()
        summary["leakage"] = [
            {"train": c.train, "test": c.test, **c.report.to_dict()} for c in checks
        ]
        atomic_write_json(args.report, summary)
        print(f"  report: {args.report}")
    return 0


def _print_grouping(grouping) -> None:
    """Which keys grouped the records, and how many groups each formed on its own."""
    keys = ",".join(grouping.group_by) or "none (every record alone)"
    n = sum(map(len, grouping.groups))
    largest = grouping.largest()
    share = f" ({largest / n:.0%} of {n} records)" if n else ""
    print(f"grouped by {keys}: {len(grouping.groups)} groups, largest {largest}{share}")
    for key, count in grouping.keys.items():
        print(f"  {key:<10} {count.records:>6} records carry it -> {count.groups} groups")
    if grouping.unreadable:
        print(
            f"  {len(grouping.unreadable)} images unreadable, grouped by path: "
            f"{', '.join(grouping.unreadable[:3])}"
        )


def _print_checks(checks) -> None:
    """The leakage check of every pair of splits: image leaks (must be 0) and QA duplicates."""
    print("leakage check of the new splits (image leaks must be 0):")
    for check in checks:
        counts = check.report.counts
        print(
            f"  {check.test} vs {check.train}: {len(check.image_leaks)} image leaks "
            f"(exact {counts['exact_image']}, near {counts['near_image']}), "
            f"{counts['qa_duplicate']} duplicate question-answer pairs"
        )

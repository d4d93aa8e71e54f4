"""``medvl data export``: canonical JSONL out to the files other trainers read.

* ``llava``: LLaVA / 2U1 JSON (``id``, ``image``, ``conversations``); medvl's ``llava`` reader
  reads it back.
* ``sharegpt``: LLaMA-Factory sharegpt JSON (``messages`` + ``images``, OpenAI-style tags), and
  its entry merged into ``dataset_info.json`` beside it, so LLaMA-Factory's ``dataset_dir`` is
  the output's folder and ``dataset`` is the entry's name.
* ``trl``: JSON lines with TRL's multimodal ``messages`` and ``images`` (absolute paths).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medvl.cli.select_args import add_selection_args, select_records
from medvl.errors import ConfigError

TARGETS = ("llava", "sharegpt", "trl")


def register(subs) -> None:
    """Add ``data export`` to the ``data`` group."""
    export = subs.add_parser(
        "export",
        help="write canonical JSONL as LLaVA, LLaMA-Factory sharegpt or TRL files",
        description=__doc__.split("\n", 1)[1].strip() if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("file", type=Path, help="canonical .jsonl")
    export.add_argument("--to", required=True, choices=TARGETS, help="target format")
    export.add_argument(
        "--out", type=Path, required=True, help="output file (.json for llava/sharegpt, .jsonl)"
    )
    export.add_argument(
        "--image-root",
        type=Path,
        help="folder the input's relative image paths start from (default: the input's folder)",
    )
    export.add_argument(
        "--name",
        help="sharegpt: the dataset's name in dataset_info.json (default: the output's stem)",
    )
    add_selection_args(export, seed="seed of --sample (default 0)")
    export.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from medvl.data.jsonl import read_records

    if args.out.resolve() == args.file.resolve():
        raise ConfigError(f"--out {args.out} is the input file; write to a new file")
    base = args.image_root or args.file.parent
    if not base.is_dir():
        raise ConfigError(f"--image-root {base}: no such folder")
    records = select_records(args, read_records(args.file), args.file)
    if args.to == "llava":
        from medvl.data.formats.writers import to_llava

        n = to_llava(records, args.out, base)
        print(f"llava: wrote {n} records to {args.out} (image paths relative to its folder)")
    elif args.to == "sharegpt":
        _export_sharegpt(records, args, base)
    else:
        from medvl.data.formats.writers import to_trl_jsonl

        n = to_trl_jsonl(records, args.out, base)
        print(f"trl: wrote {n} records to {args.out} (messages + images, absolute image paths)")
    return 0


def _export_sharegpt(records: list, args: argparse.Namespace, base: Path) -> None:
    from medvl.data.formats.writers import merge_dataset_info, to_sharegpt

    info = to_sharegpt(records, args.out, base)
    name = args.name or args.out.stem
    entry = {name: next(iter(info.values()))}
    info_path = merge_dataset_info(args.out.parent / "dataset_info.json", entry)
    print(f"sharegpt: wrote {len(records)} records to {args.out}")
    print(
        f"  dataset_info.json entry {name!r} merged into {info_path} "
        f"(LLaMA-Factory: dataset_dir={args.out.parent}, dataset={name})"
    )

"""``medvl data volumes``: a folder of CT/MRI series or NIfTI volumes plus a CSV of questions
(or reports) -> canonical JSONL records with one ``<video>`` each.

The CSV's ``volume`` column names a DICOM series folder, a multi-frame DICOM file or a
``.nii``/``.nii.gz`` file under ROOT; ``question`` + ``answer`` make a VQA record, ``report`` a
report-generation record. Optional columns: ``id``, ``answer_type``, ``question_type``,
``split``, ``lang``, ``series_uid``. Patient, study and series ids from the DICOM headers go
into ``meta``. Bad rows are skipped and listed by row number (the header is row 1); when no
row is usable the command exits with status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medvl.data.video import AXES
from medvl.errors import ConfigError, MedvlError


def register(subs) -> None:
    """Add ``data volumes`` to the ``data`` group."""
    volumes = subs.add_parser(
        "volumes",
        help="CT/MRI series or NIfTI volumes + a CSV of questions/reports -> canonical JSONL",
        description=__doc__.split("\n", 2)[2].strip() if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    volumes.add_argument("root", type=Path, help="folder holding the series folders / volumes")
    volumes.add_argument("--csv", type=Path, required=True, help="the questions or reports")
    volumes.add_argument("--out", type=Path, required=True, help="output canonical .jsonl")
    volumes.add_argument("--dataset", default="volumes", help="dataset name (default volumes)")
    volumes.add_argument(
        "--axis", choices=AXES, default="axial", help="slicing axis (default axial)"
    )
    sample = volumes.add_mutually_exclusive_group()
    sample.add_argument("--sample-n", type=int, help="N slices evenly, first and last included")
    sample.add_argument("--every-mm", type=float, help="one slice every K millimetres")
    volumes.add_argument(
        "--window",
        help="window preset (lung, mediastinum, bone, brain, abdomen, liver), CENTER,WIDTH "
        "(--window=-600,1500) or minmax (default: the DICOM file's own window, else min..max)",
    )
    volumes.set_defaults(func=run_volumes)


def run_volumes(args: argparse.Namespace) -> int:
    """Build the records, write them, print what was skipped; exit 2 when none was built."""
    from medvl.data.jsonl import write_records
    from medvl.data.volume_table import VolumeTable, records_from_table

    if not args.root.is_dir():
        raise ConfigError(f"{args.root}: no such folder (the volumes' root)")
    if not args.csv.is_file():
        raise ConfigError(f"--csv {args.csv}: no such file")
    settings = VolumeTable(
        root=args.root,
        dataset=args.dataset,
        axis=args.axis,
        sample=_sample(args),
        window=_window(args.window),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = records_from_table(args.csv, settings, args.out.parent)
    if not result.records:
        _print_skipped(result.skipped)
        raise MedvlError(f"{args.csv}: no usable row ({len(result.skipped)} skipped); see above")
    write_records(args.out, result.records)
    kinds = [r.videos[0].kind for r in result.records]
    warned = sum(1 for r in result.records if r.meta.get("warnings"))
    print(
        f"volumes: wrote {len(result.records)} records to {args.out} "
        f"({kinds.count('series')} DICOM series, {kinds.count('volume')} NIfTI volumes), "
        f"skipped {len(result.skipped)} rows; {warned} records carry warnings in meta"
    )
    _print_skipped(result.skipped)
    return 0


def _print_skipped(skipped: list[tuple[int, str]]) -> None:
    for number, reason in skipped[:50]:
        print(f"  skipped row {number}: {reason}")
    if len(skipped) > 50:
        print(f"  ... and {len(skipped) - 50} more")


def _sample(args: argparse.Namespace) -> dict:
    if args.sample_n is not None:
        if args.sample_n < 1:
            raise ConfigError(f"--sample-n must be at least 1, got {args.sample_n}")
        return {"n": args.sample_n}
    if args.every_mm is not None:
        if not args.every_mm > 0:
            raise ConfigError(f"--every-mm must be > 0, got {args.every_mm}")
        return {"every_mm": args.every_mm}
    return {}


def _window(text: str | None) -> str | list[float] | None:
    from medvl.data.windowing import MINMAX, WINDOW_PRESETS

    if text is None:
        return None
    if "," not in text:
        if text.lower() not in (*WINDOW_PRESETS, MINMAX):
            names = ", ".join([*WINDOW_PRESETS, MINMAX])
            raise ConfigError(f"--window {text!r}: unknown; use one of {names} or CENTER,WIDTH")
        return text.lower()
    try:
        center, width = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"--window {text!r}: give a preset name or CENTER,WIDTH") from exc
    if not width > 0:
        raise ConfigError(f"--window {text!r}: the width must be > 0")
    return [center, width]

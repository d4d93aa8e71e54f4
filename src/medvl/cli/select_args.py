"""``--where EXPR`` and ``--sample N [--seed S]``: the record filters several commands share."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

WHERE_HELP = (
    "keep only records for which EXPR is true, e.g. 'meta.subset == \"MRI\"', "
    '\'answer_type == "closed" and lang != "zh"\', \'meta.modality in ["CT", "MRI"]\', '
    "'not meta.patient'. Comparisons, and/or/not, in, literals and field names (record fields, "
    "meta.KEY); a field missing on a record is None; text compares exactly (case counts)"
)


def add_selection_args(parser: argparse.ArgumentParser, *, seed: str | None = None) -> None:
    """Add ``--where`` and ``--sample``; ``seed`` is the help of a new ``--seed``, or None when
    the command already has a ``--seed`` that the sample then shares."""
    group = parser.add_argument_group("record selection")
    group.add_argument("--where", metavar="EXPR", help=WHERE_HELP)
    shared = "" if seed is not None else " (with this command's --seed, default 0)"
    group.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help=f"keep N records drawn at random{shared}, after --where; the same records and "
        "seed give the same sample whatever the file's order",
    )
    if seed is not None:
        group.add_argument("--seed", type=int, default=0, help=seed)


def selection_of(args: argparse.Namespace) -> Any:
    """The :class:`~medvl.data.select.Selection` the flags ask for, or None (none given)."""
    from medvl.data.select import Selection

    if args.where is None and args.sample is None:
        return None
    return Selection(where=args.where, sample=args.sample, seed=getattr(args, "seed", None) or 0)


def select_records(args: argparse.Namespace, records: Sequence[Any], source: Path) -> list[Any]:
    """The records the flags keep, with one line saying how many; exit 2 (a readable
    :class:`~medvl.errors.MedvlError` naming the filter) when none is left."""
    selection = selection_of(args)
    if selection is None:
        return list(records)
    selected = selection.apply(records)
    kept = selected.check(source)
    print(selected.summary(source))
    return kept

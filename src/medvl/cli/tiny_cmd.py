"""``medvl tiny``: write a random-weight toy model of a real Qwen-VL architecture, offline."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(groups) -> None:
    """Add the ``tiny`` command."""
    from medvl.models.registry import FAMILIES

    tiny = groups.add_parser(
        "tiny", help="build a tiny random-weight Qwen-VL model folder offline (tests, demos)"
    )
    tiny.add_argument("--family", required=True, help=f"model family: {', '.join(FAMILIES)}")
    tiny.add_argument("--out", type=Path, required=True, help="output model folder")
    tiny.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    tiny.add_argument("--size", default="tiny", help="size preset (default tiny)")
    tiny.set_defaults(func=run_tiny)


def run_tiny(args: argparse.Namespace) -> int:
    from medvl.models.registry import get_family
    from medvl.models.tiny import build_tiny_model

    get_family(args.family)  # a clear error before torch is imported
    out = build_tiny_model(args.family, args.out, seed=args.seed, size=args.size)
    print(f"tiny {args.family} model ({args.size}, seed {args.seed}) written to {out}")
    return 0

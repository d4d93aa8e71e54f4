"""Command groups that are planned but not built yet: they exist so ``medvl --help`` shows the
whole toolkit, and each says which part is missing and exits with status 2."""

from __future__ import annotations

import argparse

from medvl.errors import NotBuiltError

# command -> (one-line help, the part of medvl that will provide it)
TRAIN_PLANNED: dict[str, tuple[str, str]] = {}  # every train step is built


def _not_built(part: str, command: str):
    def run(args: argparse.Namespace) -> int:
        raise NotBuiltError(
            f"'medvl {command}' is not built yet: the {part} part of medvl is "
            "still to come (see the open issues); nothing was run"
        )

    return run


def add_planned(groups, name: str, help_text: str, part: str, command: str) -> None:
    parser = groups.add_parser(name, help=help_text, description=f"{help_text} (not built yet)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(func=_not_built(part, command))

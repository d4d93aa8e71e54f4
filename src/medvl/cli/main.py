"""The ``medvl`` command line: one entry point, one sub-command group per task.

Library code never prints; this layer turns results into terminal output and turns
:class:`~medvl.errors.MedvlError` into one readable line and exit status 2. Filesystem failures
(full disk, read-only or unwritable folder, a file where a folder should be), whichever command
hits them, take the same path through :func:`~medvl.errors.filesystem_error`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from medvl import __version__
from medvl.cli import data_cmd, eval_cmd, infer_cmd, run_cmd, tiny_cmd, train_cmd, ui_cmd
from medvl.errors import MedvlError, filesystem_error

QUIET_HELP = "no progress bar or progress lines (errors and results are still printed)"


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by tests to check the help text)."""
    parser = argparse.ArgumentParser(
        prog="medvl",
        description="Fine-tune, use and evaluate Qwen-VL vision-language models for medicine.",
    )
    parser.add_argument("--version", action="version", version=f"medvl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    groups = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    groups.required = True
    data_cmd.register(groups)
    train_cmd.register(groups)
    infer_cmd.register(groups)
    eval_cmd.register(groups)
    run_cmd.register(groups)
    tiny_cmd.register(groups)
    ui_cmd.register(groups)
    _accept_quiet_after_commands(groups)
    return parser


def _accept_quiet_after_commands(groups: argparse._SubParsersAction) -> None:
    """Let every command take ``--quiet`` after its name too (``medvl predict --quiet``).

    The default is left unset (``SUPPRESS``) so a sub-command never overwrites the global
    flag given before it."""
    for sub in {id(p): p for p in groups.choices.values()}.values():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            _accept_quiet_after_commands(action)
        flags = [f for f in ("-q", "--quiet") if f not in sub._option_string_actions]
        if not nested and "--quiet" in flags:
            sub.add_argument(
                *flags, action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("medvl").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args) or 0)
    except MedvlError as exc:
        print(f"medvl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except Exception as exc:  # a full disk, read-only folder...: one line; anything else raises
        error = filesystem_error(exc)
        if error is None:
            raise
        print(f"medvl: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("medvl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

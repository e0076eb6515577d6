"""The ``personsearch`` command line: one sub-command per task.

Each concern owns its sub-commands in a ``commands`` module exposing ``register(subparsers)``; this file
only assembles them and turns :class:`~personsearch.errors.PersonSearchError` into a one-line message
with a non-zero exit code. Heavy imports (torch) happen inside the command handlers, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from personsearch import __version__
from personsearch.errors import PersonSearchError

# Modules that contribute sub-commands, in the order they appear in --help.
COMMAND_MODULES = (
    "personsearch.data.commands",
    "personsearch.evaluation.commands",
    "personsearch.engine.commands",
    "personsearch.distill.commands",
    "personsearch.search.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="personsearch",
        description="Person search (detection + re-identification in scene images) with DKD.",
        epilog="Run 'personsearch COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"personsearch {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except PersonSearchError as exc:
        print(f"personsearch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"personsearch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

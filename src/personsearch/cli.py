"""The ``personsearch`` command line: one sub-command per task.

Each concern owns its sub-commands in a ``commands`` module exposing ``register(subparsers)``; this file
only assembles them and is the one place that turns every user error into one line on stderr with exit
code 2: a :class:`~personsearch.errors.PersonSearchError` (also when a DataLoader worker raised it), a bad
option (argparse), and shows each :class:`~personsearch.errors.PersonSearchWarning` as one line. Heavy
imports (torch) happen inside the command handlers, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TextIO

from personsearch import __version__
from personsearch.errors import PersonSearchError, PersonSearchWarning

# Modules that contribute sub-commands, in the order they appear in --help.
COMMAND_MODULES = (
    "personsearch.data.commands",
    "personsearch.evaluation.commands",
    "personsearch.engine.commands",
    "personsearch.distill.commands",
    "personsearch.search.commands",
    "personsearch.footage.index_commands",  # own footage: index build / update / info
    "personsearch.footage.query_commands",  # own footage: query
    "personsearch.serve.commands",
    "personsearch.export.commands",
)


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (exit code 2): the problem and where help is."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


# torch re-raises an exception of a DataLoader worker with the worker's whole traceback as its message
_WORKER = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\s*\nOriginal Traceback")


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message of a user error, or None when ``exc`` is not one (a bug: let it show).

    A PersonSearchError raised in a DataLoader worker reaches the main process as the same type (or a
    RuntimeError when it cannot be rebuilt) whose message holds the worker's traceback: the original
    message is the text after its last ``ClassName: `` line.
    """
    text = str(exc)
    ours = isinstance(exc, PersonSearchError)
    if _WORKER.search(text):
        # the same type rebuilt; or a RuntimeError: a user error only if a personsearch error is inside
        name = re.escape(f"{type(exc).__module__}.{type(exc).__qualname__}") if ours else r"personsearch(?:\.\w+)+"
        found = list(re.finditer(rf"^{name}: ", text, flags=re.MULTILINE))
        if found:
            text, ours = text[found[-1].end() :], True
    return " ".join(text.split()) if ours else None


def _one_line_warnings(command: str) -> Callable[..., None]:
    """A ``warnings.showwarning`` printing PersonSearchWarnings as one line (others as before)."""
    previous = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if isinstance(category, type) and issubclass(category, PersonSearchWarning):
            print(f"personsearch {command}: warning: {' '.join(str(message).split())}", file=sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    return show


def build_parser() -> argparse.ArgumentParser:
    """The ``personsearch`` parser with the sub-commands of every module in :data:`COMMAND_MODULES` that
    can be imported (an optional one whose dependencies are missing is left out)."""
    parser = OneLineParser(
        prog="personsearch",
        description="Person search (detection + re-identification in scene images) with DKD.",
        epilog="Run 'personsearch COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"personsearch {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not exc.name or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
                raise  # a missing dependency inside the module, not the (optional) module itself
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; its exit code (2 and one line on stderr for a user error, 130 on Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    previous_showwarning = warnings.showwarning
    warnings.showwarning = _one_line_warnings(args.command)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"personsearch {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_error_message(exc)
        if message is None:
            raise
        print(f"personsearch {args.command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = previous_showwarning


if __name__ == "__main__":
    sys.exit(main())

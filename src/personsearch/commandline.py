"""Option blocks shared by several sub-commands (one definition each, so their names, defaults and help
texts stay the same everywhere), and :func:`add_command`, the one way a ``commands`` module adds a
sub-command; :func:`options_from_args` builds a library function's options dataclass from parsed arguments.
Imports only argparse, :mod:`personsearch.argtypes` and the dataset names: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from personsearch.argtypes import device
from personsearch.data import DATASETS

#: ``handler(args)``: a sub-command's entry point, returning its exit code.
Handler = Callable[[argparse.Namespace], int]

TRAINED_MODEL = "trained model (personsearch train)"
GALLERY_INDEX = "gallery index (personsearch index build)"
BACKEND_HELP = (
    "torch (default) | onnxruntime: run the model exported by personsearch export; --checkpoint is then "
    "its folder (same model_id as the checkpoint, so either backend queries an index built by the other)"
)


T = TypeVar("T")


def options_from_args(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """The dataclass ``cls`` (a library function's options) with each field from ``values``, else from the
    option of ``args`` of the same name; a field in neither is an ``AttributeError`` (a bug, not user input)."""
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = set(values) - set(fields)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    return cls(**{name: values[name] if name in values else getattr(args, name) for name in fields})


def add_command(
    subparsers: argparse._SubParsersAction, name: str, handler: Handler, *, help: str, description: str
) -> argparse.ArgumentParser:
    """A sub-command ``name`` (``help``: its line in ``personsearch --help``) run by ``handler``."""
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.set_defaults(handler=handler)
    return parser


def add_checkpoint_option(
    parser: argparse.ArgumentParser,
    help: str = TRAINED_MODEL,
    *,
    required: bool = False,
    metavar: str | None = None,
    as_path: bool = True,
) -> None:
    """``--checkpoint``: the model file (a :class:`~pathlib.Path`; ``as_path=False``: the text as given, also an
    exported model's folder)."""
    typed: dict[str, Any] = {"type": Path} if as_path else {}
    parser.add_argument("--checkpoint", **typed, required=required, metavar=metavar, help=help)


def add_device_option(parser: argparse.ArgumentParser, note: str = "default auto") -> None:
    """``--device auto | cpu | cuda | cuda:N`` (default auto); ``note`` is the help text's parenthesis."""
    parser.add_argument("--device", type=device, default="auto", help=f"auto | cpu | cuda | cuda:N ({note})")


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """``--backend torch | onnxruntime`` (default torch)."""
    parser.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch", help=BACKEND_HELP)


def add_index_option(parser: argparse.ArgumentParser) -> None:
    """``--index INDEX``: the gallery index to search (required)."""
    parser.add_argument("--index", required=True, type=Path, metavar="INDEX", help=GALLERY_INDEX)


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """``--dataset FORMAT --root DIR``: a dataset on disk (both required)."""
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="dataset format")
    parser.add_argument("--root", required=True, type=Path, help="dataset root folder")


def add_config_options(parser: argparse.ArgumentParser, config_help: str, overrides_help: str) -> None:
    """``--config FILE.yaml`` and the ``KEY=VALUE`` overrides after it."""
    parser.add_argument("--config", type=Path, help=config_help)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=overrides_help)


def add_overwrite_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--overwrite``: train into a run folder that already holds a run."""
    parser.add_argument("--overwrite", action="store_true", help=help)


def add_no_progress_option(parser: argparse.ArgumentParser, help: str = "no progress bars") -> None:
    """``--no-progress``."""
    parser.add_argument("--no-progress", action="store_true", help=help)

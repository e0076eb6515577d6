"""Helpers shared by the two writers: output folder checks, progress bars, per-item RNGs."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from personsearch.errors import DatasetError

T = TypeVar("T")


def prepare_out(out: str | Path) -> Path:
    """Create ``out`` if needed and check that files can be written there."""
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root}: output path exists and is not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".synth_write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DatasetError(f"{root}: output folder is not writable ({exc.strerror or exc})") from None
    return root


def progress(items: Iterable[T], total: int, desc: str, enabled: bool) -> Iterator[T]:
    """A tqdm bar on stderr when ``enabled`` and stderr is a terminal."""
    yield from tqdm(
        items, total=total, desc=desc, file=sys.stderr, disable=None if enabled else True, leave=False
    )


def child_rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator for one item, so items do not depend on each other's draws."""
    return np.random.default_rng([seed, *keys])

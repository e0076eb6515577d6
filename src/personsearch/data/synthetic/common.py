"""Helpers shared by the two writers: output folder checks, progress bars, per-item RNGs."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from personsearch.errors import DatasetError

T = TypeVar("T")


MARKER = ".personsearch-synthetic"
# Everything a previous run may have written; removed before a new run into the same folder.
_OWNED = (
    "Image",
    "annotation",
    "frames",
    "annotations",
    "query_box",
    "frame_train.mat",
    "frame_test.mat",
    "ID_train.mat",
    "ID_test.mat",
    "query_info.txt",
    MARKER,
)


def prepare_out(out: str | Path) -> Path:
    """Create ``out`` (empty, or a previous synthetic set that is cleared) and check it is writable."""
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root}: output path exists and is not a folder")
    try:
        if root.is_dir() and any(root.iterdir()):
            if not (root / MARKER).is_file():
                raise DatasetError(f"{root}: output folder is not empty and holds no synthetic dataset")
            for name in _OWNED:
                path = root / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        root.mkdir(parents=True, exist_ok=True)
        (root / MARKER).write_text("synthetic person-search dataset (personsearch.data.synthetic)\n")
    except OSError as exc:
        raise DatasetError(f"{root}: output folder is not writable ({exc.strerror or exc})") from None
    return root


def progress(items: Iterable[T], total: int, desc: str, enabled: bool) -> Iterator[T]:
    """A tqdm bar on stderr when ``enabled`` and stderr is a terminal."""
    yield from tqdm(items, total=total, desc=desc, file=sys.stderr, disable=None if enabled else True, leave=False)


def child_rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator for one item, so items do not depend on each other's draws."""
    return np.random.default_rng([seed, *keys])

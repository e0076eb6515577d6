"""Entry point: check the arguments, then hand over to the format's writer."""

from __future__ import annotations

import time
from pathlib import Path

from personsearch.errors import DatasetError

from .common import prepare_out
from .cuhk_writer import write_cuhk
from .presets import PRESETS
from .prw_writer import write_prw
from .truth import SyntheticDataset

FORMATS = ("cuhk-sysu", "prw")


def generate_dataset(fmt: str, out: str | Path, preset: str = "tiny", seed: int = 0) -> SyntheticDataset:
    """Write a synthetic ``fmt`` dataset ("cuhk-sysu" | "prw") of size ``preset`` into ``out``.

    The same ``seed`` gives byte-identical files. Returns the ground truth of what was written.
    """
    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if preset not in PRESETS:
        raise DatasetError(f"unknown synthetic preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DatasetError(f"seed must be a non-negative integer, got {seed!r}")
    root = prepare_out(out)
    start = time.perf_counter()
    writer = write_cuhk if fmt == "cuhk-sysu" else write_prw
    summary = writer(root, PRESETS[preset], seed)
    summary.seconds = time.perf_counter() - start
    return summary

"""Evaluation: detection AP/recall and person-search mAP/top-k with the exact community protocols.

Python API::

    from personsearch.data import load_dataset
    from personsearch.evaluation import evaluate, load_results, save_results, make_results

    data = load_dataset("cuhk-sysu", root)
    results = load_results("results.npz", data)          # validated against the dataset
    metrics = evaluate(data, results, gallery_size=100)  # {"search": {...}, "detection": {...}, ...}

See ``docs/evaluation.md`` for the protocol details and :mod:`personsearch.evaluation.results` for the
results-file schema.
"""

from __future__ import annotations

from personsearch.evaluation.core import evaluate, evaluate_sweep
from personsearch.evaluation.protocols import CUHK_SYSU, SearchProtocol, protocol_for
from personsearch.evaluation.results import (
    ResultsError,
    SearchResults,
    load_results,
    make_results,
    save_results,
)

GALLERY_SIZES = CUHK_SYSU.gallery_sizes  # CUHK-SYSU's TestG sizes and -1 (the full set)

__all__ = [
    "GALLERY_SIZES",
    "ResultsError",
    "SearchProtocol",
    "SearchResults",
    "evaluate",
    "evaluate_sweep",
    "load_results",
    "make_results",
    "protocol_for",
    "save_results",
]

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

from personsearch.evaluation.core import GALLERY_SIZES, evaluate, evaluate_sweep
from personsearch.evaluation.results import (
    ResultsError,
    SearchResults,
    load_results,
    make_results,
    save_results,
)

__all__ = [
    "GALLERY_SIZES",
    "ResultsError",
    "SearchResults",
    "evaluate",
    "evaluate_sweep",
    "load_results",
    "make_results",
    "save_results",
]

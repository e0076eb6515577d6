"""Evaluation of a model that detects nothing: zeros, not a crash (a barely trained model does this)."""

from __future__ import annotations

import numpy as np
import pytest

from personsearch.data import load_dataset
from personsearch.data.synthetic import generate_dataset
from personsearch.evaluation import evaluate, make_results


@pytest.mark.parametrize("fmt", ["cuhk-sysu", "prw"])
def test_no_detections_gives_zero_metrics(fmt, tmp_path):
    data = load_dataset(fmt, generate_dataset(fmt, tmp_path / "data", "tiny", seed=1).root)
    results = make_results(
        [r.name for r in data.gallery],
        np.zeros(0, np.int64),
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.float32),
        np.zeros((0, 8), np.float32),
        [q.name for q in data.queries],
        np.ones((len(data.queries), 8), np.float32) / np.sqrt(8),
    )
    metrics = evaluate(data, results, gallery_size=50 if fmt == "cuhk-sysu" else -1)
    assert metrics["search"] == {"mAP": 0.0, "top1": 0.0, "top5": 0.0, "top10": 0.0}
    assert metrics["detection"]["recall"] == 0.0

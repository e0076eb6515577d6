"""What was learnt: a model's search metrics next to random embeddings on the same detections.

The baseline keeps every detection (boxes, scores) of the results and replaces the gallery and query
features by random unit vectors (fixed seed), so the gap between the two columns is what the Re-ID
embedding contributes beyond chance; detection metrics are the same for both.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from personsearch.data.annotations import PersonSearchData


def random_unit(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` random unit vectors of size ``dim`` (float32)."""
    x = rng.standard_normal((rows, max(dim, 1))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def random_features(results, seed: int = 0):
    """A copy of ``results`` whose detection and query features are random unit vectors."""
    rng = np.random.default_rng(seed)
    dim = results.feature_dim
    out = dataclasses.replace(
        results,
        det_features=random_unit(len(results.det_features), dim, rng),
        query_features=random_unit(len(results.query_features), dim, rng),
        source=f"{results.source} (random features, seed {seed})",
    )
    if results.has_query_detections:
        out.query_det_features = random_unit(len(results.query_det_features), dim, rng)
    return out


def _zero_search() -> dict[str, float]:
    return {"mAP": 0.0, "top1": 0.0, "top5": 0.0, "top10": 0.0}


def settings(data: PersonSearchData) -> list[tuple[str, dict[str, Any]]]:
    """The standard settings: CUHK-SYSU at each gallery size present plus the full set; PRW with and
    without the query camera's frames (the protocol's ``standard_settings``)."""
    from personsearch.evaluation.protocols import protocol_for

    return protocol_for(data).standard_settings(data)


def search_metrics(data: PersonSearchData, results, det_thresh: float = 0.5) -> tuple[list[dict], str | None]:
    """Search metrics at every standard setting, and a note when they could not be computed normally.

    With no detection at or above ``det_thresh`` every query misses, so the metrics are 0; the
    evaluation is not called then (it raised ``IndexError`` on such results, see the report).
    """
    from personsearch.evaluation import evaluate

    rows = []
    if not np.any(results.det_scores >= np.float32(det_thresh)):
        note = f"no detection scores >= det_thresh {det_thresh}: every query misses (metrics 0)"
        return [{"setting": name, **_zero_search()} for name, _ in settings(data)], note
    for name, kwargs in settings(data):
        m = evaluate(data, results, det_thresh=det_thresh, detection=False, **kwargs)
        rows.append({"setting": name, **m["search"]})
    return rows, None


def compare_with_random(data: PersonSearchData, results, det_thresh: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """Trained vs random-embedding metrics (fractions) plus the detection metrics."""
    from personsearch.evaluation.core import prepare_gallery
    from personsearch.evaluation.detection import evaluate_detection

    trained, note = search_metrics(data, results, det_thresh)
    baseline, _ = search_metrics(data, random_features(results, seed), det_thresh)
    detection = evaluate_detection(data, prepare_gallery(data, results, det_thresh))
    kept = int(np.sum(results.det_scores >= np.float32(det_thresh)))
    return {
        "dataset": data.name,
        "det_thresh": det_thresh,
        "random_seed": seed,
        "num_queries": len(data.queries),
        "num_detections": kept,
        "detection": detection,
        "trained": trained,
        "random": baseline,
        "note": note,
    }


def _pct(x: float) -> str:
    return f"{100 * x:6.1f}"


def format_comparison(report: dict[str, Any]) -> str:
    """A side-by-side table: trained model vs random embeddings (same detections)."""
    rand = f"random embeddings (seed {report['random_seed']})"
    lines = [
        f"{report['dataset']}: {report['num_queries']} queries, {report['num_detections']} gallery detections "
        f"with score >= {report['det_thresh']} (the same for both columns)",
        f"{'setting':>14} | {'trained model':^27} | {rand:^27}",
        f"{'':>14} | {'mAP':>6} {'top-1':>6} {'top-5':>6} {'top-10':>6} | {'mAP':>6} {'top-1':>6} {'top-5':>6} "
        f"{'top-10':>6}",
    ]
    for t, r in zip(report["trained"], report["random"], strict=True):
        lines.append(
            f"{t['setting']:>14} | {_pct(t['mAP'])} {_pct(t['top1'])} {_pct(t['top5'])} {_pct(t['top10'])} | "
            f"{_pct(r['mAP'])} {_pct(r['top1'])} {_pct(r['top5'])} {_pct(r['top10'])}"
        )
    d = report["detection"]
    lines.append(f"{'detection':>14} | AP {_pct(d['ap'])}  recall {_pct(d['recall'])}   (percent)")
    if report.get("note"):
        lines.append(f"note: {report['note']}")
    return "\n".join(lines)

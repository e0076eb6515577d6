"""How an embedding uses its dimensions, and whether an OIM lookup table matches the embeddings it stores.

* :func:`spectrum_summary`: the share of the variance in the top principal directions and the effective
  rank (the exponential of the entropy of the normalised PCA spectrum: 1 for a collapsed embedding, D for
  an isotropic one), to spot an embedding that collapsed into a handful of directions.
* :func:`lut_alignment`: per identity, the cosine between its lookup-table row and the normalised mean
  embedding of that identity's boxes; a converged table sits close to 1.
"""

from __future__ import annotations

import numpy as np


def pca_spectrum(features: np.ndarray) -> np.ndarray:
    """Eigenvalues of the covariance of ``features`` [N, D], largest first (N >= 2)."""
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    singular = np.linalg.svd(x, compute_uv=False)
    return singular**2 / max(len(x) - 1, 1)


def spectrum_summary(features: np.ndarray, tops: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """``top{k}_share`` (variance share of the first k principal directions), ``dims_for_99`` (how many
    directions hold 99 % of it) and ``effective_rank``; zeros when there are fewer than two rows."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        return {**{f"top{k}_share": 0.0 for k in tops}, "dims_for_99": 0, "effective_rank": 0.0}
    eig = pca_spectrum(x)
    total = float(eig.sum())
    if total <= 0:
        return {**{f"top{k}_share": 1.0 for k in tops}, "dims_for_99": 1, "effective_rank": 1.0}
    share = eig / total
    cumulative = np.cumsum(share)
    nonzero = share[share > 0]
    return {
        **{f"top{k}_share": float(cumulative[min(k, len(cumulative)) - 1]) for k in tops},
        "dims_for_99": int(np.searchsorted(cumulative, 0.99) + 1),
        "effective_rank": float(np.exp(-(nonzero * np.log(nonzero)).sum())),
    }


def lut_alignment(lut: np.ndarray, features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Cosine between ``lut[c]`` and the normalised mean of the ``features`` labelled ``c``, over the
    classes present (``labels`` < 0 ignored): mean, median and minimum; plus the mean cosine of each
    feature to its own class row."""
    lut = np.asarray(lut, dtype=np.float64)
    feats = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    keep = labels >= 0
    feats, labels = feats[keep], labels[keep]
    if len(labels) == 0:
        return {"mean": 0.0, "median": 0.0, "min": 0.0, "feature_to_row": 0.0, "classes": 0}
    lut_norm = lut / np.maximum(np.linalg.norm(lut, axis=1, keepdims=True), 1e-12)
    feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    cosines = []
    for c in np.unique(labels):
        mean = feats[labels == c].mean(axis=0)
        cosines.append(float(lut_norm[c] @ (mean / max(np.linalg.norm(mean), 1e-12))))
    per_feature = np.einsum("nd,nd->n", feats, lut_norm[labels])
    return {
        "mean": float(np.mean(cosines)),
        "median": float(np.median(cosines)),
        "min": float(np.min(cosines)),
        "feature_to_row": float(per_feature.mean()),
        "classes": len(cosines),
    }

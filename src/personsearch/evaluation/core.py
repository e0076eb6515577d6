"""``evaluate``: one entry point for both datasets (spec section 3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from personsearch.data.annotations import GalleryProtocol, PersonSearchData
from personsearch.errors import PersonSearchError
from personsearch.evaluation.cbgm import CbgmHook
from personsearch.evaluation.detection import evaluate_detection
from personsearch.evaluation.protocols import FULL_GALLERY, protocol_for
from personsearch.evaluation.results import SearchResults, gallery_index, validate_against
from personsearch.evaluation.search import (
    DEFAULT_BLOCK_ITEMS,
    TOPK,
    BlockEngine,
    GalleryDetections,
    group_detections,
)


def prepare_gallery(data: PersonSearchData, results: SearchResults, det_thresh: float) -> GalleryDetections:
    """The results' detections with ``score >= det_thresh``, grouped by dataset gallery image."""
    image = gallery_index(results, data)[results.det_image] if len(results.det_image) else results.det_image
    return group_detections(
        len(data.gallery),
        image.astype(np.int64),
        results.det_boxes,
        results.det_scores,
        results.det_features,
        det_thresh,
        [r.name for r in data.gallery],
    )


def _search(
    data: PersonSearchData,
    results: SearchResults,
    gallery: GalleryDetections,
    gallery_size: int,
    cross_camera: bool,
    cbgm: bool,
    protocol: GalleryProtocol | None,
    per_query: bool,
    block_items: int,
) -> tuple[dict, list[dict]]:
    spec = protocol_for(data)
    hook = None
    if cbgm:
        det_index, det_features = results.query_det_index, results.query_det_features
        if det_index is None or det_features is None:  # not results.has_query_detections
            raise PersonSearchError(f"{results.source}: CBGM needs the query images' detections (query_det_* arrays)")
        missing = np.setdiff1d(np.arange(len(results.query_names)), det_index)
        if missing.size:
            raise PersonSearchError(f"{results.source}: CBGM: query {missing[0]} has no query_det_* rows")
        k1, k2 = spec.cbgm_k
        hook = CbgmHook(det_index, det_features, k1, k2)
    engine = BlockEngine(gallery, results.query_features, hook, want_details=per_query)
    if spec.has_gallery_sizes:
        from personsearch.evaluation.cuhk import cuhk_blocks

        if protocol is None:
            from personsearch.data.cuhk_sysu import load_gallery_protocol

            protocol = load_gallery_protocol(data.root, spec.protocol_file_size(gallery_size))
        if list(protocol.query_names) != [q.name for q in data.queries]:
            raise PersonSearchError(
                f"TestG{protocol.size}: its queries differ from TestG50's (the query order must be the same)"
            )
        blocks = cuhk_blocks(protocol, gallery, gallery_size == FULL_GALLERY, block_items)
    else:
        from personsearch.evaluation.prw import prw_blocks

        blocks = prw_blocks(data, gallery, cross_camera, block_items)
    nq = len(data.queries)
    ap = np.zeros(nq)
    acc = np.zeros((nq, len(TOPK)))
    details: list[dict] = []
    for block in blocks:
        out = engine.run(block)
        ap[block.queries] = out.ap
        acc[block.queries] = out.acc
        details.extend(out.details)
    search = {"mAP": float(ap.mean()) if nq else 0.0}
    for c, k in enumerate(TOPK):
        search[f"top{k}"] = float(acc[:, c].mean()) if nq else 0.0
    for d in details:
        q = data.queries[d["query"]]
        d.update({"query_image": q.name, "query_box": [int(v) for v in q.box], "query_pid": int(q.pid)})
    return search, details


def evaluate(
    data: PersonSearchData,
    results: SearchResults,
    gallery_size: int | None = None,
    cross_camera: bool = False,
    det_thresh: float = 0.5,
    cbgm: bool = False,
    protocol: GalleryProtocol | None = None,
    per_query: bool = False,
    detection: bool = True,
    block_items: int = DEFAULT_BLOCK_ITEMS,
) -> dict:
    """Detection and person-search metrics of ``results`` on ``data``'s test split (fractions in [0, 1]).

    ``gallery_size`` applies to CUHK-SYSU (a ``TestG{N}.mat`` size, or -1 for the full set; None: the
    dataset's standard setting, 100 on CUHK-SYSU); ``cross_camera`` to PRW (see :mod:`.protocols`).
    ``det_thresh`` filters detections for both the detection metric and the search. With ``per_query``
    the result holds a ``"per_query"`` list (AP and ranked top-10 per query).
    ``protocol`` lets a caller pass an already loaded CUHK-SYSU protocol.
    """
    validate_against(results, data)
    spec = protocol_for(data)
    spec.check_settings(gallery_size, cross_camera)
    if gallery_size is None:
        gallery_size = spec.standard_gallery_size
    gallery = prepare_gallery(data, results, det_thresh)
    out: dict = {}
    search, details = _search(
        data, results, gallery, gallery_size, cross_camera, cbgm, protocol, per_query, block_items
    )
    out["search"] = search
    if detection:
        out["detection"] = evaluate_detection(data, gallery)
    out.update(
        {
            "dataset": data.name,
            "gallery_size": spec.reported_gallery_size(gallery_size),
            "cross_camera": bool(cross_camera),
            "det_thresh": float(det_thresh),
            "cbgm": bool(cbgm),
            "num_queries": len(data.queries),
            "num_gallery_images": len(data.gallery),
            "num_detections": int(gallery.count.sum()),
        }
    )
    if per_query:
        out["per_query"] = details
    return out


def evaluate_sweep(
    data: PersonSearchData,
    results: SearchResults,
    sizes: Sequence[int],
    det_thresh: float = 0.5,
    cbgm: bool = False,
) -> dict:
    """CUHK-SYSU metrics at several gallery sizes (detections grouped once, detection metric once)."""
    validate_against(results, data)
    gallery = prepare_gallery(data, results, det_thresh)
    curve = []
    for size in sizes:
        search, _ = _search(data, results, gallery, size, False, cbgm, None, False, DEFAULT_BLOCK_ITEMS)
        curve.append({"gallery_size": int(size), "search": search})
    return {
        "detection": evaluate_detection(data, gallery),
        "sweep": curve,
        "dataset": data.name,
        "det_thresh": float(det_thresh),
        "cbgm": bool(cbgm),
        "num_queries": len(data.queries),
    }

"""A gallery index over a results file: rank one query's top-k detections and mark the correct ones.

Similarity is the dot product of unit-norm features (cosine). A hit is *correct* when its box overlaps the
query person's ground-truth box in that gallery image with IoU >= ``iou_thresh`` (0.5), using the gallery
annotation identities; as in the evaluation protocol, only the best-ranked such hit per ground-truth box
counts, so a duplicate detection of a person already found is marked wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from personsearch.data.annotations import UNLABELED, PersonSearchData
from personsearch.errors import PersonSearchError


@dataclass
class Hit:
    """One ranked gallery detection."""

    rank: int  # 1-based
    image: int  # index into ``data.gallery``
    name: str  # gallery image name
    box: np.ndarray  # (4,) float32 x1 y1 x2 y2
    score: float  # detection score
    similarity: float  # dot product with the query feature
    correct: bool | None = None  # None: the query's identity is unknown

    def as_dict(self) -> dict:
        return {
            "rank": self.rank,
            "image": self.name,
            "box": [round(float(v), 1) for v in self.box],
            "score": round(self.score, 4),
            "similarity": round(self.similarity, 4),
            "correct": self.correct,
        }


def box_iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of each ``x1 y1 x2 y2`` row of ``boxes`` with one ``box`` (continuous coordinates)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    box = np.asarray(box, dtype=np.float64).reshape(4)
    w = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    h = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = w * h
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + (box[2] - box[0]) * (box[3] - box[1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class GalleryIndex:
    """Gallery detections kept by the score threshold, with their features, boxes and images."""

    data: PersonSearchData
    image: np.ndarray  # (K,) int64 index into data.gallery
    boxes: np.ndarray  # (K, 4) float32
    scores: np.ndarray  # (K,) float32
    features: np.ndarray  # (K, D) float32
    query_features: np.ndarray  # (Q, D) float32, the dataset's query order

    @classmethod
    def from_results(cls, results, data: PersonSearchData, det_thresh: float = 0.5) -> GalleryIndex:
        """Index a :class:`~personsearch.evaluation.SearchResults` (validated against ``data``)."""
        from personsearch.evaluation.results import gallery_index, validate_against

        validate_against(results, data)
        keep = np.flatnonzero(results.det_scores >= np.float32(det_thresh))
        to_data = gallery_index(results, data)
        return cls(
            data=data,
            image=to_data[results.det_image[keep]].astype(np.int64),
            boxes=results.det_boxes[keep],
            scores=results.det_scores[keep],
            features=np.ascontiguousarray(results.det_features[keep]),
            query_features=results.query_features,
        )

    @classmethod
    def load(cls, path, data: PersonSearchData, det_thresh: float = 0.5) -> GalleryIndex:
        """Read a results file (``.npz``) and index it."""
        from personsearch.evaluation import load_results

        return cls.from_results(load_results(path, data), data, det_thresh)

    def __len__(self) -> int:
        return len(self.image)

    def gallery_for_query(self, query: int, gallery_size: int | None = None, cross_camera: bool = False) -> np.ndarray:
        """Gallery image indices searched for dataset query ``query``.

        CUHK-SYSU with ``gallery_size`` N: that query's images of ``TestG{N}.mat``; otherwise (or with -1 /
        ``None``) every gallery image. PRW: every frame, without the query camera's frames when
        ``cross_camera``. The query's own image is always left out (a ``TestG`` row may list it; finding
        the query box itself is no search). ``cross_camera`` on a dataset without cameras (CUHK-SYSU) raises
        :class:`PersonSearchError`.
        """
        from personsearch.evaluation.protocols import FULL_GALLERY, protocol_for

        data = self.data
        spec = protocol_for(data)
        q = data.queries[self._check_query(query)]
        spec.check_settings(None, cross_camera)  # the camera rule only: no camera, no cross-camera search
        if spec.has_gallery_sizes and gallery_size not in (None, FULL_GALLERY):
            images = protocol_gallery(data, query, int(gallery_size)).tolist()
        else:
            images = range(len(data.gallery))
        keep = [i for i in images if not (spec.excludes_query_image and data.gallery[i].name == q.name)]
        if cross_camera:
            keep = [i for i in keep if data.gallery[i].cam_id != q.cam_id]
        return np.asarray(keep, dtype=np.int64)

    def _check_query(self, query: int) -> int:
        n = len(self.data.queries)
        if not 0 <= query < n:
            raise PersonSearchError(f"query {query} is out of range: the dataset has {n} queries (0..{n - 1})")
        return query

    def rank(self, feature: np.ndarray, top: int = 10, images: np.ndarray | None = None) -> list[Hit]:
        """The ``top`` detections most similar to ``feature``, optionally only among gallery ``images``."""
        rows = np.arange(len(self)) if images is None else np.flatnonzero(np.isin(self.image, images))
        feature = np.asarray(feature, dtype=np.float32).reshape(-1)
        if rows.size and self.features.shape[1] != feature.shape[0]:
            raise PersonSearchError(
                f"query feature has {feature.shape[0]} dimensions, the gallery {self.features.shape[1]}"
            )
        sims = self.features[rows] @ feature if rows.size else np.zeros(0, np.float32)
        order = np.argsort(-sims, kind="stable")[: max(int(top), 0)]
        return [
            Hit(
                rank=r + 1,
                image=int(self.image[rows[i]]),
                name=self.data.gallery[int(self.image[rows[i]])].name,
                box=self.boxes[rows[i]],
                score=float(self.scores[rows[i]]),
                similarity=float(sims[i]),
            )
            for r, i in enumerate(order.tolist())
        ]

    def search(
        self, query: int, top: int = 10, gallery_size: int | None = None, cross_camera: bool = False
    ) -> list[Hit]:
        """Rank dataset query ``query`` (its results-file feature) and mark the correct hits."""
        images = self.gallery_for_query(query, gallery_size, cross_camera)
        hits = self.rank(self.query_features[query], top, images)
        return mark_correct(hits, self.data, int(self.data.queries[query].pid))


def protocol_gallery(data: PersonSearchData, query: int, size: int) -> np.ndarray:
    """Distinct ``data.gallery`` indices of CUHK-SYSU query ``query``'s ``TestG{size}`` gallery."""
    from personsearch.data.cuhk_sysu import load_gallery_protocol

    protocol = load_gallery_protocol(data.root, size)
    by_name = {r.name: i for i, r in enumerate(data.gallery)}
    entries = protocol.entries[query]
    names = {protocol.gallery_names[e] for e in entries[entries >= 0].tolist()}
    return np.asarray(sorted(by_name[n] for n in names if n in by_name), dtype=np.int64)


def mark_correct(hits: list[Hit], data: PersonSearchData, pid: int | None, iou_thresh: float = 0.5) -> list[Hit]:
    """Set ``hit.correct`` (in place, rank order): the first hit overlapping each ground-truth box of
    identity ``pid`` with IoU >= ``iou_thresh`` is correct, every other hit wrong. ``pid`` None or
    unlabelled leaves ``correct`` as None."""
    if pid is None or pid == UNLABELED:
        for hit in hits:
            hit.correct = None
        return hits
    found: set[tuple[int, int]] = set()
    for hit in hits:
        record = data.gallery[hit.image]
        gt = np.flatnonzero(record.pids == pid)
        hit.correct = False
        if gt.size == 0:
            continue
        iou = box_iou(record.boxes[gt], hit.box)
        best = int(np.argmax(iou))
        key = (hit.image, int(gt[best]))
        if iou[best] >= iou_thresh and key not in found:
            found.add(key)
            hit.correct = True
    return hits


def identify_box(data: PersonSearchData, image_name: str, box: np.ndarray, iou_thresh: float = 0.5) -> int | None:
    """The identity of the annotated person at ``box`` in a test image named ``image_name`` (gallery or
    query), or None when the image is not in the test split or no labelled box overlaps enough."""
    for q in data.queries:
        if q.name == image_name and box_iou(q.box[None], box)[0] >= iou_thresh:
            return int(q.pid)
    for record in data.gallery:
        if record.name != image_name or not len(record.boxes):
            continue
        iou = box_iou(record.boxes, box)
        best = int(np.argmax(iou))
        if iou[best] >= iou_thresh and record.pids[best] != UNLABELED:
            return int(record.pids[best])
    return None

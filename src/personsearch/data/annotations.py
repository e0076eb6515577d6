"""The common annotation model shared by the CUHK-SYSU and PRW loaders.

Conventions (one for both datasets):

* boxes are ``int32`` arrays of shape ``(N, 4)`` holding ``x1, y1, x2, y2`` in original-image pixels,
  produced exactly as the community reference loaders produce them (see ``docs/datasets.md`` sections 1 and 2);
* identity labels are ``int64``; :data:`UNLABELED` (``-1``) marks a person without an identity
  (CUHK-SYSU's unlabelled boxes, PRW's ``-2``);
* CUHK-SYSU identities are 1-based positions (``Train.mat`` index + 1 for training, ``TestG50`` query
  index + 1 for the test split); PRW identities are the raw PRW ids;
* ``cam_id`` is the PRW camera (1..6); CUHK-SYSU has no camera and uses :data:`NO_CAMERA`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

UNLABELED = -1
NO_CAMERA = -1


@dataclass
class ImageRecord:
    """One scene image of a split with every annotated person in it."""

    name: str
    path: Path
    boxes: np.ndarray  # (N, 4) int32, x1 y1 x2 y2
    pids: np.ndarray  # (N,) int64, UNLABELED for unlabelled people
    cam_id: int = NO_CAMERA
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.int32).reshape(-1, 4)
        self.pids = np.asarray(self.pids, dtype=np.int64).reshape(-1)
        if len(self.boxes) != len(self.pids):
            raise ValueError(f"{self.name}: {len(self.boxes)} boxes but {len(self.pids)} identity labels")

    @property
    def labeled(self) -> np.ndarray:
        """Boolean mask of the boxes that carry an identity."""
        return self.pids != UNLABELED

    def size(self) -> tuple[int, int]:
        """``(width, height)``, read from the image header on first use and cached."""
        if self.width is None or self.height is None:
            from personsearch.data.images import read_image_size
            from personsearch.data.validation import check_boxes_fit

            width, height = read_image_size(self.path)
            check_boxes_fit(self.path, self.boxes, width, height, "annotation box")
            self.width, self.height = width, height
        return self.width, self.height


@dataclass
class QueryRecord:
    """One query: a person box in a query image."""

    name: str  # image name
    path: Path
    box: np.ndarray  # (4,) int32, x1 y1 x2 y2
    pid: int
    cam_id: int = NO_CAMERA

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.int32).reshape(4)


@dataclass
class GalleryProtocol:
    """CUHK-SYSU's per-query galleries of one ``TestG{size}.mat`` file, in compact arrays.

    ``entries[q]`` lists the gallery entries of query ``q`` in file order as indices into
    ``gallery_names`` (entries may repeat an image; see docs/datasets.md section 1; ``-1`` pads shorter rows).
    ``positive[q, k]`` is true when entry ``k`` carries a box of the query person. The boxes of the
    positive entries are stored sparsely in ``positive_boxes_xywh`` (x, y, w, h as int32, as in the file),
    in ``np.nonzero(positive)`` order; ``boxes_xywh[q, k]`` gives the dense ``(Q, N, 4)`` view (zeros for
    negatives), built on first use (large for ``TestG4000``).
    """

    size: int
    gallery_names: list[str]
    query_names: list[str]
    query_boxes_xywh: np.ndarray  # (Q, 4) int32
    entries: np.ndarray  # (Q, N) int32
    positive: np.ndarray  # (Q, N) bool
    positive_boxes_xywh: np.ndarray  # (P, 4) int32, P = positive.sum()

    @classmethod
    def from_dense(
        cls,
        size: int,
        gallery_names: list[str],
        query_names: list[str],
        query_boxes_xywh: np.ndarray,
        entries: np.ndarray,
        positive: np.ndarray,
        boxes_xywh: np.ndarray,
    ) -> GalleryProtocol:
        """Build from a dense ``(Q, N, 4)`` box array."""
        positive = np.asarray(positive, dtype=bool)
        boxes = np.asarray(boxes_xywh, dtype=np.int32)[positive]
        return cls(size, gallery_names, query_names, query_boxes_xywh, entries, positive, boxes)

    @property
    def boxes_xywh(self) -> np.ndarray:
        """Dense ``(Q, N, 4)`` int32 boxes (zeros where not positive)."""
        dense = self.__dict__.get("_dense_boxes")
        if dense is None:
            dense = np.zeros((*np.shape(self.positive), 4), dtype=np.int32)
            dense[np.asarray(self.positive, dtype=bool)] = self.positive_boxes_xywh
            self.__dict__["_dense_boxes"] = dense
        return dense

    @property
    def num_queries(self) -> int:
        return len(self.query_names)


@dataclass
class PersonSearchData:
    """A whole dataset: the three splits plus what training and evaluation need from the files."""

    name: str  # "cuhk-sysu" or "prw"
    root: Path
    train: list[ImageRecord]
    gallery: list[ImageRecord]
    queries: list[QueryRecord]
    protocol_sizes: list[int] = field(default_factory=list)  # CUHK-SYSU TestG sizes present
    dropped_boxes: int = 0  # boxes removed by the w > 0 and h > 0 filter (CUHK-SYSU's known quirk)
    invalid_boxes: int = 0  # boxes dropped as invalid (not finite, out of range, ...), named in `warnings`
    warnings: list[str] = field(default_factory=list)  # tolerated oddities found while loading

    @property
    def train_pids(self) -> np.ndarray:
        """Sorted distinct labelled identities of the training split."""
        pids = [r.pids[r.labeled] for r in self.train]
        return np.unique(np.concatenate(pids)) if pids else np.zeros(0, dtype=np.int64)

    @property
    def num_train_classes(self) -> int:
        """Number of training identities (the OIM lookup-table size)."""
        return len(self.train_pids)

    def train_class_map(self) -> dict[int, int]:
        """Map each labelled training identity to a contiguous class index ``0..K-1`` (sorted by id)."""
        return {int(pid): i for i, pid in enumerate(self.train_pids)}

    def split(self, name: str) -> list[ImageRecord]:
        """The ``train`` or ``gallery`` split by name."""
        if name == "train":
            return self.train
        if name == "gallery":
            return self.gallery
        raise ValueError(f"unknown split {name!r}; expected 'train' or 'gallery'")

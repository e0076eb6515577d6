"""The detections of one image: boxes, scores and L2-normalised embeddings (shared by the searcher and
the gallery index builder)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    """People found in one image.

    ``boxes``: float32 ``[n, 4]`` ``x1 y1 x2 y2`` in input pixels; ``scores``: float32 ``[n]``;
    ``embeddings``: float32 ``[n, D]``, each row L2-normalised.
    """

    boxes: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

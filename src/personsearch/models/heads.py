"""The two parallel RoI heads: detection (person score + box) and Re-ID (embedding), each with own res5."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .norm import batch_norm_rows

POOLINGS = ("avg", "max", "avgmax")


def _global_pool(x: Tensor, pooling: str) -> Tensor:
    if pooling == "avg":
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
    if pooling == "max":
        return F.adaptive_max_pool2d(x, 1).flatten(1)
    return F.adaptive_avg_pool2d(x, 1).flatten(1) + F.adaptive_max_pool2d(x, 1).flatten(1)


class DetectionHead(nn.Module):
    """res5 -> global average pool -> person/background logits [N, 2] and class-agnostic deltas [N, 4]."""

    def __init__(self, res5: nn.Module, in_channels: int) -> None:
        super().__init__()
        self.res5 = res5
        self.cls_score = nn.Linear(in_channels, 2)
        self.bbox_pred = nn.Linear(in_channels, 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, roi_features: Tensor) -> tuple[Tensor, Tensor]:
        x = _global_pool(self.res5(roi_features), "avg")
        # fp32 outputs: boxes decoded from half-precision deltas would lose whole pixels.
        return self.cls_score(x).float(), self.bbox_pred(x).float()


class ReIDHead(nn.Module):
    """res5 -> global pooling -> linear -> BatchNorm1d -> L2-normalised embedding [N, D] (fp32)."""

    def __init__(self, res5: nn.Module, in_channels: int, embedding_dim: int = 256, pooling: str = "avg") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.res5 = res5
        self.pooling = pooling
        self.embedding_dim = embedding_dim
        self.projection = nn.Linear(in_channels, embedding_dim)
        self.bn = nn.BatchNorm1d(embedding_dim)
        nn.init.normal_(self.projection.weight, std=0.01)
        nn.init.zeros_(self.projection.bias)

    def forward(self, roi_features: Tensor) -> Tensor:
        if roi_features.shape[0] == 0:
            return roi_features.new_zeros((0, self.embedding_dim))
        x = self.projection(_global_pool(self.res5(roi_features), self.pooling)).float()
        x = batch_norm_rows(self.bn, x, self.training)
        return F.normalize(x, dim=1)

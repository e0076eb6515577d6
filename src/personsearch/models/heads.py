"""The two parallel RoI heads: detection (person score + box) and Re-ID (embedding), each with own res5."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

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
        x = self._batch_norm(x)
        return F.normalize(x, dim=1)

    def _batch_norm(self, x: Tensor) -> Tensor:
        # Batch statistics need two rows; a single row in training falls back to the running stats.
        if self.training and x.shape[0] < 2:
            bn = self.bn
            return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return self.bn(x)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (only those requiring grad when ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

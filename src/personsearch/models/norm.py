"""BatchNorm over embedding rows that also works on a training batch of a single row."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def batch_norm_rows(bn: nn.BatchNorm1d, x: Tensor, training: bool) -> Tensor:
    """``bn(x)`` for rows ``x`` ``[N, D]``; in training (``training``: the owning module's mode) fewer than two
    rows have no batch statistics, so they are normalised with the running statistics, left unchanged."""
    if training and x.shape[0] < 2:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return bn(x)

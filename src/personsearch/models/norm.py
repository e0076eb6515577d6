"""BatchNorm helpers: normalising embedding rows (a single-row training batch included), and running a
module again without its running statistics moving."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn.functional as F
from torch import Tensor, nn


def batch_norm_rows(bn: nn.BatchNorm1d, x: Tensor, training: bool) -> Tensor:
    """``bn(x)`` for rows ``x`` ``[N, D]``; in training (``training``: the owning module's mode) fewer than two
    rows have no batch statistics, so they are normalised with the running statistics, left unchanged."""
    if training and x.shape[0] < 2:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return bn(x)


@contextmanager
def running_stats_kept(module: nn.Module) -> Iterator[None]:
    """Inside: ``module``'s BatchNorm layers normalise as usual, but they update copies of their running
    statistics, dropped on exit (a second forward pass over the same batch must not count it twice). The
    original tensors are swapped back, never written, so a graph built before stays valid."""
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v for k, v in m.named_buffers(recurse=False) if v is not None} for m in layers]
    for m, buffers in zip(layers, saved):
        for k, v in buffers.items():
            setattr(m, k, v.clone())
    try:
        yield
    finally:
        for m, buffers in zip(layers, saved):
            for k, v in buffers.items():
                setattr(m, k, v)

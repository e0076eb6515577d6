"""Learning-rate schedule: linear warm-up, then step decay at given epochs (per-iteration updates)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def lr_factor(
    iteration: int,
    iters_per_epoch: int,
    warmup_iters: int,
    warmup_factor: float,
    lr_steps: Sequence[int],
    gamma: float,
) -> float:
    """Multiplier of the base lr at a global ``iteration`` (0-based)."""
    factor = 1.0
    if warmup_iters > 0 and iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor = warmup_factor * (1 - alpha) + alpha
    epoch = iteration // max(iters_per_epoch, 1)
    return factor * gamma ** sum(1 for step in lr_steps if epoch >= step)


def build_scheduler(
    optimizer: torch.optim.Optimizer, train_cfg: dict, iters_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(train_cfg["warmup_iters"])
    if warmup < 0:
        warmup = iters_per_epoch
    steps = [int(s) for s in train_cfg["lr_steps"] or []]
    gamma = float(train_cfg["lr_gamma"])
    warmup_factor = float(train_cfg["warmup_factor"])
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it, iters_per_epoch, warmup, warmup_factor, steps, gamma)
    )

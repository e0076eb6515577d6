"""Optimisers and the learning-rate schedule from a typed config section (``train`` or ``teacher``:
:class:`~personsearch.config_types.TrainConfig` or :class:`~personsearch.config_types.TeacherConfig`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import torch

from personsearch.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw", "adam")


class OptimizerSection(Protocol):
    """What :func:`build_optimizer` reads (both ``TrainConfig`` and ``TeacherConfig`` have it)."""

    @property
    def optimizer(self) -> str: ...
    @property
    def lr(self) -> float: ...
    @property
    def momentum(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...


class ScheduleSection(Protocol):
    """What :func:`build_scheduler` reads: the warm-up length in schedule steps (iterations for ``train``'s
    ``warmup_iters``, epochs for ``teacher``'s ``warmup_epochs``), its start factor, the decay epochs and gamma."""

    @property
    def warmup_factor(self) -> float: ...
    @property
    def lr_steps(self) -> Sequence[int] | None: ...
    @property
    def lr_gamma(self) -> float: ...
    def warmup_steps(self, steps_per_epoch: int) -> int: ...


def build_optimizer(
    params: Iterable[torch.nn.Parameter], section: OptimizerSection, key: str = "train"
) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's recipe), AdamW or Adam, from ``section``'s optimizer, lr, momentum and
    weight_decay; ``key`` names the section in errors."""
    name = str(section.optimizer).lower()
    lr, decay = section.lr, section.weight_decay
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=section.momentum, weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay)
    raise ConfigError(f"{key}.optimizer={name!r}: expected one of {', '.join(OPTIMIZERS)}")


def lr_factor(
    step: int,
    steps_per_epoch: int,
    warmup_steps: int,
    warmup_factor: float,
    lr_steps: Sequence[int],
    gamma: float,
) -> float:
    """Multiplier of the base lr at a 0-based ``step``: linear warm-up from ``warmup_factor`` over
    ``warmup_steps``, times ``gamma`` for every epoch of ``lr_steps`` reached. A schedule stepped once per
    epoch is ``steps_per_epoch=1`` with the warm-up counted in epochs."""
    factor = 1.0
    if warmup_steps > 0 and step < warmup_steps:
        alpha = step / warmup_steps
        factor = warmup_factor * (1 - alpha) + alpha
    epoch = step // max(steps_per_epoch, 1)
    return factor * gamma ** sum(1 for s in lr_steps if epoch >= s)


def build_scheduler(
    optimizer: torch.optim.Optimizer, section: ScheduleSection, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of ``section``: per-iteration (``warmup_iters``; -1 = one epoch) for the student's
    ``train`` section, per-epoch (``warmup_epochs``, ``steps_per_epoch=1``) for the teacher's."""
    warmup = section.warmup_steps(steps_per_epoch)
    steps = list(section.lr_steps or [])
    gamma, start = section.lr_gamma, section.warmup_factor
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, warmup, start, steps, gamma)
    )

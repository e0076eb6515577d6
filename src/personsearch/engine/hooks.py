"""Trainer extension points, in the spirit of detectron2's hooks.

A :class:`TrainHook` is called around training and around every step. A :class:`LossContributor` is a hook
that also takes part in the loss: it may ask the model to embed extra boxes, add its own loss terms computed
from the model's :class:`~personsearch.models.TrainOutputs`, and scale the model's own losses (distillation's
lambda scales ``loss_oim``). The engine knows only these interfaces; distillation is one implementation,
built by the train command (:func:`personsearch.distill.student_trainer`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from personsearch.models import TrainOutputs


class TrainHook:
    """Called by the trainer; every method is a no-op here. ``trainer`` is the running trainer."""

    def before_train(self, trainer: Any) -> None:
        """Once, before the first step (also of a resumed run)."""

    def after_train(self, trainer: Any) -> None:
        """Once, after the last step or when training stops with an error."""

    def before_step(self, trainer: Any) -> None:
        """Before every optimisation step."""

    def after_step(self, trainer: Any, logs: Mapping[str, float]) -> None:
        """After every optimisation step, with the step's logged losses."""


class LossContributor(TrainHook):
    """A hook that takes part in the training loss (see the module docstring)."""

    #: Short name, used in messages and to tell which contributors a run has.
    name: str = "contributor"
    #: Below 1: the model also embeds the GT (and extra) boxes from its Re-ID feature map with the gradient into
    #: the backbone multiplied by this (``TrainOutputs.gt_scaled``); 0: this contributor's losses on those
    #: outputs train the Re-ID head only.
    reid_backbone_grad: float = 1.0

    def extra_boxes(self, images: list[Tensor], targets: list[dict[str, Any]]) -> list[Tensor] | None:
        """Boxes (input pixels, one tensor per image) the model should also embed this step, or None."""
        return None

    def loss_factors(self) -> Mapping[str, float]:
        """Multipliers of the model's own losses by name (e.g. ``{"loss_oim": 2.0}``)."""
        return {}

    def losses(self, images: list[Tensor], targets: list[dict[str, Any]], outputs: TrainOutputs) -> dict[str, Tensor]:
        """Extra loss terms of this step (already weighted), added to the model's."""
        return {}

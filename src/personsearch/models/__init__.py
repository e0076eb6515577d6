"""The end-to-end person search network (DKD student): backbone, RPN, detection and Re-ID heads, OIM.

Build with ``build_model(cfg, num_classes)`` (``cfg``: a typed ``config_types.ModelConfig`` or a nested dict
overriding ``DEFAULT_MODEL_CONFIG``, keys documented in ``CONFIG_DOC``; ``num_classes``: labelled training
identities, read from the data).

* ``model.train(); losses = model(images, targets)``: dict with ``loss_rpn_objectness``,
  ``loss_rpn_box``, ``loss_box_cls``, ``loss_box_reg``, ``loss_oim`` (unweighted; the trainer sums).
  ``model(images, targets, extra_boxes=..., return_outputs=True)`` -> ``(losses, outputs)``, a ``TrainOutputs``
  with the Re-ID outputs (embeddings, OIM probabilities) of GT boxes (``outputs.gt``) and extra boxes
  (``outputs.extra``), for loss contributors such as distillation.
* ``model.eval(); model(images)``: list of ``{"boxes", "scores", "embeddings"}`` in input pixels.
* ``model(images, query_boxes=boxes)`` / ``model.extract_query_features``: query embeddings.
* ``model.reid_outputs(features, boxes)``: the Re-ID head on any boxes (resized-image pixels).
"""

from .build import CONFIG_DOC, DEFAULT_MODEL_CONFIG, build_model, merge_config
from .oim import OIMLoss
from .person_search import PersonSearchModel, ReIDOutput, TrainOutputs

__all__ = [
    "CONFIG_DOC",
    "DEFAULT_MODEL_CONFIG",
    "OIMLoss",
    "PersonSearchModel",
    "ReIDOutput",
    "TrainOutputs",
    "build_model",
    "merge_config",
]

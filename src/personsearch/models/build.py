"""Build the person search model from the ``model`` section of a config: a typed
:class:`~personsearch.config_types.ModelConfig` or a plain nested dict (converted once, :func:`model_config`).

Its defaults and the help text of each key live in the config layer, :data:`personsearch.config.DEFAULT_MODEL_CONFIG`
and :data:`personsearch.config.MODEL_CONFIG_DOC` (here ``DEFAULT_MODEL_CONFIG`` and ``CONFIG_DOC``, as before).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import nn
from torchvision.models.detection.rpn import AnchorGenerator, RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import RoIAlign

from personsearch.config import DEFAULT_MODEL_CONFIG
from personsearch.config import MODEL_CONFIG_DOC as CONFIG_DOC
from personsearch.config_types import ModelConfig, RoIConfig, RPNConfig, TransformConfig
from personsearch.errors import ConfigError

from .backbone import build_resnet, split_resnet_c4
from .heads import DetectionHead, ReIDHead
from .oim import OIMLoss
from .person_search import PersonSearchModel
from .roi_heads import PersonDetectionRoIHeads
from .weights import resolve_pretrained

__all__ = ["CONFIG_DOC", "DEFAULT_MODEL_CONFIG", "ModelConfig", "build_model", "merge_config", "model_config"]


def merge_config(cfg: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Defaults overridden by ``cfg`` (two levels); unknown sections or keys raise ConfigError."""
    merged = copy.deepcopy(DEFAULT_MODEL_CONFIG)
    for section, values in (cfg or {}).items():
        if section not in merged:
            raise ConfigError(f"unknown model config section {section!r}; known: {', '.join(merged)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"model config section {section!r} must be a mapping")
        for key, value in values.items():
            if key not in merged[section]:
                raise ConfigError(f"unknown model config key {section}.{key}")
            merged[section][key] = value
    return merged


def model_config(cfg: ModelConfig | Mapping[str, Any] | None) -> ModelConfig:
    """The typed ``model`` section: ``cfg`` itself, or the defaults overridden by the dict ``cfg``
    (:func:`merge_config`: unknown sections or keys raise ConfigError; missing ones take the defaults)."""
    if isinstance(cfg, ModelConfig):
        return cfg
    return ModelConfig.from_dict(merge_config(cfg), where="model.")


def _transform(c: TransformConfig) -> GeneralizedRCNNTransform:
    return GeneralizedRCNNTransform(c.min_size, c.max_size, list(c.pixel_mean), list(c.pixel_std), c.size_divisible)


def _rpn(c: RPNConfig, in_channels: int) -> RegionProposalNetwork:
    anchors = AnchorGenerator((c.anchor_sizes,), (c.aspect_ratios,))
    head = RPNHead(in_channels, anchors.num_anchors_per_location()[0])
    return RegionProposalNetwork(
        anchors,
        head,
        c.fg_iou_thresh,
        c.bg_iou_thresh,
        c.batch_size_per_image,
        c.positive_fraction,
        {"training": c.pre_nms_top_n_train, "testing": c.pre_nms_top_n_test},
        {"training": c.post_nms_top_n_train, "testing": c.post_nms_top_n_test},
        c.nms_thresh,
    )


def _roi_align(c: RoIConfig, stride: int, output_size: int | None = None) -> RoIAlign:
    return RoIAlign(output_size or c.output_size, 1.0 / stride, c.sampling_ratio)


def _reid_branch(c: ModelConfig, parts) -> tuple[RoIAlign, ReIDHead]:
    """The Re-ID RoIAlign and head: pooled from res4 (stride 16, own res5) or res3 (stride 8, own res4 + res5)."""
    r = c.reid
    if r.feature == "res4":
        stride, layers = parts.stride, parts.res5_copy()
    elif r.feature == "res3":
        stride, layers = parts.stride // 2, nn.Sequential(copy.deepcopy(parts.trunk[-1]), *parts.res5_copy())
    else:
        raise ConfigError(f"model.reid.feature must be res4 or res3, got {r.feature!r}")
    size = r.roi_output_size or c.roi.output_size * parts.stride // stride
    head = ReIDHead(layers, parts.res5_channels, r.embedding_dim, r.pooling)
    return _roi_align(c.roi, stride, size), head


def build_model(cfg: ModelConfig | Mapping[str, Any] | None, num_classes: int) -> PersonSearchModel:
    """The person search model; ``cfg``: a :class:`~personsearch.config_types.ModelConfig` or a (partial)
    ``model`` dict over the defaults; ``num_classes`` = labelled training identities (the OIM LUT size)."""
    c = model_config(cfg)
    b = c.backbone
    state = resolve_pretrained(b.arch, b.pretrained)
    parts = split_resnet_c4(build_resnet(b.arch, b.frozen_bn), state, b.freeze_stem)
    h = c.box_head
    roi_heads = PersonDetectionRoIHeads(
        _roi_align(c.roi, parts.stride),
        DetectionHead(parts.res5_copy(), parts.res5_channels),
        h.fg_iou_thresh,
        h.bg_iou_thresh,
        h.batch_size_per_image,
        h.positive_fraction,
        h.bbox_reg_weights,
        h.score_thresh,
        h.nms_thresh,
        h.detections_per_img,
    )
    r, o = c.reid, c.oim
    reid_roi_align, reid_head = _reid_branch(c, parts)
    oim = OIMLoss(
        r.embedding_dim,
        num_classes,
        o.queue_size,
        o.scalar,
        o.momentum,
        o.lut_init,
        o.classifier_weight,
        o.memory_weight,
    )
    return PersonSearchModel(
        _transform(c.transform),
        parts.trunk,
        _rpn(c.rpn, parts.trunk_channels),
        roi_heads,
        reid_roi_align,
        reid_head,
        oim,
        reid_on_proposals=r.train_on_proposals,
        score_weighted_embeddings=r.score_weighted_embeddings,
        reid_feature=r.feature,
    )

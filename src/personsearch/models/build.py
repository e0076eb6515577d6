"""Build the person search model from a plain nested config dict."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import nn
from torchvision.models.detection.rpn import AnchorGenerator, RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import RoIAlign

from personsearch.errors import ConfigError

from .backbone import build_resnet, split_resnet_c4
from .heads import DetectionHead, ReIDHead
from .oim import OIMLoss
from .person_search import PersonSearchModel
from .roi_heads import PersonDetectionRoIHeads
from .weights import resolve_pretrained

#: Paper-style defaults (method.md, "Student"). Every value is a config key; see ``CONFIG_DOC``.
DEFAULT_MODEL_CONFIG: dict[str, dict[str, Any]] = {
    "backbone": {"arch": "resnet50", "pretrained": "auto", "frozen_bn": True, "freeze_stem": True},
    "transform": {
        "min_size": 900,
        "max_size": 1500,
        "pixel_mean": [0.485, 0.456, 0.406],
        "pixel_std": [0.229, 0.224, 0.225],
        "size_divisible": 32,
    },
    "rpn": {
        "anchor_sizes": [32, 64, 128, 256, 512],
        "aspect_ratios": [0.5, 1.0, 2.0],
        "fg_iou_thresh": 0.7,
        "bg_iou_thresh": 0.3,
        "batch_size_per_image": 256,
        "positive_fraction": 0.5,
        "pre_nms_top_n_train": 12000,
        "post_nms_top_n_train": 2000,
        "pre_nms_top_n_test": 6000,
        "post_nms_top_n_test": 300,
        "nms_thresh": 0.7,
    },
    "roi": {"output_size": 14, "sampling_ratio": 2},
    "box_head": {
        "fg_iou_thresh": 0.5,
        "bg_iou_thresh": 0.5,
        "batch_size_per_image": 128,
        "positive_fraction": 0.5,
        "bbox_reg_weights": [10.0, 10.0, 5.0, 5.0],
        "score_thresh": 0.5,
        "nms_thresh": 0.4,
        "detections_per_img": 300,
    },
    "reid": {
        "feature": "res4",
        "roi_output_size": None,
        "embedding_dim": 256,
        "pooling": "avg",
        "train_on_proposals": True,
        "score_weighted_embeddings": False,
    },
    "oim": {
        "scalar": 30.0,
        "momentum": 0.5,
        "queue_size": 5000,
        "lut_init": "zeros",
        "classifier_weight": 0.0,
        "memory_weight": 1.0,
    },
}

#: One line per key, for documentation and ``--help`` style listings.
CONFIG_DOC: dict[str, str] = {
    "backbone.arch": "resnet18 | resnet34 | resnet50 | resnet101 (C4: stride-16 trunk, layer4 per head)",
    "backbone.pretrained": "auto (cache, else warn + random init) | imagenet (cache, strict) | none | path",
    "backbone.frozen_bn": "FrozenBatchNorm2d everywhere in the ResNet (else trainable BatchNorm2d)",
    "backbone.freeze_stem": "no gradient into conv1/bn1",
    "transform.min_size": "resized short side (an int, or a list sampled at random in training)",
    "transform.max_size": "upper bound of the resized long side",
    "transform.pixel_mean": "per-channel mean subtracted from 0..1 images",
    "transform.pixel_std": "per-channel std dividing 0..1 images",
    "transform.size_divisible": "batched image padding multiple",
    "rpn.anchor_sizes": "anchor sizes in resized-image pixels (one feature level)",
    "rpn.aspect_ratios": "anchor height/width ratios",
    "rpn.fg_iou_thresh": "anchor IoU >= this: object",
    "rpn.bg_iou_thresh": "anchor IoU < this: background",
    "rpn.batch_size_per_image": "anchors sampled per image for the RPN loss",
    "rpn.positive_fraction": "fraction of positives among sampled anchors",
    "rpn.pre_nms_top_n_train": "proposals kept before NMS (training)",
    "rpn.post_nms_top_n_train": "proposals kept after NMS (training)",
    "rpn.pre_nms_top_n_test": "proposals kept before NMS (inference)",
    "rpn.post_nms_top_n_test": "proposals kept after NMS (inference)",
    "rpn.nms_thresh": "RPN NMS IoU threshold",
    "roi.output_size": "RoIAlign output size on the stride-16 map (both heads)",
    "roi.sampling_ratio": "RoIAlign sampling points per bin",
    "box_head.fg_iou_thresh": "proposal IoU >= this: person (also the Re-ID proposal threshold)",
    "box_head.bg_iou_thresh": "proposal IoU < this: background",
    "box_head.batch_size_per_image": "proposals sampled per image for the second stage",
    "box_head.positive_fraction": "fraction of positives among sampled proposals",
    "box_head.bbox_reg_weights": "BoxCoder weights (wx, wy, ww, wh)",
    "box_head.score_thresh": "inference: keep detections with person score >= this",
    "box_head.nms_thresh": "inference: NMS IoU threshold of the detections",
    "box_head.detections_per_img": "inference: at most this many detections per image",
    "reid.feature": "res4 (RoIAlign on the stride-16 trunk output, own res5) | res3 (on the stride-8 map "
    "before the trunk's last stage, own copies of res4 and res5: twice the resolution for small people)",
    "reid.roi_output_size": "Re-ID RoIAlign output size; null = roi.output_size x 16 / the feature's stride",
    "reid.embedding_dim": "Re-ID embedding size (L2-normalised)",
    "reid.pooling": "avg | max | avgmax global pooling after res5",
    "reid.train_on_proposals": "OIM also on sampled foreground proposals (labelled with their GT identity)",
    "reid.score_weighted_embeddings": "inference: gallery embedding x detection score (SeqNet-style); off",
    "oim.scalar": "OIM logit scale",
    "oim.momentum": "LUT update lut[y] = normalize(m * lut[y] + (1 - m) * f)",
    "oim.queue_size": "circular queue of unlabelled features (CUHK-SYSU 5000, PRW 500)",
    "oim.lut_init": "zeros (reference OIM) | random (random unit rows: a full-rank target from the start)",
    "oim.classifier_weight": "weight of an extra learnable cosine classifier over the labelled identities (0 = off)",
    "oim.memory_weight": "weight of the OIM memory (LUT + queue) cross-entropy; 0 = the classifier alone (the LUT is "
    "still updated for distillation's class probabilities)",
}


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


def _transform(c: dict[str, Any]) -> GeneralizedRCNNTransform:
    min_size = tuple(c["min_size"]) if isinstance(c["min_size"], list | tuple) else int(c["min_size"])
    return GeneralizedRCNNTransform(
        min_size, int(c["max_size"]), list(c["pixel_mean"]), list(c["pixel_std"]), int(c["size_divisible"])
    )


def _rpn(c: dict[str, Any], in_channels: int) -> RegionProposalNetwork:
    anchors = AnchorGenerator((tuple(c["anchor_sizes"]),), (tuple(float(r) for r in c["aspect_ratios"]),))
    head = RPNHead(in_channels, anchors.num_anchors_per_location()[0])
    return RegionProposalNetwork(
        anchors,
        head,
        c["fg_iou_thresh"],
        c["bg_iou_thresh"],
        c["batch_size_per_image"],
        c["positive_fraction"],
        {"training": c["pre_nms_top_n_train"], "testing": c["pre_nms_top_n_test"]},
        {"training": c["post_nms_top_n_train"], "testing": c["post_nms_top_n_test"]},
        c["nms_thresh"],
    )


def _roi_align(c: dict[str, Any], stride: int, output_size: int | None = None) -> RoIAlign:
    return RoIAlign(int(output_size or c["output_size"]), 1.0 / stride, int(c["sampling_ratio"]))


def _reid_branch(c: dict[str, Any], parts) -> tuple[RoIAlign, ReIDHead]:
    """The Re-ID RoIAlign and head: pooled from res4 (stride 16, own res5) or res3 (stride 8, own res4 + res5)."""
    r = c["reid"]
    if r["feature"] == "res4":
        stride, layers = parts.stride, parts.res5_copy()
    elif r["feature"] == "res3":
        stride, layers = parts.stride // 2, nn.Sequential(copy.deepcopy(parts.trunk[-1]), *parts.res5_copy())
    else:
        raise ConfigError(f"model.reid.feature must be res4 or res3, got {r['feature']!r}")
    size = r["roi_output_size"] or int(c["roi"]["output_size"]) * parts.stride // stride
    head = ReIDHead(layers, parts.res5_channels, r["embedding_dim"], r["pooling"])
    return _roi_align(c["roi"], stride, size), head


def build_model(cfg: Mapping[str, Any] | None, num_classes: int) -> PersonSearchModel:
    """The person search model; ``num_classes`` = labelled training identities (the OIM LUT size)."""
    c = merge_config(cfg)
    b = c["backbone"]
    state = resolve_pretrained(b["arch"], b["pretrained"])
    parts = split_resnet_c4(build_resnet(b["arch"], b["frozen_bn"]), state, b["freeze_stem"])
    h = c["box_head"]
    roi_heads = PersonDetectionRoIHeads(
        _roi_align(c["roi"], parts.stride),
        DetectionHead(parts.res5_copy(), parts.res5_channels),
        h["fg_iou_thresh"],
        h["bg_iou_thresh"],
        h["batch_size_per_image"],
        h["positive_fraction"],
        tuple(h["bbox_reg_weights"]),
        h["score_thresh"],
        h["nms_thresh"],
        h["detections_per_img"],
    )
    r, o = c["reid"], c["oim"]
    reid_roi_align, reid_head = _reid_branch(c, parts)
    oim = OIMLoss(
        r["embedding_dim"],
        num_classes,
        o["queue_size"],
        o["scalar"],
        o["momentum"],
        o["lut_init"],
        float(o["classifier_weight"]),
        float(o["memory_weight"]),
    )
    return PersonSearchModel(
        _transform(c["transform"]),
        parts.trunk,
        _rpn(c["rpn"], parts.trunk_channels),
        roi_heads,
        reid_roi_align,
        reid_head,
        oim,
        reid_on_proposals=bool(r["train_on_proposals"]),
        score_weighted_embeddings=bool(r["score_weighted_embeddings"]),
        reid_feature=r["feature"],
    )

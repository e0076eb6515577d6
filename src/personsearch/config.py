"""Configuration: defaults, YAML files and ``key.sub=value`` command-line overrides.

A run's configuration is a nested dict. :func:`load_config` starts from :func:`default_config`, merges a
YAML file over it, then applies overrides such as ``train.lr=0.01`` or ``model.backbone.arch=resnet18``
(values are parsed as YAML, so ``[16, 22]``, ``null`` and ``true`` work). Unknown keys are errors, so a
typo never silently does nothing, and every value is checked against :mod:`personsearch.config_schema`
(type and range: a one-line error naming the key). The merged result is saved next to every run's outputs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from personsearch.config_schema import ARCHS, validate
from personsearch.errors import ConfigError

#: Sections other than ``model`` (its defaults: :data:`DEFAULT_MODEL_CONFIG`).
BASE_DEFAULTS: dict[str, Any] = {
    "name": "run",
    "output_dir": "runs/${name}",
    "dataset": {
        "name": "cuhk-sysu",  # cuhk-sysu | prw
        "root": "data/CUHK-SYSU",
    },
    "input": {
        "hflip_prob": 0.5,  # horizontal flip probability in training
    },
    "train": {
        "epochs": 20,
        "batch_size": 5,
        "optimizer": "sgd",  # sgd (paper recipe) | adamw (faster from scratch, e.g. without ImageNet weights)
        "lr": 0.003,
        "momentum": 0.9,
        "weight_decay": 0.0005,
        "warmup_iters": -1,  # linear warm-up length in iterations; -1 = the first epoch
        "warmup_factor": 0.001,  # lr multiplier at the first iteration
        "lr_steps": [16],  # epochs at which the lr is multiplied by lr_gamma
        "lr_gamma": 0.1,
        "clip_grad_norm": 10.0,  # 0 or null disables clipping
        "seed": 0,
        "amp": "off",  # off | bf16 | fp16 (CUDA only; ignored with a warning on CPU)
        "workers": 2,
        "device": "auto",  # auto | cpu | cuda | cuda:N
        "sync_bn": True,  # multi-GPU: SyncBatchNorm for trainable BatchNorm layers (CUDA only)
        "find_unused_parameters": False,  # DDP option; set true if a configuration leaves weights unused
        "checkpoint_period": 1,  # epochs between checkpoints (the last epoch is always saved)
        "checkpoint_iters": 0,  # also save every N iterations inside an epoch (0 = never)
        "keep_checkpoints": 2,  # how many epoch checkpoints to keep besides last.pth
        "eval_period": 0,  # epochs between test-split evaluations (0 = only at the end, -1 = never)
        "max_iters_per_epoch": 0,  # cap on iterations per epoch for quick runs (0 = the whole split)
        "tensorboard": True,
        # multipliers of the model's training losses (1 = as is, 0 = off), e.g. for a Re-ID-only run
        "loss_weights": {
            "loss_rpn_objectness": 1.0,
            "loss_rpn_box": 1.0,
            "loss_box_cls": 1.0,
            "loss_box_reg": 1.0,
            "loss_oim": 1.0,
        },
    },
    "eval": {
        "gallery_size": 100,  # CUHK-SYSU gallery size for the periodic evaluation
        "det_thresh": 0.5,
        "batch_size": 1,
    },
    "distill": {  # DKD in student training (docs/dkd.md); weights multiply the terms of method.md
        "teacher": None,  # path to a teacher checkpoint enables distillation
        "lambda": 1.0,  # L = L_det + lambda * (L_reid + beta_p L_p + beta_pr L_pr + beta_tr L_tr)
        # tuned on the synthetic benchmark (README, DKD ablation): L_pr is ~100x smaller than L_tr and L_p ~10x
        # larger, so all-ones weights leave L_pr without effect; 0.25 / 30 / 1 beat all ones in 7 of 8 runs
        "beta_p": 0.25,  # probability-aware KD weight (0 disables the term)
        "beta_pr": 30.0,  # pair-wise relation-aware KD weight
        "beta_tr": 1.0,  # triplet-wise relation-aware KD weight
        "kl_direction": "student_teacher",  # KL(p^H || p^M) as printed | teacher_student: KL(p^M || p^H)
        "tr_margin": 0.3,  # m in L_tr
        "tr_exclude_same_identity": True,  # L_tr negatives skip boxes of the anchor's identity
        "tr_exclude_own_copy": True,  # L_tr negatives skip the other view (GT / perturbed) of the same box
        "include_unlabelled": False,  # B also holds unlabelled GT boxes (default: labelled only)
        "fsa": True,  # one perturbed copy per box per iteration (FSA for the student, ISA crop for the teacher)
        "relation_with_copies": True,  # L_pr and L_tr over GT boxes plus their perturbed copies
        "sia_alpha": None,  # enlargement alpha in pixels; null = the teacher's ISA alpha
        "sia_dp": None,  # allowed shift dp in teacher-input pixels; null = the teacher's ISA dp
        "cache": True,  # cache teacher outputs on unperturbed GT boxes (computed once)
        "teacher_batch": 64,  # crops per teacher forward pass
    },
    "teacher": {  # the crop-based Re-ID teacher (personsearch train-teacher; docs/dkd.md)
        "arch": "resnet50",  # resnet18 | resnet34 | resnet50 | resnet101
        "pretrained": "auto",  # as model.backbone.pretrained
        "last_stride": 1,  # stride of layer4 (1: the bag-of-tricks setting)
        "input_size": [256, 128],  # crop height, width
        "embedding_dim": None,  # null = model.reid.embedding_dim (the student's, needed by L_tr)
        "pixel_mean": [0.485, 0.456, 0.406],
        "pixel_std": [0.229, 0.224, 0.225],
        "label_smoothing": 0.1,  # identity-loss label smoothing epsilon
        "triplet_margin": 0.3,  # batch-hard triplet margin
        "id_weight": 1.0,
        "triplet_weight": 1.0,
        "p": 16,  # identities per batch (PK sampling)
        "k": 4,  # crops per identity per batch
        "epochs": 120,
        "optimizer": "adam",  # adam | sgd
        "lr": 0.00035,
        "momentum": 0.9,  # sgd only
        "weight_decay": 0.0005,
        "warmup_epochs": 10,  # linear warm-up from warmup_factor * lr
        "warmup_factor": 0.01,
        "lr_steps": [40, 70],  # epochs at which the lr is multiplied by lr_gamma
        "lr_gamma": 0.1,
        "hflip_prob": 0.5,
        "isa": True,  # image-level SIA on the training crops
        "isa_alpha": 16.0,  # enlargement alpha (image pixels)
        "isa_dp": 8.0,  # allowed shift dp (teacher-input pixels)
        "erase_prob": 0.5,  # random erasing probability
        "erase_area": [0.02, 0.4],  # erased fraction of the crop area
        "erase_ratio": 0.3,  # erased aspect ratio in [erase_ratio, 1 / erase_ratio]
        "batch_size_eval": 64,
        "eval_period": 0,  # epochs between evaluations (0 = only at the end, -1 = never)
        "max_iters_per_epoch": 0,  # cap for quick runs (0 = every PK batch of the epoch)
        "workers": 2,
        "seed": 0,
        "device": "auto",
    },
}


#: The ``model`` section: paper-style defaults (method.md, "Student"), read by :mod:`personsearch.models.build`.
#: Every value is a config key; see :data:`MODEL_CONFIG_DOC`.
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

#: One line per ``model`` key, for documentation and ``--help`` style listings.
MODEL_CONFIG_DOC: dict[str, str] = {
    "backbone.arch": f"{' | '.join(ARCHS)} (C4: stride-16 trunk, layer4 per head)",
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


def default_config() -> dict[str, Any]:
    """All defaults, the model's included."""
    cfg = copy.deepcopy(BASE_DEFAULTS)
    cfg["model"] = copy.deepcopy(DEFAULT_MODEL_CONFIG)
    return cfg


def merge(base: dict[str, Any], update: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base``; keys absent from ``base`` are errors."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        path = f"{where}{key}"
        if key not in out:
            known = ", ".join(sorted(out)) or "none"
            raise ConfigError(f"unknown config key {path!r} (known keys here: {known})")
        if isinstance(out[key], dict) and out[key] and not isinstance(value, Mapping):
            raise ConfigError(f"config key {path!r} is a section; give its sub-keys, e.g. {path}.KEY=VALUE")
        if isinstance(out[key], dict) and out[key] and isinstance(value, Mapping):
            out[key] = merge(out[key], value, where=f"{path}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}`` with the value parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: cannot parse the value ({exc})") from None
    nested: dict[str, Any] = {}
    node = nested
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Defaults, then the YAML file (if any), then the overrides, validated (a wrong type or range is a
    :class:`ConfigError` naming the key); ``${name}`` in output_dir expanded."""
    cfg = default_config()
    if path is not None:
        cfg = merge(cfg, read_yaml(path))
    for text in overrides:
        cfg = merge(cfg, parse_override(text))
    validate(cfg, default_config())  # every key's type and range (personsearch.config_schema.SCHEMA)
    cfg["output_dir"] = str(cfg["output_dir"]).replace("${name}", str(cfg["name"]))
    return cfg


def save_config(cfg: Mapping[str, Any], path: str | Path) -> Path:
    """Write the merged config as YAML (atomically)."""
    from personsearch.outputs import atomic_write

    text = yaml.safe_dump(dict(cfg), sort_keys=False)
    return atomic_write(path, lambda handle: handle.write(text.encode()), what="config file")

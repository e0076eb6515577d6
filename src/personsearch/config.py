"""Configuration: defaults, YAML files and ``key.sub=value`` command-line overrides.

A run's configuration is a nested dict. :func:`load_config` starts from :func:`default_config`, merges a
YAML file over it, then applies overrides such as ``train.lr=0.01`` or ``model.backbone.arch=resnet18``
(values are parsed as YAML, so ``[16, 22]``, ``null`` and ``true`` work). Unknown keys are errors, so a
typo never silently does nothing, and every value is checked against :mod:`personsearch.config_schema`
(type and range: a one-line error naming the key). The merged result is saved next to every run's outputs.

The defaults are the field defaults of the typed view, :class:`personsearch.config_types.RunConfig` (one frozen
dataclass per section); the library converts a merged dict once with ``RunConfig.from_dict(cfg)`` and reads
typed fields from then on.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from personsearch.config_schema import ARCHS, validate
from personsearch.config_types import RunConfig
from personsearch.errors import ConfigError

#: Every default, from the field defaults of :class:`personsearch.config_types.RunConfig` (their one source;
#: the comments next to those fields explain each key).
_DEFAULTS: dict[str, Any] = RunConfig().to_dict()

#: The ``model`` section: paper-style defaults (method.md, "Student"), read by :mod:`personsearch.models.build`
#: (:class:`~personsearch.config_types.ModelConfig`). Every value is a config key; see :data:`MODEL_CONFIG_DOC`.
DEFAULT_MODEL_CONFIG: dict[str, dict[str, Any]] = _DEFAULTS.pop("model")

#: Sections other than ``model`` (its defaults: :data:`DEFAULT_MODEL_CONFIG`).
BASE_DEFAULTS: dict[str, Any] = _DEFAULTS

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

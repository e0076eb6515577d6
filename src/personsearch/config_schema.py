"""What every configuration key accepts: one table, checked once by :func:`personsearch.config.load_config`.

Each dotted key maps to a :class:`Rule`: a type (``int``, ``number``, ``bool``, ``str``, ``list``; left out,
it is taken from the default value), an optional range, a set of choices, whether ``null`` is allowed, and
for lists the rule of each element and the length. A wrong value is a one-line :class:`ConfigError` naming
the key and what it expects, e.g. ``train.lr: expected a positive number, got 'abc'``. :data:`ORDERED`
lists pairs of keys whose values must not decrease (``bg_iou_thresh <= fg_iou_thresh``).

The choices are written out here (this module imports nothing heavy); tests check them against the code
that consumes them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from personsearch.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """What one config key accepts (see the module docstring)."""

    type: str | None = None  # int | number | bool | str | list | weights; None = the default value's type
    low: float | None = None  # value >= low (value > low with low_open)
    high: float | None = None  # value <= high (value < high with high_open)
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    nullable: bool = False  # null (None) allowed
    item: Rule | None = None  # list: the rule of each element (None: from the default's first element)
    length: int | None = None  # list: exact length
    nonempty: bool = False  # str / list: at least one character / element
    pattern: str | None = None  # str: a regular expression the whole value must match
    hint: str | None = None  # the words of the message instead of the generated ones
    or_list: bool = False  # int / number: a non-empty list of such values is accepted too


BOOL = Rule("bool")
POS_INT = Rule("int", low=1)
NONNEG_INT = Rule("int", low=0)
PERIOD = Rule("int", low=-1)  # -1 = never, 0 = only at the end, N = every N epochs
POS = Rule("number", low=0, low_open=True)
NONNEG = Rule("number", low=0)
PROB = Rule("number", low=0, high=1)
FRACTION = Rule("number", low=0, high=1, low_open=True)  # (0, 1]
FINITE = Rule("number")
TEXT = Rule("str", nonempty=True)
PATH_OR_NULL = Rule("str", nullable=True)
DEVICE = Rule("str", pattern=r"auto|cpu|cuda(:\d+)?", hint="auto, cpu, cuda or cuda:N")
PRETRAINED = Rule("weights", hint="auto, imagenet, none or a weights file path")  # or true / false
EPOCH_LIST = Rule("list", item=NONNEG_INT, nullable=True)
RGB = Rule("list", item=FINITE, length=3)
RGB_STD = Rule("list", item=POS, length=3)
SEED = Rule("int", low=0, high=2**32 - 1)
ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101")


def one_of(*choices: Any) -> Rule:
    return Rule(choices=choices)


#: Every config key, sections as ``section.key`` (``model.section.key`` for the model).
SCHEMA: dict[str, Rule] = {
    "name": TEXT,
    "output_dir": TEXT,
    "dataset.name": one_of("cuhk-sysu", "prw"),
    "dataset.root": TEXT,
    "input.hflip_prob": PROB,
    # ---- train
    "train.epochs": POS_INT,
    "train.batch_size": POS_INT,
    "train.optimizer": one_of("sgd", "adamw"),
    "train.lr": POS,
    "train.momentum": PROB,
    "train.weight_decay": NONNEG,
    "train.warmup_iters": PERIOD,
    "train.warmup_factor": FRACTION,
    "train.lr_steps": EPOCH_LIST,
    "train.lr_gamma": POS,
    "train.clip_grad_norm": replace(NONNEG, nullable=True),
    "train.seed": SEED,
    "train.amp": Rule("str", choices=("off", "bf16", "fp16"), nullable=True),
    "train.workers": NONNEG_INT,
    "train.device": DEVICE,
    "train.sync_bn": BOOL,
    "train.find_unused_parameters": BOOL,
    "train.checkpoint_period": POS_INT,
    "train.checkpoint_iters": NONNEG_INT,
    "train.keep_checkpoints": NONNEG_INT,
    "train.eval_period": PERIOD,
    "train.max_iters_per_epoch": NONNEG_INT,
    "train.tensorboard": BOOL,
    "train.loss_weights.loss_rpn_objectness": NONNEG,
    "train.loss_weights.loss_rpn_box": NONNEG,
    "train.loss_weights.loss_box_cls": NONNEG,
    "train.loss_weights.loss_box_reg": NONNEG,
    "train.loss_weights.loss_oim": NONNEG,
    # ---- eval
    "eval.gallery_size": Rule("int", low=-1, hint="-1 (the full gallery) or a positive integer"),
    "eval.det_thresh": PROB,
    "eval.batch_size": POS_INT,
    # ---- distill
    "distill.teacher": PATH_OR_NULL,
    "distill.lambda": NONNEG,
    "distill.beta_p": NONNEG,
    "distill.beta_pr": NONNEG,
    "distill.beta_tr": NONNEG,
    "distill.kl_direction": one_of("student_teacher", "teacher_student"),
    "distill.tr_margin": NONNEG,
    "distill.tr_exclude_same_identity": BOOL,
    "distill.tr_exclude_own_copy": BOOL,
    "distill.include_unlabelled": BOOL,
    "distill.fsa": BOOL,
    "distill.relation_with_copies": BOOL,
    "distill.backbone_grad": PROB,
    "distill.sia_alpha": replace(NONNEG, nullable=True),
    "distill.sia_dp": replace(NONNEG, nullable=True),
    "distill.cache": BOOL,
    "distill.teacher_batch": POS_INT,
    # ---- teacher
    "teacher.arch": one_of(*ARCHS),
    "teacher.pretrained": PRETRAINED,
    "teacher.last_stride": one_of(1, 2),
    "teacher.input_size": Rule("list", item=POS_INT, length=2),
    "teacher.embedding_dim": replace(POS_INT, nullable=True),
    "teacher.pixel_mean": RGB,
    "teacher.pixel_std": RGB_STD,
    "teacher.label_smoothing": Rule("number", low=0, high=1, high_open=True),
    "teacher.triplet_margin": NONNEG,
    "teacher.id_weight": NONNEG,
    "teacher.triplet_weight": NONNEG,
    "teacher.p": POS_INT,
    "teacher.k": POS_INT,
    "teacher.epochs": POS_INT,
    "teacher.optimizer": one_of("adam", "sgd"),
    "teacher.lr": POS,
    "teacher.momentum": PROB,
    "teacher.weight_decay": NONNEG,
    "teacher.warmup_epochs": NONNEG_INT,
    "teacher.warmup_factor": FRACTION,
    "teacher.lr_steps": EPOCH_LIST,
    "teacher.lr_gamma": POS,
    "teacher.hflip_prob": PROB,
    "teacher.isa": BOOL,
    "teacher.isa_alpha": NONNEG,
    "teacher.isa_dp": NONNEG,
    "teacher.erase_prob": PROB,
    "teacher.erase_area": Rule("list", item=FRACTION, length=2),
    "teacher.erase_ratio": FRACTION,
    "teacher.batch_size_eval": POS_INT,
    "teacher.eval_period": PERIOD,
    "teacher.max_iters_per_epoch": NONNEG_INT,
    "teacher.workers": NONNEG_INT,
    "teacher.seed": SEED,
    "teacher.device": DEVICE,
    # ---- model (defaults: personsearch.config.DEFAULT_MODEL_CONFIG)
    "model.backbone.arch": one_of(*ARCHS),
    "model.backbone.pretrained": PRETRAINED,
    "model.backbone.frozen_bn": BOOL,
    "model.backbone.freeze_stem": BOOL,
    "model.transform.min_size": Rule("int", low=1, or_list=True),
    "model.transform.max_size": POS_INT,
    "model.transform.pixel_mean": RGB,
    "model.transform.pixel_std": RGB_STD,
    "model.transform.size_divisible": POS_INT,
    "model.rpn.anchor_sizes": Rule("list", item=POS_INT, nonempty=True),
    "model.rpn.aspect_ratios": Rule("list", item=POS, nonempty=True),
    "model.rpn.fg_iou_thresh": PROB,
    "model.rpn.bg_iou_thresh": PROB,
    "model.rpn.batch_size_per_image": POS_INT,
    "model.rpn.positive_fraction": PROB,
    "model.rpn.pre_nms_top_n_train": POS_INT,
    "model.rpn.post_nms_top_n_train": POS_INT,
    "model.rpn.pre_nms_top_n_test": POS_INT,
    "model.rpn.post_nms_top_n_test": POS_INT,
    "model.rpn.nms_thresh": PROB,
    "model.roi.output_size": POS_INT,
    "model.roi.sampling_ratio": Rule("int", low=0, hint="an integer >= 0 (0 = adaptive)"),
    "model.box_head.fg_iou_thresh": PROB,
    "model.box_head.bg_iou_thresh": PROB,
    "model.box_head.batch_size_per_image": POS_INT,
    "model.box_head.positive_fraction": PROB,
    "model.box_head.bbox_reg_weights": Rule("list", item=POS, length=4),
    "model.box_head.score_thresh": PROB,
    "model.box_head.nms_thresh": PROB,
    "model.box_head.detections_per_img": POS_INT,
    "model.reid.feature": one_of("res4", "res3"),
    "model.reid.roi_output_size": replace(POS_INT, nullable=True),
    "model.reid.embedding_dim": POS_INT,
    "model.reid.pooling": one_of("avg", "max", "avgmax"),
    "model.reid.train_on_proposals": BOOL,
    "model.reid.score_weighted_embeddings": BOOL,
    "model.oim.scalar": POS,
    "model.oim.momentum": PROB,
    "model.oim.queue_size": NONNEG_INT,
    "model.oim.lut_init": one_of("zeros", "random"),
    "model.oim.classifier_weight": NONNEG,
    "model.oim.memory_weight": NONNEG,
}

#: ``(a, b)``: the value of key ``a`` must be <= the value of key ``b``.
ORDERED: tuple[tuple[str, str], ...] = (
    ("model.rpn.bg_iou_thresh", "model.rpn.fg_iou_thresh"),
    ("model.box_head.bg_iou_thresh", "model.box_head.fg_iou_thresh"),
)


# ---- checking ----------------------------------------------------------------------------------------
def flatten(cfg: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (leaves only; an empty dict is a leaf)."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{where}{key}."))
        else:
            out[f"{where}{key}"] = value
    return out


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list | tuple):
        return "list"
    return "str"


def resolve(rule: Rule, default: Any) -> Rule:
    """``rule`` with its type (and a list's element rule) filled in from the default value."""
    if rule.type is None and not rule.choices:
        rule = replace(rule, type=_type_of(default) if default is not None else "str")
    if rule.type == "list" and rule.item is None:
        first = default[0] if isinstance(default, list | tuple) and default else None
        rule = replace(rule, item=Rule(_type_of(first)) if first is not None else None)
    return rule


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _bounds(rule: Rule) -> str:
    low, high = rule.low, rule.high
    if low is not None and high is not None:
        return f" in {'(' if rule.low_open else '['}{_fmt(low)}, {_fmt(high)}{')' if rule.high_open else ']'}"
    if low is not None:
        return f" {'>' if rule.low_open else '>='} {_fmt(low)}"
    if high is not None:
        return f" {'<' if rule.high_open else '<='} {_fmt(high)}"
    return ""


def describe(rule: Rule, plural: bool = False) -> str:
    """The words of an error message: ``a positive number``, ``a list of 3 numbers in [0, 1]``..."""
    if rule.hint:
        text = rule.hint
    elif rule.choices:
        text = "one of " + ", ".join(str(c) for c in rule.choices)
    elif rule.type == "bool":
        text = "true or false"
    elif rule.type == "str":
        text = "a non-empty string" if rule.nonempty else "a string"
    elif rule.type == "list":
        count = f"{rule.length} " if rule.length else ("1 or more " if rule.nonempty else "")
        text = f"a list of {count}" + (describe(rule.item, plural=True) if rule.item else "values")
    else:
        noun = "integer" if rule.type == "int" else "number"
        positive = (rule.low == 0 and rule.low_open) or (rule.type == "int" and rule.low == 1)
        if positive and rule.high is None:
            text = f"positive {noun}s" if plural else f"a positive {noun}"
        else:
            text = (f"{noun}s" if plural else f"{'an' if noun == 'integer' else 'a'} {noun}") + _bounds(rule)
        if rule.or_list:
            text += " or a list of them"
    if rule.nullable:
        text += " or null"
    return text


class _Bad(Exception):
    """A value that does not satisfy its rule (turned into a ConfigError naming the key)."""


def _check_number(rule: Rule, value: Any) -> int | float:
    if rule.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad
    else:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise _Bad from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad
        if not math.isfinite(value):
            raise _Bad
    if rule.low is not None and (value < rule.low or (rule.low_open and value == rule.low)):
        raise _Bad
    if rule.high is not None and (value > rule.high or (rule.high_open and value == rule.high)):
        raise _Bad
    return value


def check_value(rule: Rule, value: Any) -> Any:
    """The value (normalised: numbers from strings, ``off`` from YAML's false) or :class:`_Bad`."""
    if value is None:
        if rule.nullable:
            return None
        raise _Bad
    if rule.type == "weights":
        if isinstance(value, bool) or (isinstance(value, str) and value):
            return value
        raise _Bad
    if rule.choices:
        if "off" in rule.choices and value is False:  # YAML 1.1 reads an unquoted off as false
            return "off"
        if isinstance(value, bool) or value not in rule.choices:
            raise _Bad
        return value
    if rule.type == "bool":
        if not isinstance(value, bool):
            raise _Bad
        return value
    if rule.type == "str":
        if not isinstance(value, str) or (rule.nonempty and not value):
            raise _Bad
        if rule.pattern and not re.fullmatch(rule.pattern, value):
            raise _Bad
        return value
    if rule.type == "list":
        if not isinstance(value, list | tuple):
            raise _Bad
        if (rule.length is not None and len(value) != rule.length) or (rule.nonempty and not value):
            raise _Bad
        return [check_value(rule.item, v) for v in value] if rule.item else list(value)
    if rule.or_list and isinstance(value, list | tuple):
        if not value:
            raise _Bad
        return [_check_number(rule, v) for v in value]
    return _check_number(rule, value)


def _set(cfg: dict[str, Any], key: str, value: Any) -> None:
    *sections, last = key.split(".")
    node = cfg
    for part in sections:
        node = node[part]
    node[last] = value


def validate(cfg: dict[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Check every key of ``cfg`` (a merged config) against :data:`SCHEMA`; normalise values in place.

    Keys are those of ``defaults``; a key without a rule is checked against its default's type.
    """
    flat_defaults = flatten(defaults)
    values = flatten(cfg)
    for key, value in values.items():
        rule = resolve(SCHEMA.get(key, Rule()), flat_defaults.get(key))
        try:
            normalised = check_value(rule, value)
        except _Bad:
            raise ConfigError(f"{key}: expected {describe(rule)}, got {value!r}") from None
        if normalised is not value:
            _set(cfg, key, normalised)
            values[key] = normalised
    for low, high in ORDERED:
        if low in values and high in values and values[low] > values[high]:
            raise ConfigError(f"{low}: must be <= {high} ({values[high]!r}), got {values[low]!r}")
    return cfg

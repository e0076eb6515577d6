"""The typed view of a run's configuration: one frozen dataclass per config section.

The field defaults below are THE defaults: :data:`personsearch.config.BASE_DEFAULTS`,
:data:`personsearch.config.DEFAULT_MODEL_CONFIG` and :func:`personsearch.config.default_config` are
``RunConfig().to_dict()``. A run's config travels as a plain nested dict (``load_config`` merges YAML and
``key=value`` overrides over the defaults and validates it against :mod:`personsearch.config_schema`; that
dict is what ``config.yaml`` and checkpoints hold); the library converts it once at its boundary with
:meth:`RunConfig.from_dict` (or a section's ``from_dict``) and reads typed fields from then on.

``from_dict`` expects a validated dict (it converts, it does not validate: lists become tuples, integers of
float fields become floats); a key it lacks takes its default (configs saved by older versions), a key it
does not know is ignored (the dict layer is where unknown keys are errors). ``to_dict`` goes back to the
dict (``lambda`` for :attr:`DistillConfig.lam`), in the order of the fields.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from personsearch.errors import ConfigError

Arch = Literal["resnet18", "resnet34", "resnet50", "resnet101"]  # config_schema.ARCHS
#: ``auto`` (cache, else warn + random init) | ``imagenet`` | ``none`` | a weights file path (or true / false)
Pretrained = str | bool

S = TypeVar("S", bound="Section")


def _key(f: dataclasses.Field) -> str:
    """The config key of a field (its name unless the YAML key is a Python keyword, e.g. ``lambda``)."""
    return f.metadata.get("key", f.name)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a section class (cached)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _bad(where: str, tp: Any, value: Any) -> ConfigError:
    name = getattr(tp, "__name__", str(tp))
    return ConfigError(f"{where}: expected {name}, got {value!r}")


def _convert(tp: Any, value: Any, where: str) -> Any:
    """``value`` as the field type ``tp``: nested sections, tuples from lists, floats from integers."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, Section):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return tp.from_dict(value, where=f"{where}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if isinstance(value, list | tuple):
            sequence = [a for a in options if typing.get_origin(a) is tuple]
            return _convert(sequence[0], value, where) if sequence else value
        for a in options:
            if a is bool and isinstance(value, bool):
                return value
            if a is str and isinstance(value, str):
                return value
            if a in (int, float) and isinstance(value, int | float) and not isinstance(value, bool):
                return _convert(a, value, where)
        return value
    if origin is Literal:  # the choices are config_schema's to check (and the consumer's messages)
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _bad(where, tp, value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_convert(a, v, where) for a, v in zip(args, value))
    if tp is bool:
        if not isinstance(value, bool):
            raise _bad(where, tp, value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(where, tp, value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(where, tp, value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _bad(where, tp, value)
        return value
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


class Section:
    """``from_dict`` / ``to_dict`` of the dataclasses below (see the module docstring)."""

    @classmethod
    def from_dict(cls: type[S], d: Mapping[str, Any] | None = None, where: str = "") -> S:
        """The section of a merged, validated config dict (keys missing from ``d`` take the defaults)."""
        d = d or {}
        hints = _hints(cls)
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            key = _key(f)
            if key in d:
                values[f.name] = _convert(hints[f.name], d[key], f"{where}{key}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The plain config dict of this section (lists for tuples, as ``config.yaml`` holds it)."""
        return {_key(f): _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def keys(cls, where: str = "") -> list[str]:
        """Every leaf key as ``section.key`` (the keys of :data:`personsearch.config_schema.SCHEMA`)."""
        hints = _hints(cls)
        out: list[str] = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            tp = hints[f.name]
            if isinstance(tp, type) and issubclass(tp, Section):
                out += tp.keys(f"{where}{_key(f)}.")
            else:
                out.append(f"{where}{_key(f)}")
        return out


# ---- top-level sections ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetConfig(Section):
    name: Literal["cuhk-sysu", "prw"] = "cuhk-sysu"
    root: str = "data/CUHK-SYSU"


@dataclass(frozen=True)
class InputConfig(Section):
    hflip_prob: float = 0.5  # horizontal flip probability in training


@dataclass(frozen=True)
class LossWeights(Section):
    """Multipliers of the model's training losses (1 = as is, 0 = off), e.g. for a Re-ID-only run."""

    loss_rpn_objectness: float = 1.0
    loss_rpn_box: float = 1.0
    loss_box_cls: float = 1.0
    loss_box_reg: float = 1.0
    loss_oim: float = 1.0

    def get(self, name: str, default: float = 1.0) -> float:
        """The weight of loss ``name``; ``default`` for a loss without one (a contributor's own terms)."""
        return float(getattr(self, name)) if name in _LOSS_NAMES else default


_LOSS_NAMES = frozenset(f.name for f in dataclasses.fields(LossWeights))


@dataclass(frozen=True)
class TrainConfig(Section):
    epochs: int = 20
    batch_size: int = 5
    # sgd (paper recipe) | adamw (faster from scratch, e.g. without ImageNet weights)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.003
    momentum: float = 0.9
    weight_decay: float = 0.0005
    warmup_iters: int = -1  # linear warm-up length in iterations; -1 = the first epoch
    warmup_factor: float = 0.001  # lr multiplier at the first iteration
    lr_steps: tuple[int, ...] | None = (16,)  # epochs at which the lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    clip_grad_norm: float | None = 10.0  # 0 or null disables clipping
    seed: int = 0
    amp: Literal["off", "bf16", "fp16"] | None = "off"  # off | bf16 | fp16 (CUDA only; ignored with a warning on CPU)
    workers: int = 2
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    sync_bn: bool = True  # multi-GPU: SyncBatchNorm for trainable BatchNorm layers (CUDA only)
    find_unused_parameters: bool = False  # DDP option; set true if a configuration leaves weights unused
    checkpoint_period: int = 1  # epochs between checkpoints (the last epoch is always saved)
    checkpoint_iters: int = 0  # also save every N iterations inside an epoch (0 = never)
    keep_checkpoints: int = 2  # how many epoch checkpoints to keep besides last.pth
    eval_period: int = 0  # epochs between test-split evaluations (0 = only at the end, -1 = never)
    max_iters_per_epoch: int = 0  # cap on iterations per epoch for quick runs (0 = the whole split)
    tensorboard: bool = True
    # multipliers of the model's training losses (1 = as is, 0 = off), e.g. for a Re-ID-only run
    loss_weights: LossWeights = field(default_factory=LossWeights)

    def warmup_steps(self, steps_per_epoch: int) -> int:
        """The schedule's warm-up in iterations (-1: one epoch)."""
        return steps_per_epoch if self.warmup_iters < 0 else self.warmup_iters


@dataclass(frozen=True)
class EvalConfig(Section):
    gallery_size: int = 100  # CUHK-SYSU gallery size for the periodic evaluation
    det_thresh: float = 0.5
    batch_size: int = 1


@dataclass(frozen=True)
class DistillConfig(Section):
    """DKD in student training (docs/dkd.md); weights multiply the terms of method.md."""

    teacher: str | None = None  # path to a teacher checkpoint enables distillation
    # L = L_det + lambda * (L_reid + beta_p L_p + beta_pr L_pr + beta_tr L_tr); the YAML key is ``lambda``
    lam: float = field(default=1.0, metadata={"key": "lambda"})
    # tuned on the synthetic benchmark (README, DKD ablation): L_pr is ~100x smaller than L_tr and L_p ~10x
    # larger, so all-ones weights leave L_pr without effect; 0.25 / 30 / 1 beat all ones in 7 of 8 runs
    beta_p: float = 0.25  # probability-aware KD weight (0 disables the term)
    beta_pr: float = 30.0  # pair-wise relation-aware KD weight
    beta_tr: float = 1.0  # triplet-wise relation-aware KD weight
    # KL(p^H || p^M) as printed | teacher_student: KL(p^M || p^H)
    kl_direction: Literal["student_teacher", "teacher_student"] = "student_teacher"
    tr_margin: float = 0.3  # m in L_tr
    tr_exclude_same_identity: bool = True  # L_tr negatives skip boxes of the anchor's identity
    tr_exclude_own_copy: bool = True  # L_tr negatives skip the other view (GT / perturbed) of the same box
    include_unlabelled: bool = False  # B also holds unlabelled GT boxes (default: labelled only)
    fsa: bool = True  # one perturbed copy per box per iteration (FSA for the student, ISA crop for the teacher)
    relation_with_copies: bool = True  # L_pr and L_tr over GT boxes plus their perturbed copies
    # the share of the KD terms' gradient that reaches the backbone the detector shares (their gradient through
    # the Re-ID feature map is multiplied by it): 1 all; 0 none, the KD terms train the Re-ID head only
    # (L_reid still trains the backbone)
    backbone_grad: float = 1.0
    sia_alpha: float | None = None  # enlargement alpha in pixels; null = the teacher's ISA alpha
    sia_dp: float | None = None  # allowed shift dp in teacher-input pixels; null = the teacher's ISA dp
    cache: bool = True  # cache teacher outputs on unperturbed GT boxes (computed once)
    teacher_batch: int = 64  # crops per teacher forward pass


@dataclass(frozen=True)
class TeacherConfig(Section):
    """The crop-based Re-ID teacher (personsearch train-teacher; docs/dkd.md)."""

    arch: Arch = "resnet50"  # resnet18 | resnet34 | resnet50 | resnet101
    pretrained: Pretrained = "auto"  # as model.backbone.pretrained
    last_stride: Literal[1, 2] = 1  # stride of layer4 (1: the bag-of-tricks setting)
    input_size: tuple[int, int] = (256, 128)  # crop height, width
    embedding_dim: int | None = None  # null = model.reid.embedding_dim (the student's, needed by L_tr)
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    label_smoothing: float = 0.1  # identity-loss label smoothing epsilon
    triplet_margin: float = 0.3  # batch-hard triplet margin
    id_weight: float = 1.0
    triplet_weight: float = 1.0
    p: int = 16  # identities per batch (PK sampling)
    k: int = 4  # crops per identity per batch
    epochs: int = 120
    optimizer: Literal["adam", "sgd"] = "adam"  # adam | sgd
    lr: float = 0.00035
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0005
    warmup_epochs: int = 10  # linear warm-up from warmup_factor * lr
    warmup_factor: float = 0.01
    lr_steps: tuple[int, ...] | None = (40, 70)  # epochs at which the lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    hflip_prob: float = 0.5
    isa: bool = True  # image-level SIA on the training crops
    isa_alpha: float = 16.0  # enlargement alpha (image pixels)
    isa_dp: float = 8.0  # allowed shift dp (teacher-input pixels)
    erase_prob: float = 0.5  # random erasing probability
    erase_area: tuple[float, float] = (0.02, 0.4)  # erased fraction of the crop area
    erase_ratio: float = 0.3  # erased aspect ratio in [erase_ratio, 1 / erase_ratio]
    batch_size_eval: int = 64
    eval_period: int = 0  # epochs between evaluations (0 = only at the end, -1 = never)
    max_iters_per_epoch: int = 0  # cap for quick runs (0 = every PK batch of the epoch)
    workers: int = 2
    seed: int = 0
    device: str = "auto"

    def warmup_steps(self, steps_per_epoch: int) -> int:
        """The schedule's warm-up, in epochs (the teacher's schedule is stepped once per epoch)."""
        return self.warmup_epochs


# ---- the model section (method.md, "Student"; help texts: personsearch.config.MODEL_CONFIG_DOC) ------
@dataclass(frozen=True)
class BackboneConfig(Section):
    arch: Arch = "resnet50"
    pretrained: Pretrained = "auto"
    frozen_bn: bool = True
    freeze_stem: bool = True


@dataclass(frozen=True)
class TransformConfig(Section):
    min_size: int | tuple[int, ...] = 900  # an int, or a list sampled at random in training
    max_size: int = 1500
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    size_divisible: int = 32


@dataclass(frozen=True)
class RPNConfig(Section):
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    fg_iou_thresh: float = 0.7
    bg_iou_thresh: float = 0.3
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5
    pre_nms_top_n_train: int = 12000
    post_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 6000
    post_nms_top_n_test: int = 300
    nms_thresh: float = 0.7


@dataclass(frozen=True)
class RoIConfig(Section):
    output_size: int = 14
    sampling_ratio: int = 2


@dataclass(frozen=True)
class BoxHeadConfig(Section):
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.5
    batch_size_per_image: int = 128
    positive_fraction: float = 0.5
    bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    score_thresh: float = 0.5
    nms_thresh: float = 0.4
    detections_per_img: int = 300


@dataclass(frozen=True)
class ReIDConfig(Section):
    feature: Literal["res4", "res3"] = "res4"
    roi_output_size: int | None = None  # null = roi.output_size x 16 / the feature's stride
    embedding_dim: int = 256
    pooling: Literal["avg", "max", "avgmax"] = "avg"
    train_on_proposals: bool = True
    score_weighted_embeddings: bool = False


@dataclass(frozen=True)
class OIMConfig(Section):
    scalar: float = 30.0
    momentum: float = 0.5
    queue_size: int = 5000
    lut_init: Literal["zeros", "random"] = "zeros"
    classifier_weight: float = 0.0
    memory_weight: float = 1.0


@dataclass(frozen=True)
class ModelConfig(Section):
    """The ``model`` section, read by :func:`personsearch.models.build.build_model`."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi: RoIConfig = field(default_factory=RoIConfig)
    box_head: BoxHeadConfig = field(default_factory=BoxHeadConfig)
    reid: ReIDConfig = field(default_factory=ReIDConfig)
    oim: OIMConfig = field(default_factory=OIMConfig)


# ---- the whole run ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunConfig(Section):
    """A whole run's configuration (the sections in the order ``config.yaml`` lists them)."""

    name: str = "run"
    output_dir: str = "runs/${name}"  # ${name} is expanded by load_config
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    input: InputConfig = field(default_factory=InputConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    model: ModelConfig = field(default_factory=ModelConfig)


def as_run_config(cfg: RunConfig | Mapping[str, Any]) -> RunConfig:
    """``cfg`` itself when typed already, else :meth:`RunConfig.from_dict` of the dict."""
    return cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)

"""The typed config view (personsearch.config_types): one key set with the schema, the defaults' one source,
the dict round trip, partial (older) saved configs, and the typed sections in the optimiser and the model."""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest
import torch

from personsearch.config import BASE_DEFAULTS, DEFAULT_MODEL_CONFIG, default_config, load_config
from personsearch.config_schema import SCHEMA, flatten
from personsearch.config_types import (
    DistillConfig,
    LossWeights,
    ModelConfig,
    RunConfig,
    Section,
    TeacherConfig,
    TrainConfig,
    as_run_config,
)
from personsearch.engine.optim import build_optimizer, build_scheduler
from personsearch.errors import ConfigError


def _leaf_types(cls: type[Section], where: str = "") -> dict[str, typing.Any]:
    out: dict[str, typing.Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key, tp = f.metadata.get("key", f.name), hints[f.name]
        if isinstance(tp, type) and issubclass(tp, Section):
            out.update(_leaf_types(tp, f"{where}{key}."))
        else:
            out[f"{where}{key}"] = tp
    return out


def test_schema_keys_are_the_dataclass_fields() -> None:
    assert set(SCHEMA) == set(RunConfig.keys())
    assert len(RunConfig.keys()) == len(set(RunConfig.keys()))
    assert set(SCHEMA) == set(flatten(default_config()))


def test_choices_and_nulls_agree_with_the_schema() -> None:
    """A Literal field's values are its rule's choices; a field takes None exactly where its rule is nullable."""
    for key, tp in _leaf_types(RunConfig).items():
        rule, args = SCHEMA[key], typing.get_args(tp)
        is_union = typing.get_origin(tp) in (typing.Union, types.UnionType)
        assert rule.nullable == (is_union and type(None) in args), key
        literal = next((a for a in (args if is_union else (tp,)) if typing.get_origin(a) is typing.Literal), None)
        if rule.choices:
            assert literal is not None and set(typing.get_args(literal)) == set(rule.choices), key


def test_defaults_come_from_the_dataclasses() -> None:
    defaults = RunConfig().to_dict()
    assert defaults == default_config()
    assert list(defaults) == ["name", "output_dir", "dataset", "input", "train", "eval", "distill", "teacher", "model"]
    assert defaults["model"] == DEFAULT_MODEL_CONFIG and ModelConfig().to_dict() == DEFAULT_MODEL_CONFIG
    assert {k: v for k, v in defaults.items() if k != "model"} == BASE_DEFAULTS
    assert BASE_DEFAULTS["distill"]["lambda"] == 1.0 and BASE_DEFAULTS["distill"]["beta_pr"] == 30.0
    assert DistillConfig().lam == 1.0 and DistillConfig().beta_pr == 30.0


def test_round_trip_and_types() -> None:
    cfg = load_config(
        None,
        ["train.lr=1", "train.lr_steps=[3, 5]", "train.clip_grad_norm=null", "distill.lambda=2",
         "model.transform.min_size=[128, 160]", "teacher.input_size=[64, 32]", "train.loss_weights.loss_oim=0"],
    )  # fmt: skip
    config = RunConfig.from_dict(cfg)
    assert config.to_dict() == cfg
    assert RunConfig.from_dict(config.to_dict()) == config
    assert isinstance(config.train.lr, float) and config.train.lr == 1.0
    assert config.train.lr_steps == (3, 5) and config.train.clip_grad_norm is None
    assert config.distill.lam == 2.0 and config.model.transform.min_size == (128, 160)
    assert config.teacher.input_size == (64, 32) and config.model.transform.pixel_mean == (0.485, 0.456, 0.406)
    assert config.train.loss_weights.loss_oim == 0.0 and config.train.loss_weights.get("loss_kd_pr") == 1.0
    assert config.output_dir == "runs/run"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.lr = 0.1  # type: ignore[misc]
    assert as_run_config(config) is config and as_run_config(cfg) == config


def test_partial_saved_config_takes_the_defaults() -> None:
    """Configs saved by older versions may lack newer keys (or whole sections); unknown keys are ignored."""
    config = RunConfig.from_dict({"train": {"lr": 0.01}, "model": {"reid": {"embedding_dim": 64}}, "gone": 1})
    assert config.train.lr == 0.01 and config.train.epochs == TrainConfig().epochs
    assert config.train.loss_weights == LossWeights() and config.distill == DistillConfig()
    assert config.model.reid.embedding_dim == 64 and config.model.reid.pooling == "avg"
    with pytest.raises(ConfigError, match=r"^train\.epochs: expected int, got 'x'$"):
        RunConfig.from_dict({"train": {"epochs": "x"}})


def test_optimiser_and_schedule_from_typed_sections() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    sgd = build_optimizer([param], TrainConfig(lr=0.5, momentum=0.8, weight_decay=0.0))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.8
    assert isinstance(build_optimizer([param], TeacherConfig(), "teacher"), torch.optim.Adam)
    # train: warm-up in iterations, -1 = one epoch (here 4 iterations)
    scheduler = build_scheduler(sgd, TrainConfig(warmup_iters=-1, warmup_factor=0.5, lr_steps=None), 4)
    lrs = []
    for _ in range(5):
        lrs.append(round(sgd.param_groups[0]["lr"], 4))
        sgd.step()
        scheduler.step()
    assert lrs == [0.25, 0.3125, 0.375, 0.4375, 0.5]


def test_build_model_takes_the_typed_section() -> None:
    from personsearch.models import build_model

    small = {"backbone": {"arch": "resnet18", "pretrained": "none"}, "reid": {"embedding_dim": 32}}
    torch.manual_seed(0)
    from_dict = build_model(small, num_classes=3)
    torch.manual_seed(0)
    typed = build_model(RunConfig.from_dict({"model": small}).model, num_classes=3)
    a, b = from_dict.state_dict(), typed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert typed.oim.lut.shape == (3, 32)

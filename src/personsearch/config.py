"""Configuration: defaults, YAML files and ``key.sub=value`` command-line overrides.

A run's configuration is a nested dict. :func:`load_config` starts from :func:`default_config`, merges a
YAML file over it, then applies overrides such as ``train.lr=0.01`` or ``model.backbone.arch=resnet18``
(values are parsed as YAML, so ``[16, 22]``, ``null`` and ``true`` work). Unknown keys are errors, so a
typo never silently does nothing. The merged result is saved next to every run's outputs.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from personsearch.errors import ConfigError

#: Sections other than ``model`` (whose defaults live in :mod:`personsearch.models.build`).
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
        "checkpoint_period": 1,  # epochs between checkpoints (the last epoch is always saved)
        "checkpoint_iters": 0,  # also save every N iterations inside an epoch (0 = never)
        "keep_checkpoints": 2,  # how many epoch checkpoints to keep besides last.pth
        "eval_period": 0,  # epochs between test-split evaluations (0 = only at the end, -1 = never)
        "max_iters_per_epoch": 0,  # cap on iterations per epoch for quick runs (0 = the whole split)
        "tensorboard": True,
    },
    "eval": {
        "gallery_size": 100,  # CUHK-SYSU gallery size for the periodic evaluation
        "det_thresh": 0.5,
        "batch_size": 1,
    },
    "distill": {
        "teacher": None,  # path to a teacher checkpoint enables distillation
    },
}


def default_config() -> dict[str, Any]:
    """All defaults, the model's included."""
    from personsearch.models.build import DEFAULT_MODEL_CONFIG

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
    """Defaults, then the YAML file (if any), then the overrides; ``${name}`` in output_dir expanded."""
    cfg = default_config()
    if path is not None:
        cfg = merge(cfg, read_yaml(path))
    for text in overrides:
        cfg = merge(cfg, parse_override(text))
    cfg["output_dir"] = str(cfg["output_dir"]).replace("${name}", str(cfg["name"]))
    return cfg


def save_config(cfg: Mapping[str, Any], path: str | Path) -> Path:
    """Write the merged config as YAML (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(dict(cfg), handle, sort_keys=False)
    os.replace(tmp, path)
    return path

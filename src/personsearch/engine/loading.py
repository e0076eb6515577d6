"""Trained weights into models: a checkpoint that does not fit gives one line naming the file and what differs.

Before ``load_state_dict`` the checkpoint's weights and the freshly built model are both summarised (backbone,
embedding size, identities, OIM queue for the person search model; backbone, embedding size, identities for
the Re-ID teacher), so the usual mistakes read "checkpoint X was trained with embedding size 128, the config
saved in it has 256"; any other difference names the first parameter that does not fit.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from personsearch.errors import PersonSearchError

#: (summary field, how a value reads, the config key that sets it).
Field = tuple[str, str, str]
STUDENT_FIELDS: tuple[Field, ...] = (
    ("arch", "backbone {}", "model.backbone.arch"),
    ("embedding_dim", "embedding size {}", "model.reid.embedding_dim"),
    ("num_classes", "{} identities", "num_classes"),
    ("queue_size", "OIM queue size {}", "model.oim.queue_size"),
)
TEACHER_FIELDS: tuple[Field, ...] = (
    ("arch", "backbone {}", "teacher.arch"),
    ("embedding_dim", "embedding size {}", "teacher.embedding_dim"),
    ("num_classes", "{} identities", "num_classes"),
)


def _resnet(weights: Mapping[str, Any], prefix: str, layer3: str) -> str | None:
    """The ResNet depth of a trunk whose modules are named ``{prefix}...``, ``layer3`` its layer3 prefix (the
    names of :data:`personsearch.models.backbone.RESNETS`)."""
    from personsearch.models.backbone import arch_of_blocks

    blocks = {m.group(1) for k in weights if (m := re.match(re.escape(layer3) + r"(\d+)\.", k))}
    if not blocks:
        return None
    bottleneck = any(k.startswith(prefix) and ".conv3." in k for k in weights)
    return arch_of_blocks(bottleneck, len(blocks)) or f"a {'bottleneck' if bottleneck else 'basic-block'} ResNet"


def _rows(weights: Mapping[str, Any], key: str) -> int | None:
    value = weights.get(key)
    return int(value.shape[0]) if torch.is_tensor(value) and value.dim() >= 1 else None


def describe_student(weights: Mapping[str, Any]) -> dict[str, Any]:
    """Backbone, embedding size, identities and OIM queue length of person search model weights."""
    return {
        "arch": _resnet(weights, "backbone.", "backbone.6."),
        "embedding_dim": _rows(weights, "reid_head.projection.weight"),
        "num_classes": _rows(weights, "oim.lut"),
        "queue_size": _rows(weights, "oim.cq"),
    }


def describe_teacher(weights: Mapping[str, Any]) -> dict[str, Any]:
    """Backbone, embedding size and identities of Re-ID teacher weights."""
    return {
        "arch": _resnet(weights, "body.", "body.6."),
        "embedding_dim": _rows(weights, "projection.weight"),
        "num_classes": _rows(weights, "classifier.weight"),
    }


def _first_misfit(expected: Mapping[str, torch.Tensor], weights: Mapping[str, Any]) -> str | None:
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    for key, value in expected.items():
        if key in weights and tuple(weights[key].shape) != tuple(value.shape):
            return f"{key} has shape {list(weights[key].shape)} in the checkpoint, {list(value.shape)} in the model"
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return f"it lacks {missing[0]}{more}"
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        return f"it holds {unexpected[0]}{more}, which the model has no place for"
    return None


def load_weights(
    module: nn.Module,
    weights: Mapping[str, Any],
    path: str | Path,
    against: str = "the config saved in it",
    describe: Callable[[Mapping[str, Any]], dict[str, Any]] = describe_student,
    fields: tuple[Field, ...] = STUDENT_FIELDS,
) -> None:
    """``module.load_state_dict(weights)``, with a one-line :class:`PersonSearchError` naming ``path`` and the
    first difference when the weights do not fit (``against`` names where the model's settings came from)."""
    expected = module.state_dict()
    theirs, ours = describe(weights), describe(expected)
    for field, text, key in fields:
        a, b = theirs.get(field), ours.get(field)
        if a is not None and b is not None and a != b:
            raise PersonSearchError(
                f"checkpoint {path} was trained with {text.format(a)}, {against} has {text.format(b)} ({key})"
            )
    misfit = _first_misfit(expected, weights)
    if misfit:
        raise PersonSearchError(f"checkpoint {path} does not fit the model {against} describes: {misfit}")
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:  # anything the checks above missed
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise PersonSearchError(f"checkpoint {path} does not fit the model {against} describes: {detail}") from None


def check_identities(path: str | Path, ckpt: Mapping[str, Any], class_map: Mapping[int, int], root: Any) -> None:
    """Resuming needs the identity set the run was trained on (the OIM table has one row per identity)."""
    saved, have = int(ckpt["num_classes"]), len(class_map)
    if saved != have:
        raise PersonSearchError(
            f"checkpoint {path} was trained with {saved} identities, the training split of dataset.root={root} "
            f"has {have}; resume with the dataset it was trained on"
        )
    saved_map = ckpt.get("class_map")
    if isinstance(saved_map, Mapping) and dict(saved_map) != dict(class_map):
        raise PersonSearchError(
            f"checkpoint {path} was trained on another identity set than the training split of "
            f"dataset.root={root} ({have} identities each); resume with the dataset it was trained on"
        )


def load_trained_model(checkpoint: str | Path, device_name: str = "auto"):
    """Model (eval mode, on the device), config and device from a ``train`` checkpoint (CPU-only hosts too)."""
    from personsearch.engine.checkpoint import load_checkpoint
    from personsearch.engine.devices import resolve_device
    from personsearch.models.build import build_model

    state = load_checkpoint(checkpoint, kind="model")
    cfg: dict[str, Any] = state["config"]
    device = resolve_device(device_name)
    try:
        model_cfg = copy.deepcopy(cfg["model"])
        model_cfg.setdefault("backbone", {})["pretrained"] = "none"  # the checkpoint holds every weight
        model = build_model(model_cfg, num_classes=int(state["num_classes"]))
    except PersonSearchError as exc:
        raise PersonSearchError(f"checkpoint {checkpoint}: the config saved in it: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PersonSearchError(
            f"checkpoint {checkpoint}: the config saved in it does not build a model ({exc.__class__.__name__}: {exc})"
        ) from None
    load_weights(model, state["model"], checkpoint)
    return model.to(device).eval(), cfg, device

"""The crop-based Re-ID teacher: ResNet (last stride 1) -> GAP -> projection -> BN-neck -> classifier.

Outputs for a batch of crops (``[N, 3, H, W]`` in ``0..1``):

* ``features``: the projected, pre-BN feature (``[N, D]``; the batch-hard triplet loss uses it);
* ``neck``: the BN-neck output (``[N, D]``; the classifier and the embedding use it);
* ``logits``: identity logits over the student's identity set, in the student's class-map order;
* ``embeddings`` ``f^M = neck / ||neck||`` and ``probabilities`` ``p^M = softmax(logits)``.

``D`` equals the student's embedding size so ``L_tr`` can compare ``f^H`` with ``f^M``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet

from personsearch.errors import PersonSearchError
from personsearch.models.backbone import SUPPORTED_ARCHS, build_resnet, load_pretrained
from personsearch.models.norm import batch_norm_rows

M = TypeVar("M", bound=nn.Module)


@dataclass
class TeacherSpec:
    """Everything needed to rebuild a teacher network (stored in its checkpoint)."""

    arch: str
    num_classes: int
    embedding_dim: int
    last_stride: int = 1
    input_size: tuple[int, int] = (256, 128)
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    isa_alpha: float = 16.0
    isa_dp: float = 8.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("input_size", "pixel_mean", "pixel_std"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TeacherSpec:
        d = dict(d)
        for key in ("input_size", "pixel_mean", "pixel_std"):
            d[key] = tuple(d[key])
        return cls(**d)


@dataclass
class TeacherOutput:
    """See the module docstring."""

    features: Tensor
    neck: Tensor
    logits: Tensor

    @property
    def embeddings(self) -> Tensor:
        return F.normalize(self.neck, dim=1)

    @property
    def probabilities(self) -> Tensor:
        return F.softmax(self.logits, dim=1)


def _set_last_stride(layer4: nn.Sequential, stride: int) -> None:
    """Set the stride of layer4's first block (conv and shortcut) to ``stride``."""
    block: Any = layer4[0]
    conv = block.conv2 if hasattr(block, "conv3") else block.conv1
    conv.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


def _channels(net: resnet.ResNet) -> int:
    return int(net.fc.in_features)


class TeacherNet(nn.Module):
    """See the module docstring."""

    pixel_mean: Tensor  # buffers (registered in __init__)
    pixel_std: Tensor

    def __init__(self, spec: TeacherSpec, backbone_state: dict[str, Tensor] | None = None) -> None:
        super().__init__()
        if spec.arch not in SUPPORTED_ARCHS:
            raise PersonSearchError(
                f"unknown teacher backbone {spec.arch!r}; choose one of {', '.join(SUPPORTED_ARCHS)}"
            )
        self.spec = spec
        net = build_resnet(spec.arch, frozen_bn=False)  # trainable BatchNorm2d
        if backbone_state is not None:
            missing = load_pretrained(net, backbone_state)
            if missing:
                raise PersonSearchError(f"pretrained weights do not fit {spec.arch}: e.g. missing {missing[0]}")
        _set_last_stride(net.layer4, int(spec.last_stride))
        self.body = nn.Sequential(
            net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
        )
        self.projection = nn.Linear(_channels(net), spec.embedding_dim, bias=False)
        self.neck = nn.BatchNorm1d(spec.embedding_dim)
        self.neck.bias.requires_grad_(False)  # BN-neck: no shift, as in the bag-of-tricks baseline
        self.classifier = nn.Linear(spec.embedding_dim, spec.num_classes, bias=False)
        nn.init.kaiming_normal_(self.projection.weight, mode="fan_out")
        nn.init.normal_(self.classifier.weight, std=0.001)
        self.register_buffer("pixel_mean", torch.tensor(spec.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(spec.pixel_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, crops: Tensor) -> TeacherOutput:
        """Crops ``[N, 3, H, W]`` in ``0..1`` -> :class:`TeacherOutput` (fp32)."""
        x = (crops - self.pixel_mean) / self.pixel_std
        pooled = F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)
        features = self.projection(pooled).float()
        neck = self._neck(features)
        return TeacherOutput(features, neck, self.classifier(neck))

    def head(self, neck: Tensor) -> TeacherOutput:
        """Outputs recomputed from cached BN-neck features (``features`` is the neck itself here)."""
        return TeacherOutput(neck, neck, self.classifier(neck))

    def _neck(self, x: Tensor) -> Tensor:
        return batch_norm_rows(self.neck, x, self.training)  # one row in training: the running statistics


def build_teacher(spec: TeacherSpec, pretrained: str | bool | None = "none") -> TeacherNet:
    """A teacher with ImageNet weights resolved like the student's backbone (``models.weights``)."""
    from personsearch.models.weights import resolve_pretrained

    return TeacherNet(spec, resolve_pretrained(spec.arch, pretrained))


def teacher_checkpoint_state(net: TeacherNet, class_map: dict[int, int], extra: dict[str, Any]) -> dict[str, Any]:
    """What a teacher checkpoint holds: the weights, the spec and the identity order."""
    return {"model": net.state_dict(), "teacher": net.spec.to_dict(), "class_map": dict(class_map), **extra}


def load_teacher(path: str | Path, device: torch.device | str = "cpu") -> tuple[TeacherNet, dict[str, Any]]:
    """A frozen teacher (eval mode, no gradients) and its checkpoint dict (without the weights).

    The file is loaded without running code in it (:func:`~personsearch.engine.checkpoint.load_checkpoint`);
    a person search model instead of a teacher, or weights that do not fit the spec saved with them, are
    one-line errors naming the file."""
    from personsearch.engine.checkpoint import load_checkpoint
    from personsearch.engine.loading import TEACHER_FIELDS, describe_teacher, load_weights

    state = load_checkpoint(path, kind="teacher")
    try:
        spec = TeacherSpec.from_dict(state["teacher"])
        net = TeacherNet(spec)
    except PersonSearchError as exc:
        raise PersonSearchError(f"checkpoint {path}: {exc}") from None
    except (TypeError, ValueError, KeyError) as exc:
        raise PersonSearchError(
            f"checkpoint {path}: its teacher spec does not build a teacher ({exc.__class__.__name__}: {exc})"
        ) from None
    load_weights(net, state["model"], path, "the teacher spec saved in it", describe_teacher, TEACHER_FIELDS)
    freeze(net)
    info = {k: v for k, v in state.items() if k != "model"}
    return net.to(device), info


def freeze(net: M) -> M:
    """Eval mode and no gradients for every parameter."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net

"""ResNet split C4-style: a stride-16 trunk (conv1..layer3) and layer4 (res5) used as a RoI head."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision.models import WeightsEnum, resnet
from torchvision.ops.misc import FrozenBatchNorm2d

from personsearch.errors import PersonSearchError


@dataclass(frozen=True)
class ResNetArch:
    """One supported ResNet: its torchvision constructor, its ImageNet weights (``.url``: where torchvision
    downloads them) and what tells its trunk apart in a state dict (bottleneck blocks, blocks in layer3)."""

    build: Callable[..., resnet.ResNet]
    imagenet: WeightsEnum
    bottleneck: bool
    layer3_blocks: int


#: The one table of ResNets (the student's backbone, the Re-ID teacher, the weights and checkpoint checks).
RESNETS: dict[str, ResNetArch] = {
    "resnet18": ResNetArch(resnet.resnet18, resnet.ResNet18_Weights.IMAGENET1K_V1, False, 2),
    "resnet34": ResNetArch(resnet.resnet34, resnet.ResNet34_Weights.IMAGENET1K_V1, False, 6),
    "resnet50": ResNetArch(resnet.resnet50, resnet.ResNet50_Weights.IMAGENET1K_V1, True, 6),
    "resnet101": ResNetArch(resnet.resnet101, resnet.ResNet101_Weights.IMAGENET1K_V1, True, 23),
}

SUPPORTED_ARCHS: tuple[str, ...] = tuple(RESNETS)


def arch_of_blocks(bottleneck: bool, layer3_blocks: int) -> str | None:
    """The name of the ResNet with these blocks (see :class:`ResNetArch`), or None."""
    return next(
        (name for name, a in RESNETS.items() if (a.bottleneck, a.layer3_blocks) == (bottleneck, layer3_blocks)), None
    )


@dataclass
class ResNetC4Parts:
    """The pieces of a ResNet cut at res4: the trunk and a res5 template for the RoI heads."""

    trunk: nn.Sequential
    res5: nn.Sequential
    trunk_channels: int
    res5_channels: int
    stride: int = 16

    def res5_copy(self) -> nn.Sequential:
        """An independent copy of res5 (same initial weights), one per head."""
        return copy.deepcopy(self.res5)


def _layer_out_channels(layer: nn.Sequential) -> int:
    last: Any = layer[-1]
    bn = last.bn3 if hasattr(last, "bn3") else last.bn2
    return int(bn.weight.shape[0])


def build_resnet(arch: str, frozen_bn: bool = True) -> resnet.ResNet:
    """A randomly initialised torchvision ResNet, with FrozenBatchNorm2d when ``frozen_bn`` (else trainable
    BatchNorm2d, torchvision's default)."""
    if arch not in RESNETS:
        raise PersonSearchError(f"unknown backbone {arch!r}; choose one of {', '.join(SUPPORTED_ARCHS)}")
    norm_layer = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    return RESNETS[arch].build(weights=None, norm_layer=norm_layer)


def load_pretrained(net: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Load pretrained (ImageNet-style) weights into ``net``, leaving out what it has no place for (the
    classifier ``fc.*``, or ``num_batches_tracked`` with FrozenBatchNorm2d); returns the keys of ``net`` the
    weights lack, the ``num_batches_tracked`` counters aside (files without them load)."""
    missing, _unexpected = net.load_state_dict(dict(state_dict), strict=False)
    return [k for k in missing if not k.endswith("num_batches_tracked")]


def split_resnet_c4(
    net: resnet.ResNet, state_dict: Mapping[str, torch.Tensor] | None = None, freeze_stem: bool = True
) -> ResNetC4Parts:
    """Load ``state_dict`` (if any) into ``net`` and split it into trunk (stride 16) and res5.

    ``freeze_stem`` stops gradients into conv1/bn1 (bn1 is already frozen with FrozenBatchNorm2d).
    """
    if state_dict is not None:
        missing = load_pretrained(net, state_dict)
        if missing:
            raise PersonSearchError(
                f"pretrained weights do not fit the backbone: {len(missing)} missing keys, e.g. {missing[0]}"
            )
    trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
    if freeze_stem:
        for module in (net.conv1, net.bn1):
            for p in module.parameters():
                p.requires_grad_(False)
    res5 = nn.Sequential(net.layer4)
    return ResNetC4Parts(
        trunk=trunk,
        res5=res5,
        trunk_channels=_layer_out_channels(net.layer3),
        res5_channels=_layer_out_channels(net.layer4),
    )

"""ImageNet weights for the backbone, from torchvision's cache or a file; never downloaded at run time."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from personsearch.errors import PersonSearchError

from .backbone import RESNETS

#: Values of ``backbone.pretrained`` that are not file paths.
AUTO, IMAGENET, NONE = "auto", "imagenet", "none"


def imagenet_url(arch: str) -> str:
    """The URL torchvision downloads the ImageNet weights of ``arch`` from."""
    if arch not in RESNETS:
        raise PersonSearchError(f"no ImageNet weights known for backbone {arch!r}")
    return RESNETS[arch].imagenet.url


def torchvision_cache_path(arch: str) -> Path:
    """Where torchvision keeps the downloaded weights: ``torch.hub.get_dir()/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(imagenet_url(arch))


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable or not a torch file
        raise PersonSearchError(f"cannot read backbone weights {path}: {exc}".splitlines()[0]) from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise PersonSearchError(f"backbone weights {path} hold no state dict")
    return obj


def _missing_message(arch: str, path: Path) -> str:
    return f"ImageNet weights for {arch} not found: download {imagenet_url(arch)} and save it as {path}"


def resolve_pretrained(arch: str, pretrained: str | bool | None) -> dict[str, torch.Tensor] | None:
    """The backbone state dict asked for by ``pretrained``, or None for random initialisation.

    ``pretrained``: ``"auto"`` (torchvision's cache if present, else a warning and random init),
    ``"imagenet"`` or ``True`` (torchvision's cache, error if absent), ``"none"``/``False``/``None``
    (random init), or a path to a ``.pth`` file (error if absent).
    """
    if pretrained is None or pretrained is False or str(pretrained).lower() == NONE:
        return None
    if pretrained is True or str(pretrained).lower() in (AUTO, IMAGENET):
        path = torchvision_cache_path(arch)
        if path.is_file():
            return _load_file(path)
        if str(pretrained).lower() == AUTO:
            warnings.warn(_missing_message(arch, path) + "; using random initialisation", stacklevel=2)
            return None
        raise PersonSearchError(_missing_message(arch, path))
    path = Path(str(pretrained)).expanduser()
    if not path.is_file():
        raise PersonSearchError(
            f"backbone weights file {path} does not exist (ImageNet {arch}: download {imagenet_url(arch)})"
        )
    return _load_file(path)

"""Choosing the torch device a config names (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""

from __future__ import annotations

import torch

from personsearch.errors import PersonSearchError


def resolve_device(name: str, key: str = "train.device", local_rank: int | None = None) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; ``cuda`` under torchrun means this process's GPU
    (``local_rank``). A CUDA device without a GPU is a one-line error naming the config ``key``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank is not None:
        name = f"cuda:{local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PersonSearchError(f"{key}={name} but no CUDA GPU is available; use {key}=cpu")
    return torch.device(name)

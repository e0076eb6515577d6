"""Capture and restore every random number generator a training run uses.

The captured state holds only tensors and plain Python values (no numpy arrays), so a checkpoint that
stores it loads with ``torch.load(..., weights_only=True)``: numpy's Mersenne Twister key (a ``uint32``
array) is kept as an ``int64`` tensor and turned back into ``uint32`` on restore. States captured by
older versions (a numpy array inside) are still accepted.
"""

from __future__ import annotations

import random
from typing import Any, cast

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def numpy_state_to_plain(state: tuple) -> tuple:
    """``np.random.get_state()`` with its key array as an ``int64`` tensor and plain scalars."""
    name, keys, pos, has_gauss, cached_gaussian = state
    return (
        str(name),
        torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64)),
        int(pos),
        int(has_gauss),
        float(cached_gaussian),
    )


def numpy_state_from_plain(state: tuple | list) -> tuple:
    """The inverse of :func:`numpy_state_to_plain`; an old state (a numpy key array) passes through."""
    name, keys, pos, has_gauss, cached_gaussian = state
    if torch.is_tensor(keys):
        keys = keys.numpy()
    return (str(name), np.asarray(keys).astype(np.uint32), int(pos), int(has_gauss), float(cached_gaussian))


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": numpy_state_to_plain(cast(tuple, np.random.get_state())),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    np.random.set_state(numpy_state_from_plain(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

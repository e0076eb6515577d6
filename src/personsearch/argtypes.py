"""``type=`` helpers for command-line numbers and devices: a bad value is argparse's one-line usage error.

Each raises :class:`argparse.ArgumentTypeError` with the words the user sees after ``argument --NAME:``.
"""

from __future__ import annotations

import argparse
import math
import re


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def seed(text: str) -> int:
    """A random seed: an integer in [0, 2**32 - 1]."""
    value = _int(text, "an integer seed in [0, 4294967295]")
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer seed in [0, 4294967295], got {text!r}")
    return value


def gallery_size(text: str) -> int:
    """-1 (the whole gallery) or a positive integer."""
    value = _int(text, "-1 (the whole gallery) or a positive integer")
    if value != -1 and value < 1:
        raise argparse.ArgumentTypeError(f"expected -1 (the whole gallery) or a positive integer, got {text!r}")
    return value


def _float(text: str) -> float:
    """``text`` as a number; nan when it is not one (each caller's range check then refuses it)."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def finite_float(text: str) -> float:
    """A finite number (no nan or inf)."""
    value = _float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1] (a score threshold, a probability)."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:  # false for nan
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


DEVICE = re.compile(r"auto|cpu|cuda(?::(\d+))?")


def device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; a CUDA device must exist on this host."""
    match = DEVICE.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    if text.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text!r} asked for, but no CUDA GPU is available; use cpu or auto")
        if match.group(1) is not None and int(match.group(1)) >= count:
            raise argparse.ArgumentTypeError(
                f"{text!r} asked for, but this host has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})"
            )
    return text


def box_xyxy(text: str) -> list[float]:
    """Four numbers ``x1,y1,x2,y2`` (pixels); whether they make a box inside the image is checked later,
    against the image."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected four numbers x1,y1,x2,y2 (pixels), got {text!r}")
    return values

"""Training-free Re-ID floors: box embedders that learn nothing, for the bottom rows of every table.

Both follow the box-embedder convention of :mod:`personsearch.engine.inference` (``embed(images, boxes)``
with per-image float ``[3, H, W]`` images in 0..1 and ``[n, 4]`` boxes in input pixels, returning one
``[n, D]`` tensor of L2-normalised rows per image), so they run through the very protocols a model does:

* :class:`ColourHistogramEmbedder`: an HSV histogram of the box (hue x saturation x value bins), square
  rooted and L2-normalised, so the dot product of two boxes is their Bhattacharyya coefficient (one minus
  the squared Hellinger distance). A learnt model must sit well above it, or the benchmark rewards colour.
* :class:`RandomEmbedder`: a random unit vector per box (chance level).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rgb_to_hsv(image: Tensor) -> Tensor:
    """``[3, H, W]`` RGB in 0..1 -> HSV in 0..1 (hue as a fraction of the colour circle)."""
    r, g, b = image[0], image[1], image[2]
    value, _ = image.max(dim=0)
    low, _ = image.min(dim=0)
    chroma = value - low
    saturation = torch.where(value > 0, chroma / value.clamp_min(1e-12), torch.zeros_like(value))
    safe = chroma.clamp_min(1e-12)
    hue = torch.where(
        value == r,
        ((g - b) / safe) % 6,
        torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    hue = torch.where(chroma > 0, hue / 6, torch.zeros_like(hue))
    return torch.stack([hue, saturation, value])


class ColourHistogramEmbedder:
    """HSV histogram of each box (``bins`` per channel), Hellinger-mapped (square root) and L2-normalised."""

    def __init__(self, bins: tuple[int, int, int] = (8, 4, 4)) -> None:
        self.bins = tuple(int(b) for b in bins)

    @property
    def dim(self) -> int:
        return self.bins[0] * self.bins[1] * self.bins[2]

    def histogram(self, image: Tensor, box: Tensor) -> Tensor:
        """The normalised histogram of one box (clipped to the image; an empty box gives a zero row)."""
        _, height, width = image.shape
        x1, y1, x2, y2 = (float(v) for v in box)
        left, top = max(int(x1), 0), max(int(y1), 0)
        right, bottom = min(round(x2), width), min(round(y2), height)
        if right <= left or bottom <= top:
            return torch.zeros(self.dim)
        hsv = rgb_to_hsv(image[:, top:bottom, left:right].float()).reshape(3, -1)
        idx = torch.zeros(hsv.shape[1], dtype=torch.long)
        for channel, bins in enumerate(self.bins):
            idx = idx * bins + (hsv[channel] * bins).long().clamp(0, bins - 1)
        counts = torch.bincount(idx, minlength=self.dim).float()
        return counts / counts.sum()

    def __call__(self, images: list[Tensor], boxes: list[Tensor]) -> list[Tensor]:
        out = []
        for image, image_boxes in zip(images, boxes):
            image = image.cpu()
            rows = [self.histogram(image, b) for b in image_boxes.cpu()]
            hist = torch.stack(rows) if rows else torch.zeros(0, self.dim)
            out.append(F.normalize(hist.sqrt(), dim=1))
        return out


class RandomEmbedder:
    """A random unit vector per box, from a seeded generator (reproducible, independent of the image)."""

    def __init__(self, dim: int = 256, seed: int = 0) -> None:
        self.dim = int(dim)
        self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, images: list[Tensor], boxes: list[Tensor]) -> list[Tensor]:
        return [F.normalize(torch.randn(len(b), self.dim, generator=self.generator), dim=1) for b in boxes]

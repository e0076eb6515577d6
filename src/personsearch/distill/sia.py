"""Spatial-invariant augmentation (SIA): one offset sampler for the teacher's ISA crops and the
student's FSA RoIs (method.md, "Spatial-invariant augmentation").

A ground-truth box ``(x1, y1, x2, y2)`` of size ``w x h`` gets shift ranges

    r_h = min(2 h dp / H, alpha),   r_w = min(2 w dp / W, alpha)

(``H x W`` the teacher's input size, ``dp`` the allowed shift in teacher-input pixels, ``alpha`` the
enlargement in image pixels). A perturbation is a tensor of *relative offsets* ``u`` in ``[-1, 1]^4``,
one per box edge; the perturbed box is ``(x1 + u0 r_w, y1 + u1 r_h, x2 + u2 r_w, y2 + u3 r_h)`` clipped
to the box enlarged by ``alpha`` on each side and to the image. The same ``u`` gives the teacher's crop
(ISA, image pixels) and the student's RoI (FSA: the same image-pixel box, which RoIAlign's
``spatial_scale = 1/S`` maps onto the stride-``S`` feature map), so both networks see the same region.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import roi_align


@dataclass(frozen=True)
class SIASettings:
    """``alpha``: enlargement (image px); ``dp``: allowed shift (teacher-input px); ``input_size``: (H, W)."""

    alpha: float = 16.0
    dp: float = 8.0
    input_size: tuple[int, int] = (256, 128)
    min_size: float = 1.0  # a perturbed box narrower or shorter than this keeps the original edges


def enlarge_boxes(boxes: Tensor, alpha: float, image_size: tuple[int, int]) -> Tensor:
    """Boxes grown by ``alpha`` pixels on each side, clipped to the image ``(height, width)``."""
    height, width = image_size
    grown = boxes.float() + torch.tensor([-alpha, -alpha, alpha, alpha], device=boxes.device)
    return clip_to_image(grown, image_size=(height, width))


def clip_to_image(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Clip ``x1 y1 x2 y2`` boxes to ``[0, width] x [0, height]``."""
    height, width = image_size
    x = boxes[:, 0::2].clamp(0.0, float(width))
    y = boxes[:, 1::2].clamp(0.0, float(height))
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)


def shift_ranges(boxes: Tensor, settings: SIASettings) -> Tensor:
    """``[N, 4]`` per-edge shift ranges ``(r_w, r_h, r_w, r_h)`` in image pixels."""
    boxes = boxes.float()
    in_h, in_w = settings.input_size
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    r_w = (2.0 * w * settings.dp / in_w).clamp(max=settings.alpha)
    r_h = (2.0 * h * settings.dp / in_h).clamp(max=settings.alpha)
    return torch.stack([r_w, r_h, r_w, r_h], dim=1)


def sample_offsets(count: int, generator: torch.Generator | None = None, device: torch.device | None = None) -> Tensor:
    """``[count, 4]`` relative offsets, independent and uniform in ``[-1, 1]`` (torch's global RNG by default)."""
    u = torch.rand((count, 4), generator=generator, dtype=torch.float32)
    return (2.0 * u - 1.0).to(device) if device is not None else 2.0 * u - 1.0


def apply_offsets(boxes: Tensor, offsets: Tensor, settings: SIASettings, image_size: tuple[int, int]) -> Tensor:
    """The perturbed boxes: each edge moved by ``offset * range``, clipped to the enlarged box and the image.

    A box whose clipped size falls below ``settings.min_size`` keeps its original coordinates.
    """
    boxes = boxes.float()
    if boxes.shape[0] == 0:
        return boxes.clone()
    moved = boxes + offsets.to(boxes.device) * shift_ranges(boxes, settings)
    outer = enlarge_boxes(boxes, settings.alpha, image_size)
    clipped = torch.maximum(torch.minimum(moved, outer[:, 2:].repeat(1, 2)), outer[:, :2].repeat(1, 2))
    too_small = ((clipped[:, 2] - clipped[:, 0]) < settings.min_size) | (
        (clipped[:, 3] - clipped[:, 1]) < settings.min_size
    )
    return torch.where(too_small[:, None], boxes, clipped)


def perturb_boxes(
    boxes: Tensor,
    settings: SIASettings,
    image_size: tuple[int, int],
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample offsets and apply them: ``(perturbed boxes, offsets)``."""
    offsets = sample_offsets(boxes.shape[0], generator, boxes.device)
    return apply_offsets(boxes, offsets, settings, image_size), offsets


def crop_resize(image: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Crops of ``image`` ``[3, H, W]`` at ``boxes`` (image pixels), resized to ``size`` = (h, w).

    Bilinear RoIAlign with adaptive sampling (an area average when shrinking): the one crop operation
    used for the teacher's training, its evaluation, distillation and the two-step pipeline.
    """
    if boxes.shape[0] == 0:
        return image.new_zeros((0, image.shape[0], *size))
    rois = [boxes.to(device=image.device, dtype=image.dtype)]
    return roi_align(image[None], rois, output_size=size, spatial_scale=1.0, sampling_ratio=0, aligned=True)

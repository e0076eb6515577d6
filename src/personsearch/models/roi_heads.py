"""Faster R-CNN second stage for one class (person): proposal sampling, losses, post-processing."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import RoIAlign
from torchvision.ops import boxes as box_ops

from .heads import DetectionHead


@dataclass
class SampledProposals:
    """Training proposals chosen by the sampler, with their matched ground truth."""

    proposals: list[Tensor]
    matched_idxs: list[Tensor]
    labels: list[Tensor]  # 1 person, 0 background


def person_detection_loss(
    class_logits: Tensor, box_deltas: Tensor, labels: list[Tensor], regression_targets: list[Tensor]
) -> tuple[Tensor, Tensor]:
    """Cross-entropy over person/background and smooth-L1 on the positives (normalised by all samples)."""
    labels_all = torch.cat(labels)
    targets_all = torch.cat(regression_targets)
    loss_cls = F.cross_entropy(class_logits, labels_all)
    pos = torch.where(labels_all > 0)[0]
    loss_box = F.smooth_l1_loss(box_deltas[pos], targets_all[pos], beta=1 / 9, reduction="sum")
    return loss_cls, loss_box / max(labels_all.numel(), 1)


class PersonDetectionRoIHeads(RoIHeads):
    """torchvision's RoIHeads with a single class-agnostic person head (reuses its matcher and sampler).

    ``targets`` carry identity labels; for detection every boxed person is foreground.
    """

    def __init__(
        self,
        roi_align: RoIAlign,
        box_head: DetectionHead,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 128,
        positive_fraction: float = 0.5,
        bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        score_thresh: float = 0.5,
        nms_thresh: float = 0.4,
        detections_per_img: int = 300,
    ) -> None:
        super().__init__(
            roi_align,
            box_head,
            None,
            fg_iou_thresh,
            bg_iou_thresh,
            batch_size_per_image,
            positive_fraction,
            tuple(bbox_reg_weights),
            score_thresh,
            nms_thresh,
            detections_per_img,
        )

    def sample(
        self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[SampledProposals, list[Tensor]]:
        """Add GT to the proposals, match and subsample them; returns the sample and regression targets."""
        person_targets = [
            {"boxes": t["boxes"], "labels": torch.ones_like(t["labels"], dtype=torch.int64)} for t in targets
        ]
        props, matched, labels, reg_targets = self.select_training_samples(list(proposals), person_targets)
        return SampledProposals(props, matched, labels), reg_targets

    def forward(
        self,
        features: Tensor,
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor], SampledProposals | None]:
        """Training: (empty detections, losses, sample). Eval: (detections, {}, None)."""
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            sample, reg_targets = self.sample(proposals, targets)
            logits, deltas = self.box_head(self.box_roi_pool(features, sample.proposals))
            loss_cls, loss_box = person_detection_loss(logits, deltas, sample.labels, reg_targets)
            return [], {"loss_box_cls": loss_cls, "loss_box_reg": loss_box}, sample
        logits, deltas = self.box_head(self.box_roi_pool(features, proposals))
        return self.postprocess(logits, deltas, proposals, image_shapes), {}, None

    def postprocess(
        self, logits: Tensor, deltas: Tensor, proposals: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Decode, clip, threshold the person score, NMS, keep the top detections (resized coordinates)."""
        boxes_all = self.box_coder.decode(deltas, proposals).reshape(-1, 4)
        scores_all = F.softmax(logits.float(), dim=-1)[:, 1]
        counts = [len(p) for p in proposals]
        results = []
        for boxes, scores, shape in zip(boxes_all.split(counts), scores_all.split(counts), image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)
            keep = torch.where(scores >= self.score_thresh)[0]
            boxes, scores = boxes[keep], scores[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores = boxes[keep], scores[keep]
            keep = box_ops.nms(boxes, scores, self.nms_thresh)[: self.detections_per_img]
            results.append({"boxes": boxes[keep], "scores": scores[keep]})
        return results

"""The end-to-end person search network: C4 backbone, RPN, parallel detection and Re-ID heads, OIM."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import RoIAlign

from .heads import ReIDHead
from .norm import running_stats_kept
from .oim import OIMLoss
from .roi_heads import PersonDetectionRoIHeads, SampledProposals

FEATURE_NAME = "feat_res4"
#: Feature maps the Re-ID head can pool from: the trunk's output (stride 16) or its layer2 (stride 8).
REID_FEATURES = ("res4", "res3")


@dataclass
class ReIDOutput:
    """Re-ID head outputs for a set of boxes, concatenated over the images in order."""

    embeddings: Tensor  # [N, D], L2-normalised
    probabilities: Tensor  # [N, K] = softmax(scalar * f . LUT^T)
    counts: list[int]  # boxes per image

    def split(self) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Per-image embeddings and probabilities."""
        return self.embeddings.split(self.counts), self.probabilities.split(self.counts)


@dataclass
class TrainOutputs:
    """What a training forward pass exposes besides its losses (``return_outputs=True``), for loss
    contributors such as distillation. Boxes and sizes are in resized-image pixels unless named original."""

    gt: ReIDOutput  # the ground-truth boxes of every image, in order
    gt_labels: Tensor  # [N] class index of each ground-truth box (-1: unlabelled)
    features: dict[str, Tensor]  # the backbone's feature maps
    image_sizes: list[tuple[int, int]]  # (h, w) of each resized image
    original_sizes: list[tuple[int, int]]  # (h, w) of each input image
    targets: list[dict[str, Tensor]]  # the targets resized with the images
    extra: ReIDOutput | None = None  # the ``extra_boxes`` passed to the forward pass, if any
    # with ``reid_grad_scale`` < 1: the GT boxes again, the same values as ``gt`` (the Re-ID head run a second
    # time on the same boxes, batch statistics included), but the gradient of a loss on them into the backbone
    # is multiplied by that scale (0: detached, such a loss trains the Re-ID head only); ``extra`` is then
    # embedded the same way
    gt_scaled: ReIDOutput | None = None


def scale_gradient(x: Tensor, scale: float) -> Tensor:
    """``x`` unchanged in the forward pass; the gradient flowing back through it multiplied by ``scale``
    (0: detached)."""
    if scale == 0:
        return x.detach()
    if scale == 1:
        return x
    return x.detach() + scale * (x - x.detach())


def check_targets(targets: list[dict[str, Tensor]]) -> None:
    """Every target has ``boxes`` [N, 4] with positive width and height and ``labels`` [N]."""
    for i, t in enumerate(targets):
        boxes, labels = t.get("boxes"), t.get("labels")
        if boxes is None or labels is None:
            raise ValueError(f"target {i} needs 'boxes' and 'labels'")
        if boxes.dim() != 2 or boxes.shape[1] != 4 or labels.shape != boxes.shape[:1]:
            raise ValueError(f"target {i}: boxes must be [N, 4] and labels [N]")
        bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if bool(bad.any()):
            raise ValueError(f"target {i}: degenerate box {boxes[bad][0].tolist()} (need x2 > x1, y2 > y1)")


def check_finite_boxes(boxes: list[Tensor]) -> None:
    """A ValueError naming the first box with a NaN or infinite coordinate (any shape [n, 4] per image)."""
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[-1] != 4:
            raise ValueError(f"boxes of image {i} must be [n, 4] (x1, y1, x2, y2), got shape {tuple(b.shape)}")
    bad = [~torch.isfinite(b).all(dim=1) for b in boxes]
    if bool(torch.cat(bad).any()):
        i = next(i for i, m in enumerate(bad) if bool(m.any()))
        raise ValueError(f"box {boxes[i][bad[i]][0].tolist()} of image {i} has a NaN or infinite coordinate")


class PersonSearchModel(nn.Module):
    """End-to-end person search (torchvision GeneralizedRCNN style).

    * train: ``model(images, targets)`` -> dict of losses (``loss_rpn_objectness``, ``loss_rpn_box``,
      ``loss_box_cls``, ``loss_box_reg``, ``loss_oim``); with ``return_outputs=True`` -> ``(losses,
      outputs)`` where ``outputs`` holds the Re-ID outputs of the GT boxes (``gt``: ReIDOutput,
      ``gt_labels``) and of ``extra_boxes`` (``extra``), plus the feature map (``features``), the
      resized targets and image sizes, for a distillation wrapper.
    * eval: ``model(images)`` -> list of ``{"boxes", "scores", "embeddings"}`` in input pixels.
    * query: ``model(images, query_boxes=boxes)`` or ``extract_query_features`` -> list of [n, D].

    Images: list of float [3, H, W] in 0..1. Targets: ``boxes`` [N, 4] (x1, y1, x2, y2 in input
    pixels) and ``labels`` [N] (identity 0..K-1, or -1 for an unlabelled person).
    """

    def __init__(
        self,
        transform: GeneralizedRCNNTransform,
        backbone: nn.Module,
        rpn: RegionProposalNetwork,
        roi_heads: PersonDetectionRoIHeads,
        reid_roi_align: RoIAlign,
        reid_head: ReIDHead,
        oim: OIMLoss,
        reid_on_proposals: bool = True,
        score_weighted_embeddings: bool = False,
        reid_feature: str = "res4",
    ) -> None:
        super().__init__()
        if reid_feature not in REID_FEATURES:
            raise ValueError(f"reid_feature must be one of {REID_FEATURES}, got {reid_feature!r}")
        self.reid_feature = reid_feature
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.reid_roi_align = reid_roi_align
        self.reid_head = reid_head
        self.oim = oim
        self.reid_on_proposals = reid_on_proposals
        self.score_weighted_embeddings = score_weighted_embeddings

    # ---- shared pieces -------------------------------------------------------------------------
    def features(self, images: ImageList) -> dict[str, Tensor]:
        """Backbone feature maps of a batched ImageList: ``res4`` (stride 16, for the RPN and the detection
        head) and, when the Re-ID head pools from it, ``res3`` (stride 8, the trunk before its last stage)."""
        if self.reid_feature == "res4":
            return {"res4": self.backbone(images.tensors)}
        trunk = cast(nn.Sequential, self.backbone)
        res3 = trunk[:-1](images.tensors)
        return {"res3": res3, "res4": trunk[-1](res3)}

    def reid_embeddings(self, features: dict[str, Tensor], boxes: list[Tensor]) -> Tensor:
        """RoIAlign + Re-ID head for ``boxes`` (per image, resized-image pixels) -> [N, D]."""
        fmap = features[self.reid_feature]
        if sum(len(b) for b in boxes) == 0:
            return fmap.new_zeros((0, self.reid_head.embedding_dim))
        check_finite_boxes(boxes)  # roi_align crashes the process (SIGSEGV) on NaN or inf coordinates
        return self.reid_head(self.reid_roi_align(fmap, [self._roi_boxes(b, fmap) for b in boxes]))

    @staticmethod
    def _roi_boxes(boxes: Tensor, features: Tensor) -> Tensor:
        # Under autocast roi_align casts to fp32 itself; only a fully half model needs half boxes.
        return boxes.float() if torch.is_autocast_enabled(features.device.type) else boxes.to(features.dtype)

    def reid_outputs(self, features: dict[str, Tensor], boxes: list[Tensor]) -> ReIDOutput:
        """Embeddings and OIM class probabilities of given boxes (hook for distillation)."""
        embeddings = self.reid_embeddings(features, boxes)
        return ReIDOutput(embeddings, self.oim.class_probabilities(embeddings), [len(b) for b in boxes])

    @staticmethod
    def resize_boxes_to(
        boxes: list[Tensor], original_sizes: list[tuple[int, int]], new_sizes: list[tuple[int, int]]
    ) -> list[Tensor]:
        """Map boxes from input-image pixels to resized-image pixels."""
        return [resize_boxes(b.float(), o, n) for b, o, n in zip(boxes, original_sizes, new_sizes)]

    def _require_eval(self, what: str) -> None:
        if self.training:
            raise RuntimeError(f"{what} needs eval mode (call model.eval() first)")

    # ---- forward -------------------------------------------------------------------------------
    def forward(
        self,
        images: list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
        query_boxes: list[Tensor] | None = None,
        extra_boxes: list[Tensor] | None = None,
        return_outputs: bool = False,
        reid_grad_scale: float = 1.0,
    ) -> dict[str, Tensor] | tuple[dict[str, Tensor], TrainOutputs] | list[dict[str, Tensor]] | list[Tensor]:
        """Losses (train), detections (eval) or query embeddings (``query_boxes``); see the class doc."""
        if query_boxes is not None:
            return self.extract_query_features(images, query_boxes)
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            losses, outputs = self.forward_train(images, targets, extra_boxes, reid_grad_scale)
            return (losses, outputs) if return_outputs else losses
        return self.detect(images)

    def forward_train(
        self,
        images: list[Tensor],
        targets: list[dict[str, Tensor]],
        extra_boxes: list[Tensor] | None = None,
        reid_grad_scale: float = 1.0,
    ) -> tuple[dict[str, Tensor], TrainOutputs]:
        """All training losses, plus the Re-ID outputs of GT (and ``extra_boxes``) for loss contributors;
        ``reid_grad_scale`` < 1: those outputs also from the Re-ID feature map whose gradient into the backbone
        is scaled by it (``TrainOutputs.gt_scaled``; 0: detached)."""
        check_targets(targets)
        if not 0 <= reid_grad_scale <= 1:
            raise ValueError(f"reid_grad_scale must be in [0, 1], got {reid_grad_scale}")
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, resized = self.transform(images, targets)
        assert resized is not None
        features = self.features(image_list)
        res4 = features["res4"]
        proposals, rpn_losses = self.rpn(image_list, OrderedDict([(FEATURE_NAME, res4)]), resized)
        _, det_losses, sample = self.roi_heads(res4, proposals, image_list.image_sizes, resized)
        assert sample is not None
        reid_boxes, reid_labels, gt_counts = self._reid_training_boxes(resized, sample)
        embeddings = self.reid_embeddings(features, reid_boxes)
        gt_labels = torch.cat([t["labels"] for t in resized])
        gt = self._gt_output(embeddings, reid_boxes, gt_counts)
        reid_features, gt_scaled = features, None
        if reid_grad_scale < 1:  # every Re-ID box again (the head's batch statistics as above), before OIM moves
            reid_features = {self.reid_feature: scale_gradient(features[self.reid_feature], reid_grad_scale)}
            with running_stats_kept(self.reid_head):
                again = self.reid_embeddings(reid_features, reid_boxes)
            gt_scaled = self._gt_output(again, reid_boxes, gt_counts)
        loss_oim = self.oim(embeddings, torch.cat(reid_labels))
        losses = {
            "loss_rpn_objectness": rpn_losses["loss_objectness"],
            "loss_rpn_box": rpn_losses["loss_rpn_box_reg"],
            **det_losses,
            "loss_oim": loss_oim,
        }
        extra = None
        if extra_boxes is not None:
            resized_extra = self.resize_boxes_to(extra_boxes, original_sizes, image_list.image_sizes)
            extra = self.reid_outputs(reid_features, resized_extra)
        outputs = TrainOutputs(
            gt=gt,
            gt_labels=gt_labels,
            features=features,
            image_sizes=list(image_list.image_sizes),
            original_sizes=original_sizes,
            targets=resized,
            extra=extra,
            gt_scaled=gt_scaled,
        )
        return losses, outputs

    def _gt_output(self, embeddings: Tensor, reid_boxes: list[Tensor], gt_counts: list[int]) -> ReIDOutput:
        """The ground-truth rows (the first ``gt_counts[i]`` of image i) of the Re-ID training boxes'
        embeddings, with their OIM class probabilities."""
        per_image = embeddings.split([len(b) for b in reid_boxes])
        gt_embeddings = torch.cat([e[:n] for e, n in zip(per_image, gt_counts)])
        return ReIDOutput(gt_embeddings, self.oim.class_probabilities(gt_embeddings), gt_counts)

    def _reid_training_boxes(
        self, targets: list[dict[str, Tensor]], sample: SampledProposals
    ) -> tuple[list[Tensor], list[Tensor], list[int]]:
        """Per image: GT boxes first, then (optionally) sampled foreground proposals and their GT identity."""
        boxes, labels, gt_counts = [], [], []
        for i, t in enumerate(targets):
            img_boxes, img_labels = [t["boxes"]], [t["labels"].long()]
            if self.reid_on_proposals:
                fg = sample.labels[i] > 0
                img_boxes.append(sample.proposals[i][fg])
                img_labels.append(t["labels"].long()[sample.matched_idxs[i][fg]])
            boxes.append(torch.cat(img_boxes).detach())
            labels.append(torch.cat(img_labels))
            gt_counts.append(len(t["boxes"]))
        return boxes, labels, gt_counts

    @torch.no_grad()
    def detect(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Detections with embeddings; the Re-ID head runs on the final detections only (eval mode)."""
        self._require_eval("detect")
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, _ = self.transform(images, None)
        features = self.features(image_list)
        res4 = features["res4"]
        proposals, _ = self.rpn(image_list, OrderedDict([(FEATURE_NAME, res4)]))
        detections, _, _ = self.roi_heads(res4, proposals, image_list.image_sizes)
        embeddings = self.reid_embeddings(features, [d["boxes"] for d in detections])
        for det, emb in zip(detections, embeddings.split([len(d["boxes"]) for d in detections])):
            det["embeddings"] = emb * det["scores"][:, None] if self.score_weighted_embeddings else emb
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)

    @torch.no_grad()
    def extract_query_features(self, images: list[Tensor], boxes: list[Tensor]) -> list[Tensor]:
        """L2-normalised embeddings [n, D] of given boxes (input pixels), one tensor per image (eval mode)."""
        self._require_eval("extract_query_features")
        check_finite_boxes(boxes)
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, _ = self.transform(images, None)
        resized = self.resize_boxes_to(boxes, original_sizes, image_list.image_sizes)
        embeddings = self.reid_embeddings(self.features(image_list), resized)
        return list(embeddings.split([len(b) for b in boxes]))

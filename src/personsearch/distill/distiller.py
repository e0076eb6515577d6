"""The trainer's distillation contributor: a frozen teacher, its output cache, FSA copies and the DKD losses.

Per training step the trainer (:class:`personsearch.engine.hooks.LossContributor`) calls
:meth:`Distiller.extra_boxes` (the FSA-perturbed copies of the
distilled ground-truth boxes, which the student pushes through RoIAlign and its Re-ID head) and then
:meth:`Distiller.losses` with the student's outputs. The teacher sees the same boxes as crops of the same
(possibly flipped) input image: the unperturbed boxes (cached: computed once per image, flip and box set)
and the perturbed copies (the ISA crop of the same relative offsets, computed every step).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from personsearch.config_types import DistillConfig, RunConfig, as_run_config
from personsearch.data.annotations import ImageRecord, PersonSearchData
from personsearch.engine.hooks import LossContributor
from personsearch.errors import ConfigError, PersonSearchError
from personsearch.models import TrainOutputs

from .losses import KL_DIRECTIONS, pairwise_relation_kd, probability_kd, same_identity_mask, triplet_relation_kd
from .sia import SIASettings, crop_resize, perturb_boxes
from .teacher import TeacherNet, TeacherSpec, freeze, load_teacher


@dataclass(frozen=True)
class DistillSettings:
    """The ``distill`` config section, resolved against the teacher (see ``docs/dkd.md``). No defaults here:
    :class:`~personsearch.config_types.DistillConfig` is their one source (:meth:`from_config`)."""

    lam: float
    beta_p: float
    beta_pr: float
    beta_tr: float
    kl_direction: str
    tr_margin: float
    tr_exclude_same_identity: bool
    tr_exclude_own_copy: bool
    include_unlabelled: bool
    fsa: bool
    relation_with_copies: bool
    backbone_grad: float
    cache: bool
    teacher_batch: int
    sia: SIASettings

    @classmethod
    def from_config(cls, d: DistillConfig, spec: TeacherSpec) -> DistillSettings:
        """From the typed ``distill`` section; the SIA range defaults to the ISA range ``spec`` was trained with."""
        if d.kl_direction not in KL_DIRECTIONS:
            raise ConfigError(f"distill.kl_direction={d.kl_direction!r}: expected one of {', '.join(KL_DIRECTIONS)}")
        alpha = float(spec.isa_alpha if d.sia_alpha is None else d.sia_alpha)
        dp = float(spec.isa_dp if d.sia_dp is None else d.sia_dp)
        if d.fsa and (alpha <= 0 or dp <= 0):
            warnings.warn(
                "distill.fsa is on but the SIA range is 0 (teacher trained without ISA and no "
                "distill.sia_alpha/sia_dp): the perturbed copies equal the boxes",
                stacklevel=2,
            )
        return cls(
            lam=d.lam,
            beta_p=d.beta_p,
            beta_pr=d.beta_pr,
            beta_tr=d.beta_tr,
            kl_direction=d.kl_direction,
            tr_margin=d.tr_margin,
            tr_exclude_same_identity=d.tr_exclude_same_identity,
            tr_exclude_own_copy=d.tr_exclude_own_copy,
            include_unlabelled=d.include_unlabelled,
            fsa=d.fsa,
            relation_with_copies=d.relation_with_copies,
            backbone_grad=d.backbone_grad,
            cache=d.cache,
            teacher_batch=max(1, d.teacher_batch),
            sia=SIASettings(alpha, dp, (spec.input_size[0], spec.input_size[1])),
        )


class TeacherCache:
    """Teacher BN-neck features of unperturbed GT boxes, keyed on ``(image name, flipped, boxes)``."""

    def __init__(self) -> None:
        self._store: dict[tuple[str, bool, bytes], Tensor] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, bool, bytes]) -> Tensor | None:
        value = self._store.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: tuple[str, bool, bytes], value: Tensor) -> None:
        self._store[key] = value.detach()

    def __len__(self) -> int:
        return len(self._store)


def flip_state(record: ImageRecord | None, boxes: Tensor, width: int) -> bool | None:
    """Whether ``boxes`` are ``record``'s boxes (False) or their mirror in an image of ``width`` (True);
    None when unknown or ambiguous (e.g. every box symmetric about the image centre)."""
    if record is None or len(record.boxes) != len(boxes):
        return None
    given = boxes.detach().cpu().double().numpy()
    plain = record.boxes.astype(np.float64)
    mirrored = plain.copy()
    mirrored[:, 0], mirrored[:, 2] = width - plain[:, 2], width - plain[:, 0]
    is_plain = bool(np.allclose(given, plain, atol=1e-3))
    is_flipped = bool(np.allclose(given, mirrored, atol=1e-3))
    return is_flipped if is_plain != is_flipped else None


class Distiller(LossContributor):
    """See the module docstring. The teacher stays frozen: eval mode, no gradients, not in any optimiser.

    As the trainer's loss contributor it owns the distillation weights: lambda scales the model's
    ``loss_oim`` (:meth:`loss_factors`) and every KD term (:meth:`losses`)."""

    name = "distillation"

    def __init__(
        self,
        teacher: TeacherNet,
        settings: DistillSettings,
        records: Sequence[ImageRecord] = (),
        device: torch.device | str = "cpu",
    ) -> None:
        self.teacher = freeze(teacher).to(device)
        self.settings = settings
        self.records = {r.name: r for r in records}
        self.cache = TeacherCache()
        self._pending: list[Tensor] | None = None
        self.reid_backbone_grad = settings.backbone_grad

    # ---- boxes ---------------------------------------------------------------------------------
    def selection(self, target: Mapping[str, Any]) -> Tensor:
        """Which GT boxes of an image are distilled (B): labelled ones, or all with include_unlabelled."""
        labels = target["labels"]
        return torch.ones_like(labels, dtype=torch.bool) if self.settings.include_unlabelled else labels >= 0

    def extra_boxes(self, images: list[Tensor], targets: list[dict[str, Any]]) -> list[Tensor] | None:
        """FSA: one perturbed copy of every distilled GT box per image (input pixels), or None without FSA.

        Offsets come from torch's global RNG (saved in checkpoints, so resumed training stays exact).
        """
        if not self.settings.fsa:
            self._pending = None
            return None
        out = []
        for image, target in zip(images, targets):
            boxes = target["boxes"][self.selection(target)].float()
            size = (int(image.shape[-2]), int(image.shape[-1]))
            out.append(perturb_boxes(boxes, self.settings.sia, size)[0])
        self._pending = out
        return out

    # ---- teacher -------------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_neck(self, image: Tensor, boxes: Tensor) -> Tensor:
        """BN-neck features ``[n, D]`` of crops of ``image`` at ``boxes`` (fp32, chunks of teacher_batch)."""
        self.teacher.eval()
        height, width = self.teacher.spec.input_size
        size = (int(height), int(width))
        outs = [image.new_zeros((0, self.teacher.spec.embedding_dim), dtype=torch.float32)]
        with _no_autocast(image.device):
            for chunk in boxes.float().split(self.settings.teacher_batch):
                outs.append(self.teacher(crop_resize(image.float(), chunk, size)).neck.float())
        return torch.cat(outs)

    def teacher_gt_neck(self, image: Tensor, target: Mapping[str, Any]) -> Tensor:
        """Teacher features of the distilled unperturbed GT boxes of one image, from the cache when possible."""
        boxes = target["boxes"][self.selection(target)].float()
        key = self._cache_key(image, target, boxes) if self.settings.cache else None
        cached = self.cache.get(key) if key is not None else None
        if cached is not None:
            return cached
        neck = self.teacher_neck(image, boxes)
        if key is not None:
            self.cache.put(key, neck)
        return neck

    def _cache_key(self, image: Tensor, target: Mapping[str, Any], boxes: Tensor) -> tuple[str, bool, bytes] | None:
        name = target.get("image_name")
        record = self.records.get(name) if isinstance(name, str) else None
        flipped = flip_state(record, target["boxes"], int(image.shape[-1]))
        if flipped is None:
            return None
        return (str(name), flipped, boxes.detach().cpu().numpy().astype(np.float32).tobytes())

    # ---- losses --------------------------------------------------------------------------------
    def loss_factors(self) -> dict[str, float]:
        """L = L_det + lambda (L_reid + sum beta L_kd): lambda on the model's Re-ID loss."""
        return {"loss_oim": self.settings.lam}

    def losses(self, images: list[Tensor], targets: list[dict[str, Any]], outputs: TrainOutputs) -> dict[str, Tensor]:
        """``loss_kd_p``, ``loss_kd_pr``, ``loss_kd_tr``, each multiplied by lambda and its beta."""
        s = self.settings
        masks = [self.selection(t) for t in targets]
        mask = torch.cat(masks)
        gt = outputs.gt if s.backbone_grad == 1 else outputs.gt_scaled
        if gt is None:
            raise PersonSearchError("distillation: distill.backbone_grad < 1 but the model gave no scaled outputs")
        f_h, p_h = gt.embeddings[mask], gt.probabilities[mask]
        labels = outputs.gt_labels[mask]
        t_neck = torch.cat([self.teacher_gt_neck(img, t) for img, t in zip(images, targets)])
        with _no_autocast(f_h.device):
            t_out = self.teacher.head(t_neck)
            loss_p = probability_kd(p_h, t_out.probabilities, s.kl_direction)
            rel_h, rel_m, rel_labels = f_h, t_out.embeddings, labels
            box_ids = torch.arange(len(f_h), device=f_h.device)
            if s.fsa:
                f_ht, p_ht, t_pert = self._perturbed(images, outputs)
                loss_p = loss_p + probability_kd(p_ht, t_pert.probabilities, s.kl_direction)
                if s.relation_with_copies:
                    rel_h, rel_m = torch.cat([f_h, f_ht]), torch.cat([t_out.embeddings, t_pert.embeddings])
                    rel_labels, box_ids = torch.cat([labels, labels]), torch.cat([box_ids, box_ids])
            loss_pr = pairwise_relation_kd(rel_h, rel_m)
            loss_tr = triplet_relation_kd(rel_h, rel_m, s.tr_margin, self._negative_exclusion(rel_labels, box_ids))
        return {
            "loss_kd_p": s.lam * s.beta_p * loss_p,
            "loss_kd_pr": s.lam * s.beta_pr * loss_pr,
            "loss_kd_tr": s.lam * s.beta_tr * loss_tr,
        }

    def _perturbed(self, images: list[Tensor], outputs: TrainOutputs) -> tuple[Tensor, Tensor, Any]:
        """Student embeddings and probabilities of the FSA copies, and the teacher on the same boxes."""
        pending = self._pending
        extra = outputs.extra
        if pending is None or extra is None or sum(len(b) for b in pending) != extra.embeddings.shape[0]:
            raise PersonSearchError("distillation: the model's extra outputs do not match extra_boxes()")
        t_neck = torch.cat([self.teacher_neck(img, boxes) for img, boxes in zip(images, pending)])
        return extra.embeddings, extra.probabilities, self.teacher.head(t_neck)

    def _negative_exclusion(self, labels: Tensor, box_ids: Tensor) -> Tensor:
        """``[B, B]`` pairs removed from L_tr's negatives by the two switches."""
        s = self.settings
        exclude = torch.zeros(len(labels), len(labels), dtype=torch.bool, device=labels.device)
        if s.tr_exclude_same_identity:
            exclude |= same_identity_mask(labels)
        if s.tr_exclude_own_copy:
            exclude |= box_ids[:, None] == box_ids[None, :]
        return exclude


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type=device.type, enabled=False)


def build_distiller(
    cfg: RunConfig | Mapping[str, Any],
    data: PersonSearchData,
    class_map: Mapping[int, int],
    device: torch.device | str,
) -> Distiller:
    """Load the teacher named by ``distill.teacher`` and check it fits the student (identities, dimension);
    ``cfg``: the run's typed config (or its merged dict)."""
    config = as_run_config(cfg)
    d = config.distill
    if d.teacher is None:
        raise PersonSearchError("distill.teacher is not set: there is no teacher to distil from")
    teacher, info = load_teacher(d.teacher, device)
    if dict(info.get("class_map", {})) != dict(class_map):
        raise PersonSearchError(
            f"teacher {d.teacher} was trained on another identity set ({len(info.get('class_map', {}))} "
            f"identities) than the student's training split ({len(class_map)}); train it on the same dataset"
        )
    dim = config.model.reid.embedding_dim
    if teacher.spec.embedding_dim != dim:
        raise PersonSearchError(
            f"teacher checkpoint {d.teacher} was trained with embedding size {teacher.spec.embedding_dim}, "
            f"this config has {dim} (model.reid.embedding_dim)"
        )
    return Distiller(teacher, DistillSettings.from_config(d, teacher.spec), data.train, device)

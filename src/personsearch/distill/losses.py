"""The three DKD distillation losses as pure functions of tensors (``docs/dkd.md``, method.md).

``B`` is the number of rows (boxes); student tensors carry gradients, teacher tensors are constants.

* :func:`probability_kd`: ``L_p = (1/B) sum_i KL(p_i^H || p_i^M)`` (the authors' argument order,
  ``direction="student_teacher"``), or ``KL(p_i^M || p_i^H)`` with ``direction="teacher_student"``.
* :func:`pairwise_relation_kd`: ``S = F F^T`` with every row L2-normalised, ``L_pr = ||S^H - S^M||_F^2 / B^2``.
* :func:`triplet_relation_kd`: ``L_tr = (1/B) sum_i [m + ||f_i^H - f_i^M|| - min_{j != i} ||f_i^H - f_j^M||]_+``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: ``KL(p^H || p^M)`` (as printed in the paper) and ``KL(p^M || p^H)`` (Hinton-style KD).
KL_DIRECTIONS = ("student_teacher", "teacher_student")


def kl_rows(p: Tensor, q: Tensor) -> Tensor:
    """``KL(p_i || q_i) = sum_k p_ik (log p_ik - log q_ik)`` per row, with ``0 log 0 = 0``."""
    tiny = torch.finfo(torch.float32).tiny
    p, q = p.float(), q.float()
    return (torch.xlogy(p, p) - torch.xlogy(p, q.clamp_min(tiny))).sum(dim=1)


def probability_kd(p_student: Tensor, p_teacher: Tensor, direction: str = "student_teacher") -> Tensor:
    """``L_p``: the mean over rows of the KL divergence between class-probability rows ``[B, K]``."""
    if direction not in KL_DIRECTIONS:
        raise ValueError(f"KL direction must be one of {KL_DIRECTIONS}, got {direction!r}")
    if p_student.shape != p_teacher.shape:
        raise ValueError(f"probability shapes differ: {tuple(p_student.shape)} vs {tuple(p_teacher.shape)}")
    if p_student.shape[0] == 0:
        return p_student.sum() * 0.0
    if direction == "student_teacher":
        return kl_rows(p_student, p_teacher).mean()
    return kl_rows(p_teacher, p_student).mean()


def relation_matrix(features: Tensor) -> Tensor:
    """``S = F F^T`` with every row then L2-normalised, ``[B, B]``."""
    features = features.float()
    return F.normalize(features @ features.t(), dim=1)


def pairwise_relation_kd(f_student: Tensor, f_teacher: Tensor) -> Tensor:
    """``L_pr = (1/B^2) ||S^H - S^M||_F^2`` from embeddings ``[B, d]``."""
    if f_student.shape != f_teacher.shape:
        raise ValueError(f"embedding shapes differ: {tuple(f_student.shape)} vs {tuple(f_teacher.shape)}")
    b = f_student.shape[0]
    if b == 0:
        return f_student.sum() * 0.0
    diff = relation_matrix(f_student) - relation_matrix(f_teacher)
    return diff.pow(2).sum() / (b * b)


def triplet_relation_kd(
    f_student: Tensor, f_teacher: Tensor, margin: float = 0.3, exclude: Tensor | None = None
) -> Tensor:
    """``L_tr`` from embeddings ``[B, d]``.

    Anchor: student row ``i``; positive: teacher row ``i``; negative: the closest teacher row ``j != i``.
    ``exclude`` (``[B, B]`` bool, optional) also removes pairs ``(i, j)`` from the negatives, e.g. rows of
    the same identity. A row with no admissible negative contributes 0 (the minimum over an empty set is
    taken as +inf), but still counts in the ``1/B`` average.
    """
    if f_student.shape != f_teacher.shape:
        raise ValueError(f"embedding shapes differ: {tuple(f_student.shape)} vs {tuple(f_teacher.shape)}")
    b = f_student.shape[0]
    if b == 0:
        return f_student.sum() * 0.0
    dist = torch.cdist(f_student.float(), f_teacher.float(), compute_mode="donot_use_mm_for_euclid_dist")
    positive = dist.diagonal()
    blocked = torch.eye(b, dtype=torch.bool, device=dist.device)
    if exclude is not None:
        blocked = blocked | exclude.to(device=dist.device, dtype=torch.bool)
    negative = dist.masked_fill(blocked, float("inf")).min(dim=1).values
    valid = torch.isfinite(negative)
    hinge = F.relu(margin + positive - torch.where(valid, negative, positive.detach()))
    return torch.where(valid, hinge, torch.zeros_like(hinge)).sum() / b


def same_identity_mask(labels: Tensor) -> Tensor:
    """``[B, B]``: true where rows ``i`` and ``j`` carry the same identity (labels ``< 0`` never match)."""
    labels = labels.reshape(-1)
    known = labels >= 0
    return (labels[:, None] == labels[None, :]) & known[:, None] & known[None, :]

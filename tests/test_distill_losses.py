"""DKD losses against values computed by hand on small tensors, and the signs of their gradients."""

from __future__ import annotations

import math

import pytest
import torch

from personsearch.distill.losses import (
    kl_rows,
    pairwise_relation_kd,
    probability_kd,
    relation_matrix,
    same_identity_mask,
    triplet_relation_kd,
)


def test_kl_direction_by_hand() -> None:
    p_h = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    p_m = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    h_m = [0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75), 0.9 * math.log(1.8) + 0.1 * math.log(0.2)]
    m_h = [0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5), 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(5)]
    assert float(probability_kd(p_h, p_m)) == pytest.approx(sum(h_m) / 2, rel=1e-6)
    assert float(probability_kd(p_h, p_m, "student_teacher")) == pytest.approx(sum(h_m) / 2, rel=1e-6)
    assert float(probability_kd(p_h, p_m, "teacher_student")) == pytest.approx(sum(m_h) / 2, rel=1e-6)
    with pytest.raises(ValueError):
        probability_kd(p_h, p_m, "sideways")


def test_kl_zero_probabilities_and_identity() -> None:
    p = torch.tensor([[1.0, 0.0, 0.0]])
    q = torch.tensor([[0.5, 0.5, 0.0]])
    assert float(kl_rows(p, q)[0]) == pytest.approx(math.log(2.0))
    assert float(probability_kd(q, q)) == pytest.approx(0.0, abs=1e-7)
    assert torch.isfinite(probability_kd(q, p))  # 0.5 * log(0.5 / tiny): large but finite


@pytest.mark.parametrize("direction", ["student_teacher", "teacher_student"])
def test_kl_gradient_moves_student_towards_teacher(direction: str) -> None:
    logits = torch.zeros(1, 2, requires_grad=True)  # p^H = (0.5, 0.5)
    p_m = torch.tensor([[0.25, 0.75]])
    probability_kd(torch.softmax(logits, 1), p_m, direction).backward()
    # too much mass on class 0: gradient descent lowers logit 0 and raises logit 1
    assert logits.grad[0, 0] > 0 > logits.grad[0, 1]


def test_pairwise_relation_by_hand() -> None:
    f_h = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    f_m = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    a = 1.0 / math.sqrt(1.36)  # rows of S^M = (1, 0.6) and (0.6, 1), normalised
    expected = 2 * ((1 - a) ** 2 + (0.6 * a) ** 2) / 4
    assert torch.allclose(relation_matrix(f_m), torch.tensor([[a, 0.6 * a], [0.6 * a, a]]))
    assert float(pairwise_relation_kd(f_h, f_m)) == pytest.approx(expected, rel=1e-6)
    assert float(pairwise_relation_kd(f_m, f_m)) == pytest.approx(0.0, abs=1e-7)


def test_pairwise_relation_gradient_sign() -> None:
    # student rows orthogonal, teacher rows similar: the student must make its rows more similar
    f_h = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    f_m = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    pairwise_relation_kd(f_h, f_m).backward()
    towards_other = f_h.detach()[1] - f_h.detach()[0]
    assert float(f_h.grad[0] @ towards_other) < 0


def test_triplet_relation_by_hand() -> None:
    f_h = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    f_m = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    # i=0: pos sqrt(0.8), neg sqrt(2); i=1: pos 0, neg sqrt(0.4)
    for margin in (0.3, 1.0):
        t0 = max(0.0, margin + math.sqrt(0.8) - math.sqrt(2.0))
        t1 = max(0.0, margin - math.sqrt(0.4))
        got = float(triplet_relation_kd(f_h, f_m, margin))
        assert got == pytest.approx((t0 + t1) / 2, rel=1e-6, abs=1e-7)


def test_triplet_gradient_sign() -> None:
    f_h = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    f_m = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    triplet_relation_kd(f_h, f_m, margin=1.0).backward()
    anchor = f_h.detach()[0]
    assert float(f_h.grad[0] @ (f_m[0] - anchor)) < 0  # descent moves towards the positive
    assert float(f_h.grad[0] @ (f_m[1] - anchor)) > 0  # and away from the negative


def test_triplet_same_identity_exclusion() -> None:
    f_h = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    f_m = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    labels = torch.tensor([5, 5, 7])
    mask = same_identity_mask(labels)
    assert mask.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    m = 1.0
    d01, d02, d12 = math.sqrt(0.4), math.sqrt(2.0), math.sqrt(0.8)
    plain = (max(0, m - d01) + max(0, m - d01) + max(0, m - d12)) / 3  # nearest other row
    excluded = (max(0, m - d02) + max(0, m - d12) + max(0, m - d12)) / 3  # other identity only
    assert float(triplet_relation_kd(f_h, f_m, m)) == pytest.approx(plain, rel=1e-6)
    assert float(triplet_relation_kd(f_h, f_m, m, exclude=mask)) == pytest.approx(excluded, rel=1e-6)


def test_triplet_without_any_negative_is_zero_but_differentiable() -> None:
    f_h = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    loss = triplet_relation_kd(f_h, f_h.detach().flip(0), 0.3, exclude=torch.ones(2, 2, dtype=torch.bool))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.all(f_h.grad == 0)


def test_unlabelled_rows_never_share_identity() -> None:
    assert same_identity_mask(torch.tensor([-1, -1, 3])).tolist() == [
        [False, False, False],
        [False, False, False],
        [False, False, True],
    ]


def test_empty_batches_give_zero() -> None:
    empty = torch.zeros(0, 4, requires_grad=True)
    for loss in (
        probability_kd(empty, empty.detach()),
        pairwise_relation_kd(empty, empty.detach()),
        triplet_relation_kd(empty, empty.detach()),
    ):
        assert float(loss.detach()) == 0.0
        loss.backward()

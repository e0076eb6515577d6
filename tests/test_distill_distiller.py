"""The distillation hook: FSA copies sharing ISA offsets, the switches, the teacher cache, a frozen teacher."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from personsearch.config import load_config
from personsearch.config_types import DistillConfig
from personsearch.data.annotations import ImageRecord
from personsearch.distill.distiller import Distiller, DistillSettings, flip_state
from personsearch.distill.losses import pairwise_relation_kd, probability_kd, triplet_relation_kd
from personsearch.distill.sia import SIASettings, apply_offsets, crop_resize, sample_offsets
from personsearch.distill.teacher import TeacherNet, TeacherSpec
from personsearch.models.person_search import ReIDOutput, TrainOutputs

K, D = 4, 8
SPEC = TeacherSpec(arch="resnet18", num_classes=K, embedding_dim=D, input_size=(32, 16), isa_alpha=8, isa_dp=2)
SIA = SIASettings(alpha=8.0, dp=2.0, input_size=(32, 16))
BOXES = [
    np.array([[4, 6, 30, 60], [40, 10, 70, 70], [10, 20, 20, 50]]),  # two labelled + one unlabelled
    np.array([[5, 5, 25, 45], [50, 12, 78, 66]]),
]
PIDS = [np.array([101, 102, -1]), np.array([101, 103])]
CLASS = {101: 0, 102: 1, 103: 2, 104: 3}


@pytest.fixture(scope="module")
def teacher() -> TeacherNet:
    torch.manual_seed(0)
    net = TeacherNet(SPEC)
    net.neck.running_var.fill_(0.05)  # a spread of logits, as a trained teacher has
    return net


def records() -> list[ImageRecord]:
    return [ImageRecord(f"im{i}.jpg", f"im{i}.jpg", b, p) for i, (b, p) in enumerate(zip(BOXES, PIDS))]


def batch(flip: tuple[bool, ...] = (False, False)) -> tuple[list[torch.Tensor], list[dict]]:
    g = torch.Generator().manual_seed(1)
    images, targets = [], []
    for i, (boxes, pids) in enumerate(zip(BOXES, PIDS)):
        image = torch.rand(3, 80, 90, generator=g)
        b = torch.tensor(boxes, dtype=torch.float32)
        if flip[i]:
            image = image.flip(-1)
            b = torch.stack([90 - b[:, 2], b[:, 1], 90 - b[:, 0], b[:, 3]], 1)
        labels = torch.tensor([CLASS.get(int(p), -1) for p in pids])
        images.append(image)
        targets.append({"boxes": b, "labels": labels, "image_name": f"im{i}.jpg"})
    return images, targets


def settings(**kw) -> DistillSettings:
    """The config's distill section with every weight 1 and the test's SIA range, changed by ``kw``."""
    section = {**load_config(None)["distill"], "beta_p": 1.0, "beta_pr": 1.0, "beta_tr": 1.0, "teacher_batch": 2}
    return dataclasses.replace(DistillSettings.from_config(DistillConfig.from_dict(section), SPEC), sia=SIA, **kw)


def fake_outputs(targets: list[dict], extra: list[torch.Tensor] | None, seed: int = 0) -> TrainOutputs:
    """Student outputs shaped like PersonSearchModel's (random embeddings, requiring grad)."""
    g = torch.Generator().manual_seed(seed)

    def reid(n: int, counts: list[int]) -> ReIDOutput:
        f = torch.nn.functional.normalize(torch.randn(n, D, generator=g), dim=1).requires_grad_()
        return ReIDOutput(f, torch.softmax(30 * f @ torch.eye(K, D).t(), 1), counts)

    gt = reid(sum(len(t["boxes"]) for t in targets), [len(t["boxes"]) for t in targets])
    labels = torch.cat([t["labels"] for t in targets])
    copies = None if extra is None else reid(sum(len(b) for b in extra), [len(b) for b in extra])
    return TrainOutputs(gt, labels, features={}, image_sizes=[], original_sizes=[], targets=targets, extra=copies)


def test_fsa_copies_are_the_isa_crops_of_the_same_offsets(teacher: TeacherNet) -> None:
    d = Distiller(teacher, settings(), records())
    images, targets = batch()
    torch.manual_seed(5)
    extra = d.extra_boxes(images, targets)
    torch.manual_seed(5)
    for image, target, copy in zip(images, targets, extra):
        labelled = target["boxes"][target["labels"] >= 0]
        expected = apply_offsets(labelled, sample_offsets(len(labelled)), SIA, tuple(image.shape[-2:]))
        assert torch.equal(copy, expected) and not torch.equal(copy, labelled)
    seen = []
    original = d.teacher_neck
    d.teacher_neck = lambda image, boxes: (seen.append(boxes.clone()), original(image, boxes))[1]
    d.losses(images, targets, fake_outputs(targets, extra))
    assert any(len(b) == len(extra[0]) and torch.equal(b, extra[0]) for b in seen)  # teacher crops = FSA RoIs
    assert any(torch.equal(b, extra[1]) for b in seen)


def test_no_fsa_means_no_extra_boxes(teacher: TeacherNet) -> None:
    d = Distiller(teacher, settings(fsa=False), records())
    images, targets = batch()
    assert d.extra_boxes(images, targets) is None
    losses = d.losses(images, targets, fake_outputs(targets, None))
    assert set(losses) == {"loss_kd_p", "loss_kd_pr", "loss_kd_tr"}


def _manual(d: Distiller, images, targets, out, direction: str, exclude_same: bool) -> dict[str, float]:
    """The losses recomputed from the pure functions (no FSA)."""
    mask = torch.cat([t["labels"] >= 0 for t in targets])
    crops = torch.cat([crop_resize(img, t["boxes"][t["labels"] >= 0], (32, 16)) for img, t in zip(images, targets)])
    with torch.no_grad():
        m = d.teacher.eval()(crops)
    f_h, p_h, labels = out.gt.embeddings[mask], out.gt.probabilities[mask], out.gt_labels[mask]
    exclude = (labels[:, None] == labels[None, :]) if exclude_same else None
    return {
        "loss_kd_p": float(probability_kd(p_h, m.probabilities, direction).detach()),
        "loss_kd_pr": float(pairwise_relation_kd(f_h, m.embeddings).detach()),
        "loss_kd_tr": float(triplet_relation_kd(f_h, m.embeddings, 0.3, exclude).detach()),
    }


@pytest.mark.parametrize("direction", ["student_teacher", "teacher_student"])
@pytest.mark.parametrize("exclude_same", [True, False])
def test_losses_match_the_formulas_and_switches(teacher: TeacherNet, direction: str, exclude_same: bool) -> None:
    d = Distiller(teacher, settings(fsa=False, kl_direction=direction, tr_exclude_same_identity=exclude_same))
    images, targets = batch()
    out = fake_outputs(targets, None)
    got = {k: float(v.detach()) for k, v in d.losses(images, targets, out).items()}
    want = _manual(d, images, targets, out, direction, exclude_same)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_switches_change_the_losses(teacher: TeacherNet) -> None:
    images, targets = batch()
    out = fake_outputs(targets, None)
    values = {}
    for direction in ("student_teacher", "teacher_student"):
        for same in (True, False):
            d = Distiller(teacher, settings(fsa=False, kl_direction=direction, tr_exclude_same_identity=same))
            values[direction, same] = {k: float(v.detach()) for k, v in d.losses(images, targets, out).items()}
    assert values["student_teacher", True]["loss_kd_p"] != values["teacher_student", True]["loss_kd_p"]
    # boxes 0 and 3 share identity 101: excluding it changes the hardest negative
    assert values["student_teacher", True]["loss_kd_tr"] != values["student_teacher", False]["loss_kd_tr"]


def test_weights_and_lambda(teacher: TeacherNet) -> None:
    images, targets = batch()
    out = fake_outputs(targets, None)
    base = Distiller(teacher, settings(fsa=False)).losses(images, targets, out)
    scaled = Distiller(teacher, settings(fsa=False, lam=2.0, beta_p=0.5, beta_pr=3.0, beta_tr=0.0)).losses(
        images, targets, out
    )
    assert float(scaled["loss_kd_p"].detach()) == pytest.approx(float(base["loss_kd_p"].detach()))
    assert float(scaled["loss_kd_pr"].detach()) == pytest.approx(6 * float(base["loss_kd_pr"].detach()))
    assert float(scaled["loss_kd_tr"].detach()) == 0.0


def test_fsa_adds_the_perturbed_kl_term(teacher: TeacherNet) -> None:
    d = Distiller(teacher, settings(relation_with_copies=False))
    images, targets = batch()
    torch.manual_seed(2)
    extra = d.extra_boxes(images, targets)
    out = fake_outputs(targets, extra)
    losses = d.losses(images, targets, out)
    plain = Distiller(teacher, settings(fsa=False)).losses(images, targets, out)
    crops = torch.cat([crop_resize(img, b, (32, 16)) for img, b in zip(images, extra)])
    with torch.no_grad():
        p_m = teacher.eval()(crops).probabilities
    extra_term = float(probability_kd(out.extra.probabilities, p_m).detach())
    assert float(losses["loss_kd_p"].detach()) == pytest.approx(
        float(plain["loss_kd_p"].detach()) + extra_term, rel=1e-5
    )
    assert float(losses["loss_kd_pr"].detach()) == pytest.approx(float(plain["loss_kd_pr"].detach()), rel=1e-6)


def test_gradients_reach_the_student_only(teacher: TeacherNet) -> None:
    d = Distiller(teacher, settings(), records())
    images, targets = batch()
    extra = d.extra_boxes(images, targets)
    out = fake_outputs(targets, extra)
    sum(d.losses(images, targets, out).values()).backward()
    assert out.gt.embeddings.grad is not None and out.gt.embeddings.grad.abs().sum() > 0
    assert out.extra.embeddings.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in d.teacher.parameters())
    assert not d.teacher.training


def test_cached_and_uncached_teacher_outputs_are_equal(teacher: TeacherNet) -> None:
    cached = Distiller(teacher, settings(fsa=False), records())
    fresh = Distiller(teacher, settings(fsa=False, cache=False), records())
    for flip in ((False, False), (True, False), (False, True), (True, True)):
        images, targets = batch(flip)
        for _ in range(2):
            for image, target in zip(images, targets):
                assert torch.equal(cached.teacher_gt_neck(image, target), fresh.teacher_gt_neck(image, target))
    assert len(cached.cache) == 4 and cached.cache.misses == 4 and cached.cache.hits == 12
    assert len(fresh.cache) == 0
    images, targets = batch()
    out = fake_outputs(targets, None)
    a, b = cached.losses(images, targets, out), fresh.losses(images, targets, out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_flipped_and_plain_crops_differ_and_are_cached_apart(teacher: TeacherNet) -> None:
    d = Distiller(teacher, settings(fsa=False), records())
    (plain_img, _), (plain_t, _) = batch((False, False))
    (flip_img, _), (flip_t, _) = batch((True, False))
    a = d.teacher_gt_neck(plain_img, plain_t)
    b = d.teacher_gt_neck(flip_img, flip_t)
    assert not torch.allclose(a, b)
    assert d.cache.misses == 2 and len(d.cache) == 2


def test_flip_state() -> None:
    rec = ImageRecord("x", "x", np.array([[10, 0, 30, 40]]), np.array([1]))
    assert flip_state(rec, torch.tensor([[10.0, 0, 30, 40]]), 100) is False
    assert flip_state(rec, torch.tensor([[70.0, 0, 90, 40]]), 100) is True
    assert flip_state(rec, torch.tensor([[10.0, 0, 30, 40]]), 40) is None  # symmetric: ambiguous
    assert flip_state(rec, torch.tensor([[11.0, 0, 30, 40]]), 100) is None
    assert flip_state(None, torch.tensor([[10.0, 0, 30, 40]]), 100) is None


def test_ambiguous_orientation_is_not_cached(teacher: TeacherNet) -> None:
    d = Distiller(teacher, settings(fsa=False), [])  # no records: the flip cannot be told
    images, targets = batch()
    d.teacher_gt_neck(images[0], targets[0])
    assert len(d.cache) == 0


def test_include_unlabelled(teacher: TeacherNet) -> None:
    d = Distiller(teacher, settings(include_unlabelled=True), records())
    images, targets = batch()
    extra = d.extra_boxes(images, targets)
    assert [len(b) for b in extra] == [3, 2]
    losses = d.losses(images, targets, fake_outputs(targets, extra))
    assert all(torch.isfinite(v) for v in losses.values())


def test_batch_without_labelled_boxes(teacher: TeacherNet) -> None:
    d = Distiller(teacher, settings(), records())
    images, targets = batch()
    for t in targets:
        t["labels"] = torch.full_like(t["labels"], -1)
    extra = d.extra_boxes(images, targets)
    out = fake_outputs(targets, extra)
    losses = d.losses(images, targets, out)
    assert all(float(v.detach()) == 0.0 for v in losses.values())
    sum(losses.values()).backward()

"""The crop Re-ID teacher: network, crops with ISA, PK sampling, losses, the crop-level protocol, the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from personsearch.config_types import TeacherConfig
from personsearch.distill.sia import SIASettings, crop_resize, perturb_boxes
from personsearch.distill.teacher import TeacherNet, TeacherSpec, load_teacher
from personsearch.distill.teacher_data import CropAugment, PKSampler, augment_crop, item_generator, random_erase
from personsearch.distill.teacher_train import batch_hard_triplet
from personsearch.engine.optim import build_scheduler
from personsearch.evaluation.crop_reid import crop_reid_metrics

SPEC = TeacherSpec(arch="resnet18", num_classes=5, embedding_dim=16, input_size=(64, 32))


def test_teacher_outputs_last_stride_and_bn_neck() -> None:
    torch.manual_seed(0)
    net = TeacherNet(SPEC).eval()
    assert net.body(torch.zeros(1, 3, 64, 32)).shape[-2:] == (4, 2)  # stride 16 with last stride 1
    out = net(torch.rand(3, 3, 64, 32))
    assert out.features.shape == out.neck.shape == (3, 16) and out.logits.shape == (3, 5)
    assert torch.allclose(out.embeddings.norm(dim=1), torch.ones(3))
    assert torch.allclose(out.probabilities.sum(1), torch.ones(3))
    assert not net.neck.bias.requires_grad
    strided = TeacherNet(TeacherSpec(**{**SPEC.to_dict(), "last_stride": 2, "input_size": (64, 32)}))
    assert strided.body(torch.zeros(1, 3, 64, 32)).shape[-2:] == (2, 1)
    head = net.head(out.neck)
    assert torch.equal(head.logits, out.logits) and torch.equal(head.embeddings, out.embeddings)


def test_spec_round_trip() -> None:
    assert TeacherSpec.from_dict(SPEC.to_dict()) == SPEC


def test_isa_crop_uses_the_shared_offset_sampler() -> None:
    """The teacher's ISA crop is crop_resize at perturb_boxes' box for the same random draws."""
    image = torch.rand(3, 120, 90)
    box = torch.tensor([20.0, 10.0, 60.0, 100.0])
    isa = SIASettings(alpha=16, dp=8, input_size=(64, 32))
    aug = CropAugment(input_size=(64, 32), isa=isa, hflip_prob=0.0, erase_prob=0.0)
    crop = augment_crop(image, box, aug, item_generator(0, 1, 2))
    shifted, offsets = perturb_boxes(box[None], isa, (120, 90), generator=item_generator(0, 1, 2))
    assert not torch.equal(shifted, box[None]) and offsets.abs().max() <= 1
    assert torch.equal(crop, crop_resize(image, shifted, (64, 32))[0])
    again = augment_crop(image, box, aug, item_generator(0, 1, 2))
    assert torch.equal(crop, again)
    assert not torch.equal(crop, augment_crop(image, box, aug, item_generator(0, 1, 3)))


def test_flip_and_random_erasing() -> None:
    image = torch.rand(3, 64, 32)
    box = torch.tensor([0.0, 0.0, 32.0, 64.0])
    flip = CropAugment(input_size=(64, 32), isa=None, hflip_prob=1.0, erase_prob=0.0)
    assert torch.allclose(augment_crop(image, box, flip, item_generator(0, 0, 0)), image.flip(-1), atol=1e-6)
    aug = CropAugment(input_size=(64, 32), erase_prob=1.0, erase_area=(0.1, 0.2), erase_value=(7.0, 7.0, 7.0))
    erased = random_erase(image, aug, item_generator(0, 0, 0))
    changed = (erased != image).any(0)
    assert 0.05 * 64 * 32 <= int(changed.sum()) <= 0.25 * 64 * 32
    assert torch.all(erased[:, changed] == 7.0)
    none = CropAugment(erase_prob=0.0)
    assert torch.equal(random_erase(image, none, item_generator(0, 0, 0)), image)


def test_pk_sampler() -> None:
    labels = [0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4]
    sampler = PKSampler(labels, p=2, k=3, seed=1)
    assert sampler.num_batches() == 2 and sampler.batch_size() == 6 and len(sampler) == 12
    items = list(sampler)
    assert [slot for _, _, slot in items] == list(range(12))
    for b in range(2):
        batch = [labels[i] for i, _, _ in items[b * 6 : (b + 1) * 6]]
        assert len(set(batch)) == 2 and all(batch.count(x) == 3 for x in set(batch))
    assert items == list(sampler)
    sampler.set_epoch(1)
    assert [i for i, _, _ in sampler] != [i for i, _, _ in items]
    small = PKSampler([0, 1], p=4, k=2)
    assert small.batch_size() == 4 and small.num_batches() == 1


def test_batch_hard_triplet_by_hand() -> None:
    f = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # hardest positive / negative: a0 (3, 1), a1 (3, sqrt(10)), a2 (4, 1), a3 (4, 5)
    terms = [0.5 + 3 - 1, max(0.0, 0.5 + 3 - math.sqrt(10)), 0.5 + 4 - 1, 0.0]
    assert float(batch_hard_triplet(f, labels, 0.5)) == pytest.approx(sum(terms) / 4, rel=1e-6)


def test_lr_schedule() -> None:
    """The teacher's schedule is the engine's, stepped once per epoch with the warm-up counted in epochs."""
    t = TeacherConfig(warmup_epochs=2, warmup_factor=0.1, lr_steps=(4, 6), lr_gamma=0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, t, steps_per_epoch=1)
    lrs = []
    for _ in range(8):
        lrs.append(round(optimizer.param_groups[0]["lr"], 4))
        optimizer.step()
        scheduler.step()
    assert lrs == [0.1, 0.55, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]


def test_crop_protocol_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    g = torch.tensor([[0.8, 0.6], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    g_pids = np.array([1, -1, 2, 1])
    g_images = ["a", "b", "c", "q0"]
    metrics = crop_reid_metrics(q, np.array([1, 2, 9]), ["q0", "q1", "q2"], g, g_pids, g_images)
    # query 0: own image "q0" excluded; ranking g1 (1.0, unlabelled), g0 (0.8, pos), g2 -> AP 1/2, top-1 0
    # query 1: g2 first -> AP 1, top-1 1; query 2: no positive, skipped
    assert metrics == {"mAP": pytest.approx(0.75), "top1": 0.5, "queries": 2}


@pytest.mark.slow
def test_train_teacher_command(tmp_path: Path) -> None:
    from personsearch.cli import main
    from personsearch.data.synthetic import generate_dataset

    root = tmp_path / "data"
    generate_dataset("cuhk-sysu", root, "tiny", 0)
    out = tmp_path / "teacher"
    code = main(
        [
            "train-teacher",
            "--no-progress",
            f"dataset.root={root}",
            f"output_dir={out}",
            "teacher.arch=resnet18",
            "teacher.pretrained=none",
            "teacher.input_size=[64, 32]",
            "teacher.isa_dp=2",
            "teacher.p=4",
            "teacher.k=2",
            "teacher.epochs=1",
            "teacher.max_iters_per_epoch=2",
            "teacher.workers=0",
            "teacher.device=cpu",
            "model.reid.embedding_dim=32",
        ]
    )
    assert code == 0
    net, info = load_teacher(out / "teacher.pth")
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert net.spec.embedding_dim == 32 and net.spec.isa_alpha == 16 and net.spec.isa_dp == 2
    assert len(info["class_map"]) == net.spec.num_classes == 12
    assert set(info["metrics"]) == {"mAP", "top1", "queries"} and info["metrics"]["queries"] > 0
    assert (out / "log.txt").read_text().count("eval: mAP=") == 1

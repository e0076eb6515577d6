"""Distillation inside student training, on the tiny synthetic dataset: it runs, the teacher stays frozen
and unchanged, a mismatched teacher is refused, and optimising the student lowers the KD losses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from personsearch.config import load_config
from personsearch.engine.checkpoint import save_checkpoint
from personsearch.errors import PersonSearchError

from handmade import TINY_MODEL

TINY_STUDENT = [*TINY_MODEL, "model.reid.embedding_dim=32"]


def write_teacher(path: Path, class_map: dict[int, int], dim: int = 32) -> Path:
    from personsearch.distill.teacher import TeacherNet, TeacherSpec, teacher_checkpoint_state

    torch.manual_seed(0)
    spec = TeacherSpec("resnet18", len(class_map), dim, input_size=(64, 32), isa_alpha=16, isa_dp=2)
    net = TeacherNet(spec)
    net.neck.running_var.fill_(0.05)
    return save_checkpoint(teacher_checkpoint_state(net, class_map, {"metrics": None}), path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from personsearch.data import load_dataset
    from personsearch.data.synthetic import generate_dataset

    base = tmp_path_factory.mktemp("distill")
    root = base / "data"
    generate_dataset("cuhk-sysu", root, "tiny", 0)
    class_map = load_dataset("cuhk-sysu", root).train_class_map()
    return root, write_teacher(base / "teacher.pth", class_map)


def config(root: Path, out: Path, teacher: Path, *extra: str) -> dict:
    return load_config(
        None,
        [f"dataset.root={root}", f"output_dir={out}", "train.batch_size=2", "train.workers=0",
         "train.eval_period=-1", "train.tensorboard=false", f"distill.teacher={teacher}", *TINY_STUDENT, *extra],
    )  # fmt: skip


@pytest.mark.slow
def test_distilled_training_runs_and_leaves_the_teacher_unchanged(tiny, tmp_path: Path) -> None:
    from personsearch.distill import student_trainer
    from personsearch.distill.teacher import load_teacher

    root, teacher_path = tiny
    cfg = config(root, tmp_path / "run", teacher_path, "train.epochs=1", "train.max_iters_per_epoch=2")
    trainer = student_trainer(cfg, progress=False)
    (distiller,) = trainer.contributors
    before = {k: v.clone() for k, v in load_teacher(teacher_path)[0].state_dict().items()}
    trainer.train()
    teacher = distiller.teacher
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats included
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in teacher.parameters())
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "loss_kd_p=" in log and "loss_kd_pr=" in log and "loss_kd_tr=" in log
    assert len(distiller.cache) > 0
    saved = torch.load(tmp_path / "run" / "last.pth", map_location="cpu", weights_only=True)
    assert not any(k.startswith("teacher") for k in saved["model"])


def test_mismatched_teacher_is_refused(tiny, tmp_path: Path) -> None:
    from personsearch.data import load_dataset
    from personsearch.distill import build_distiller

    root, teacher_path = tiny
    data = load_dataset("cuhk-sysu", root)
    class_map = data.train_class_map()
    other = write_teacher(tmp_path / "other.pth", {k + 1000: v for k, v in class_map.items()})
    with pytest.raises(PersonSearchError, match="identity set"):
        build_distiller(config(root, tmp_path, other), data, class_map, "cpu")
    wide = write_teacher(tmp_path / "wide.pth", class_map, dim=64)
    with pytest.raises(PersonSearchError, match="embedding size"):
        build_distiller(config(root, tmp_path, wide), data, class_map, "cpu")
    assert build_distiller(config(root, tmp_path, teacher_path), data, class_map, "cpu").settings.sia.dp == 2


@pytest.mark.slow
def test_optimising_the_student_lowers_the_distillation_losses(tiny, tmp_path: Path) -> None:
    """A fixed two-image batch, fixed FSA draws and a fixed (random) OIM table: a few gradient steps on each
    KD term alone, through the real model and hook, lower that term."""
    from personsearch.distill import student_trainer
    from personsearch.engine.trainer import move_targets

    root, teacher_path = tiny
    cfg = config(root, tmp_path / "run", teacher_path, "input.hflip_prob=0", "model.oim.momentum=1.0")
    trainer = student_trainer(cfg, progress=False)
    model, (distiller,) = trainer.model, trainer.contributors
    labelled = [i for i, r in enumerate(trainer.data.train) if (r.pids >= 0).sum() >= 2][:2]
    images, targets = zip(*(trainer.dataset[(i, 0)] for i in labelled))
    images, targets = list(images), move_targets(targets, trainer.device)
    with torch.no_grad():
        model.oim.lut.copy_(F.normalize(torch.randn_like(model.oim.lut), dim=1))
    start = {k: v.clone() for k, v in model.reid_head.state_dict().items()}
    model.train()
    for key, beta in (("loss_kd_p", "beta_p"), ("loss_kd_pr", "beta_pr"), ("loss_kd_tr", "beta_tr")):
        model.reid_head.load_state_dict(start)
        weights = {b: float(b == beta) for b in ("beta_p", "beta_pr", "beta_tr")}
        distiller.settings = dataclasses.replace(distiller.settings, **weights)
        params = [p for p in model.reid_head.parameters() if p.requires_grad]
        history = []
        for _ in range(3):
            torch.manual_seed(0)  # the same perturbed copies every step
            extra = distiller.extra_boxes(images, targets)
            _, outputs = model(images, targets, extra_boxes=extra, return_outputs=True)
            loss = distiller.losses(images, targets, outputs)[key]
            history.append(float(loss.detach()))
            grads = torch.autograd.grad(loss, params)
            norm = torch.sqrt(sum((g * g).sum() for g in grads))
            with torch.no_grad():  # a short normalised gradient step (the KL term is very sharp: scalar 30)
                for p, g in zip(params, grads):
                    p.sub_(2e-3 * g / norm)
        assert history[2] < history[1] < history[0], (key, history)


def test_kd_without_backbone_gradients_moves_the_reid_head_only(tiny, tmp_path: Path) -> None:
    """distill.backbone_grad=0: the trainer asks the model for detached Re-ID outputs and the KD terms'
    gradients stop at the Re-ID head; with the default (1) they reach the shared backbone."""
    from personsearch.distill import student_trainer
    from personsearch.engine.trainer import move_targets

    root, teacher_path = tiny
    for backbone_grad in (0, 1):
        cfg = config(root, tmp_path / f"run{backbone_grad}", teacher_path, f"distill.backbone_grad={backbone_grad}")
        trainer = student_trainer(cfg, progress=False)
        model, (distiller,) = trainer.model, trainer.contributors
        assert distiller.reid_backbone_grad == backbone_grad
        images, targets = zip(*(trainer.dataset[(i, 0)] for i in range(2)))
        model.train()
        losses = trainer.forward_losses(list(images), move_targets(targets, trainer.device))
        kd = losses["loss_kd_p"] + losses["loss_kd_pr"] + losses["loss_kd_tr"]
        backbone = [p for p in model.backbone.parameters() if p.requires_grad]
        head = [p for p in model.reid_head.parameters() if p.requires_grad]
        grads = torch.autograd.grad(kd, backbone + head, allow_unused=True)
        reached = [g is not None and bool(g.abs().sum() > 0) for g in grads]
        assert any(reached[len(backbone) :])  # the Re-ID head learns from KD either way
        assert any(reached[: len(backbone)]) is bool(backbone_grad)

"""Trainer extension points: hooks see every step, a loss contributor adds terms and scales the model's
losses, and a config naming a teacher without the distillation contributor is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from personsearch.engine.hooks import LossContributor, TrainHook
from personsearch.errors import PersonSearchError

from handmade import tiny_config, write_cuhk


@pytest.fixture(scope="module")
def handmade_cuhk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cuhk(tmp_path_factory.mktemp("hooks") / "CUHK-SYSU")


class Recorder(TrainHook):
    def __init__(self) -> None:
        self.events: list[str] = []

    def before_train(self, trainer) -> None:
        self.events.append("before_train")

    def before_step(self, trainer) -> None:
        self.events.append("before_step")

    def after_step(self, trainer, logs) -> None:
        self.events.append(f"after_step {trainer.state.global_step} {'loss' in logs}")

    def after_train(self, trainer) -> None:
        self.events.append("after_train")


class Doubler(LossContributor):
    """Doubles loss_oim and adds a constant term that depends on the model's outputs."""

    name = "doubler"

    def __init__(self) -> None:
        self.seen_gt = 0

    def loss_factors(self) -> dict[str, float]:
        return {"loss_oim": 2.0}

    def losses(self, images, targets, outputs) -> dict[str, torch.Tensor]:
        self.seen_gt += len(outputs.gt.embeddings)
        assert outputs.extra is None and len(outputs.gt_labels) == len(outputs.gt.embeddings)
        return {"loss_extra": outputs.gt.embeddings.sum() * 0.0 + 0.5}


def test_hooks_and_contributor(handmade_cuhk: Path, tmp_path: Path) -> None:
    from personsearch.engine.trainer import Trainer, move_targets

    cfg = tiny_config(handmade_cuhk, tmp_path / "run", "train.epochs=1", "train.max_iters_per_epoch=2")
    recorder, doubler = Recorder(), Doubler()
    trainer = Trainer(cfg, progress=False, hooks=[recorder])
    trainer.register(doubler)
    assert trainer.contributors == [doubler]
    images, targets = next(iter(trainer._loader()))
    targets = move_targets(targets, trainer.device)
    torch.manual_seed(0)
    plain = trainer.ddp_model(list(images), targets)
    torch.manual_seed(0)
    scaled = trainer.forward_losses(list(images), targets)
    assert float(scaled["loss_extra"].detach()) == 0.5
    assert set(scaled) == {*plain, "loss_extra"}
    trainer.train()
    assert recorder.events[0] == "before_train" and recorder.events[-1] == "after_train"
    assert recorder.events[1:-1] == ["before_step", "after_step 1 True", "before_step", "after_step 2 True"]
    assert doubler.seen_gt > 0
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "loss_extra=0.5000" in log


def test_loss_factor_scales_the_models_loss(handmade_cuhk: Path, tmp_path: Path) -> None:
    """The same batch and random state: loss_oim with the factor-2 contributor is twice the plain one."""
    from personsearch.engine.trainer import Trainer, move_targets

    trainer = Trainer(tiny_config(handmade_cuhk, tmp_path / "run"), progress=False)
    images, targets = next(iter(trainer._loader()))
    images, targets = list(images), move_targets(targets, trainer.device)
    trainer.model.train()
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}  # the OIM memory and BN statistics
    torch.manual_seed(0)
    plain = trainer.forward_losses(images, targets)
    trainer.register(Doubler())
    trainer.model.load_state_dict(start)
    torch.manual_seed(0)
    doubled = trainer.forward_losses(images, targets)
    assert float(doubled["loss_oim"]) == pytest.approx(2 * float(plain["loss_oim"]), rel=1e-5)
    assert float(doubled["loss_box_cls"]) == pytest.approx(float(plain["loss_box_cls"]), rel=1e-5)


def test_teacher_without_the_distillation_contributor_is_refused(handmade_cuhk: Path, tmp_path: Path) -> None:
    from personsearch.engine.trainer import Trainer

    cfg = tiny_config(handmade_cuhk, tmp_path / "run", f"distill.teacher={tmp_path / 'teacher.pth'}")
    with pytest.raises(PersonSearchError, match="student_trainer"):
        Trainer(cfg, progress=False).train()


def test_the_engine_imports_nothing_from_distill() -> None:
    import ast

    engine = Path(__file__).resolve().parents[1] / "src" / "personsearch" / "engine"
    for path in engine.glob("*.py"):
        if path.name == "commands.py":  # the command layer builds the trainer with its contributors
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            assert not any(n.startswith("personsearch.distill") for n in names), path.name

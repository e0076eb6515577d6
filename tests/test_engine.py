"""Training engine: config, schedule, sampler, atomic checkpoints and exact resume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from personsearch.config import load_config, parse_override
from personsearch.data.torch_dataset import EpochSampler, flip_decision, hflip_boxes
from personsearch.engine.checkpoint import link_checkpoint, load_checkpoint, save_checkpoint
from personsearch.engine.optim import lr_factor
from personsearch.errors import ConfigError, PersonSearchError

from handmade import tiny_config, write_cuhk


def test_config_overrides_and_errors(tmp_path):
    cfg = load_config(None, ["train.lr=0.02", "train.lr_steps=[3, 5]", "name=abc"])
    assert cfg["train"]["lr"] == 0.02 and cfg["train"]["lr_steps"] == [3, 5]
    assert cfg["output_dir"] == "runs/abc"
    assert parse_override("a.b=null") == {"a": {"b": None}}
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.lrr'"):
        load_config(None, ["train.lrr=1"])
    with pytest.raises(ConfigError, match=r"unknown (model )?config key"):
        load_config(None, ["model.rpn.nms=1"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(None, ["train.lr"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)


def test_shipped_configs_load():
    for path in sorted(Path(__file__).parents[1].glob("configs/*.yaml")):
        assert load_config(path)["model"]["reid"]["embedding_dim"] > 0


def test_lr_schedule_warmup_then_steps():
    f = [lr_factor(i, 10, 10, 0.001, [2], 0.1) for i in (0, 5, 10, 19, 20, 35)]
    assert f[0] == pytest.approx(0.001)
    assert f[1] == pytest.approx(0.5005)
    assert f[2] == f[3] == pytest.approx(1.0)
    assert f[4] == f[5] == pytest.approx(0.1)


def test_sampler_shards_and_resumes():
    full = EpochSampler(10, seed=3)
    full.set_epoch(2)
    order = full.indices()
    assert sorted(order) == list(range(10))
    ranks = [EpochSampler(10, seed=3, rank=r, world_size=3) for r in range(3)]
    for s in ranks:
        s.set_epoch(2)
    assert all(len(s) == 4 for s in ranks)
    assert set().union(*(s.indices() for s in ranks)) == set(range(10))
    full.set_epoch(2, start=4)
    assert [i for i, _ in full] == order[4:]
    other = EpochSampler(10, seed=3)
    other.set_epoch(3)
    assert other.indices() != order


def test_flip_is_reproducible_and_boxes_mirror():
    decisions = [flip_decision(0, 1, i, 0.5) for i in range(200)]
    assert decisions == [flip_decision(0, 1, i, 0.5) for i in range(200)]
    assert 60 < sum(decisions) < 140
    import numpy as np

    assert hflip_boxes(np.array([[10.0, 5, 30, 50]]), 100).tolist() == [[70.0, 5, 90, 50]]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    save_checkpoint({"model": {"w": torch.ones(3)}}, path)

    def killed(obj, handle):
        handle.write(b"partial bytes")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"model": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.pth"]  # no temporary file left behind


def test_full_disk_is_a_one_line_error_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    from personsearch.errors import PersonSearchError

    path = tmp_path / "last.pth"
    save_checkpoint({"model": {"w": torch.ones(3)}}, path)

    def disk_full(obj, handle):  # what torch does: the OSError surfaces as a RuntimeError
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from None

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(PersonSearchError, match=r"last\.pth .*No space left on device.*previous one is unchanged"):
        save_checkpoint({"model": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.pth"]


def test_last_checkpoint_is_the_epoch_file_once_on_disk(tmp_path):
    epoch = save_checkpoint({"model": {"w": torch.ones(3)}}, tmp_path / "epoch_001.pth")
    last = link_checkpoint(epoch, tmp_path / "last.pth")
    assert os.path.samefile(epoch, last)  # a hard link: no second copy of the bytes
    save_checkpoint({"model": {"w": torch.zeros(3)}}, last)  # a later write replaces the name only
    assert torch.equal(load_checkpoint(epoch)["model"]["w"], torch.ones(3))
    assert torch.equal(load_checkpoint(last)["model"]["w"], torch.zeros(3))
    assert sorted(os.listdir(tmp_path)) == ["epoch_001.pth", "last.pth"]


def test_last_checkpoint_is_copied_where_links_are_impossible(tmp_path, monkeypatch):
    epoch = save_checkpoint({"model": {"w": torch.ones(3)}}, tmp_path / "epoch_001.pth")

    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    last = link_checkpoint(epoch, tmp_path / "last.pth")
    assert not os.path.samefile(epoch, last)
    assert torch.equal(load_checkpoint(last)["model"]["w"], torch.ones(3))
    assert sorted(os.listdir(tmp_path)) == ["epoch_001.pth", "last.pth"]


def test_damaged_checkpoint_is_reported(tmp_path):
    path = tmp_path / "bad.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(PersonSearchError, match="not a readable checkpoint"):
        load_checkpoint(path)


@pytest.fixture(scope="module")
def handmade_cuhk(tmp_path_factory):
    return write_cuhk(tmp_path_factory.mktemp("engine") / "CUHK-SYSU")


def _final_state(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "last.pth")


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["train_state"] == b["train_state"]


def test_resume_ends_where_an_uninterrupted_run_ends(handmade_cuhk, tmp_path, monkeypatch):
    from personsearch.engine.trainer import Trainer

    common = ("train.epochs=2", "train.checkpoint_iters=1", "input.hflip_prob=0.5")
    straight = Trainer(tiny_config(handmade_cuhk, tmp_path / "a", *common), progress=False)
    straight.train()

    # the same run, killed after its third step (inside epoch 2), then resumed from its folder
    calls = {"n": 0}
    original = Trainer.train_step

    def dies_after_three(self, images, targets):
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        calls["n"] += 1
        return original(self, images, targets)

    monkeypatch.setattr(Trainer, "train_step", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_config(handmade_cuhk, tmp_path / "b", *common), progress=False).train()
    monkeypatch.undo()
    interrupted = _final_state(tmp_path / "b")
    assert interrupted["train_state"] == {"epoch": 1, "iteration": 1, "global_step": 3}
    Trainer({}, resume=tmp_path / "b", progress=False).train()

    _assert_same_weights(_final_state(tmp_path / "a"), _final_state(tmp_path / "b"))
    assert (tmp_path / "b" / "config.yaml").is_file()

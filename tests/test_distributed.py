"""Two-process DistributedDataParallel training on the CPU (gloo), as torchrun would start it."""

from __future__ import annotations

from pathlib import Path

import torch

from handmade import run_ranks, tiny_config, write_cuhk


def _worker(rank: int, cfg: dict, out: str) -> None:
    from personsearch.engine.trainer import Trainer

    trainer = Trainer(cfg, progress=False)
    trainer.train()
    torch.save({k: v.clone() for k, v in trainer.model.state_dict().items()}, Path(out) / f"rank{rank}.pt")


def test_two_ranks_keep_identical_weights_and_oim_memory(tmp_path):
    root = write_cuhk(tmp_path / "CUHK-SYSU")
    cfg = tiny_config(root, tmp_path / "run", "train.epochs=1", "train.batch_size=1", "train.device=cpu")
    run_ranks(_worker, cfg, str(tmp_path))
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    lut = [k for k in a if k.endswith("lut")]
    assert lut, "the OIM lookup table must be part of the state dict"
    assert a[lut[0]].abs().sum() > 0, "the lookup table was updated"
    # DDP keeps the weights equal, the all-gather in the OIM loss keeps the memory equal; trainable
    # BatchNorm running statistics stay per-rank on the CPU (no SyncBatchNorm with gloo)
    compared = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert any(k.startswith("oim.") for k in compared)
    for key in compared:
        assert torch.equal(a[key], b[key]), key
    # rank 0 wrote the checkpoint and the merged config, once
    assert (tmp_path / "run" / "last.pth").is_file() and (tmp_path / "run" / "config.yaml").is_file()
    assert "x2" in (tmp_path / "run" / "log.txt").read_text()

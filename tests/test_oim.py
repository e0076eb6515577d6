"""OIM loss: memory updates, queue wrap-around, NaN guard, fp32 under autocast, multi-process sync."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from personsearch.models.oim import OIMLoss


def _unit(*values: float) -> torch.Tensor:
    return F.normalize(torch.tensor(values, dtype=torch.float32), dim=0)


def test_lut_update_by_hand() -> None:
    oim = OIMLoss(num_features=2, num_classes=3, queue_size=2, scalar=30.0, momentum=0.5)
    oim.lut[1] = torch.tensor([0.0, 1.0])
    feats = torch.stack([_unit(1.0, 0.0), _unit(1.0, 0.0)])
    oim.update_memory(feats, torch.tensor([1, 1]))
    # first: normalize(0.5*[0,1] + 0.5*[1,0]) = [s, s], s = 1/sqrt(2)
    s = 1 / math.sqrt(2)
    # second: normalize(0.5*[s, s] + 0.5*[1, 0])
    expected = F.normalize(torch.tensor([0.5 * s + 0.5, 0.5 * s]), dim=0)
    torch.testing.assert_close(oim.lut[1], expected)
    assert torch.all(oim.lut[0] == 0) and torch.all(oim.lut[2] == 0)
    assert int(oim.cq_ptr) == 0


def test_queue_wraps_around() -> None:
    oim = OIMLoss(num_features=2, num_classes=1, queue_size=3)
    rows = [_unit(float(i + 1), 1.0) for i in range(7)]
    unl = torch.tensor([-1, -1])
    oim.update_memory(torch.stack(rows[0:2]), unl)
    assert int(oim.cq_ptr) == 2
    oim.update_memory(torch.stack(rows[2:4]), unl)  # slots 2, 0
    assert int(oim.cq_ptr) == 1
    torch.testing.assert_close(oim.cq, torch.stack([rows[3], rows[1], rows[2]]))
    oim.update_memory(torch.stack(rows[2:7]), torch.full((5,), -1))  # more than Q: newest 3 survive
    assert int(oim.cq_ptr) == (1 + 5) % 3
    torch.testing.assert_close(oim.cq, torch.stack([rows[4], rows[5], rows[6]]))


def test_loss_matches_cross_entropy_and_updates_only_in_training() -> None:
    torch.manual_seed(0)
    oim = OIMLoss(num_features=4, num_classes=3, queue_size=2)
    oim.lut.copy_(F.normalize(torch.randn(3, 4), dim=1))
    oim.cq.copy_(F.normalize(torch.randn(2, 4), dim=1))
    feats = F.normalize(torch.randn(3, 4), dim=1).requires_grad_()
    labels = torch.tensor([2, -1, 0])
    memory = torch.cat([oim.lut, oim.cq]).clone()
    expected = F.cross_entropy(30.0 * feats[[0, 2]] @ memory.t(), labels[[0, 2]])
    oim.eval()
    torch.testing.assert_close(oim(feats, labels), expected)
    torch.testing.assert_close(torch.cat([oim.lut, oim.cq]), memory)
    oim.train()
    loss = oim(feats, labels)
    loss.backward()  # memory changed in place after the loss: the graph must not depend on it
    assert feats.grad is not None and torch.isfinite(feats.grad).all()
    assert not torch.equal(torch.cat([oim.lut, oim.cq]), memory)


def test_all_ignored_gives_zero_loss_with_graph() -> None:
    oim = OIMLoss(num_features=4, num_classes=3, queue_size=2)
    for n in (3, 0):
        feats = torch.randn(n, 4, requires_grad=True)
        loss = oim(feats, torch.full((n,), -1, dtype=torch.long))
        assert torch.isfinite(loss) and float(loss.detach()) == 0.0
        loss.backward()
        assert feats.grad is not None and torch.all(feats.grad == 0)


def test_fp32_under_bfloat16_autocast() -> None:
    oim = OIMLoss(num_features=8, num_classes=4, queue_size=3)
    oim.lut.copy_(F.normalize(torch.randn(4, 8), dim=1))
    linear = torch.nn.Linear(8, 8)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        feats = F.normalize(linear(torch.randn(5, 8)), dim=1)
        assert feats.dtype == torch.bfloat16
        loss = oim(feats, torch.tensor([0, 1, -1, 3, -1]))
        probs = oim.class_probabilities(feats)
    assert loss.dtype == torch.float32 and probs.dtype == torch.float32
    assert oim.lut.dtype == torch.float32 and oim.cq.dtype == torch.float32
    torch.testing.assert_close(probs.sum(1), torch.ones(5))
    loss.backward()
    assert linear.weight.grad is not None and torch.isfinite(linear.weight.grad).all()


def test_memory_is_in_state_dict() -> None:
    state = OIMLoss(num_features=4, num_classes=3, queue_size=2).state_dict()
    assert state["lut"].shape == (3, 4) and state["cq"].shape == (2, 4) and "cq_ptr" in state


def test_label_out_of_range_is_an_error() -> None:
    oim = OIMLoss(num_features=2, num_classes=2, queue_size=1)
    with pytest.raises(ValueError):
        oim.update_memory(torch.ones(1, 2), torch.tensor([5]))


# ---- two-process sync --------------------------------------------------------------------------
def _rank_inputs(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Different features per rank, and an unequal number of rows (3 on rank 0, 5 on rank 1)."""
    gen = torch.Generator().manual_seed(100 + rank)
    n = 3 + 2 * rank
    feats = F.normalize(torch.randn(n, 6, generator=gen), dim=1)
    labels = torch.tensor([0, -1, 2, 1, -1][:n]) if rank else torch.tensor([1, -1, 0])
    return feats, labels


def _sync_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        oim = OIMLoss(num_features=6, num_classes=3, queue_size=4)
        for _ in range(2):  # two steps of 3 unlabelled rows: the queue of 4 wraps
            feats, labels = _rank_inputs(rank)
            feats.requires_grad_()
            oim(feats, labels).backward()
        torch.save(oim.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_memory_stays_identical(tmp_path: Path) -> None:
    mp.spawn(_sync_worker, args=(2, str(tmp_path / "rdzv"), str(tmp_path)), nprocs=2, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for key in ("lut", "cq", "cq_ptr"):
        torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)
    # Same result as one process seeing rank 0's rows then rank 1's rows.
    single = OIMLoss(num_features=6, num_classes=3, queue_size=4)
    for _ in range(2):
        inputs = [_rank_inputs(r) for r in range(2)]
        single.update_memory(torch.cat([f for f, _ in inputs]), torch.cat([y for _, y in inputs]))
    torch.testing.assert_close(states[0]["lut"], single.lut)
    torch.testing.assert_close(states[0]["cq"], single.cq)
    assert int(states[0]["cq_ptr"]) == int(single.cq_ptr)

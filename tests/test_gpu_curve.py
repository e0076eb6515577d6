"""The GPU learning-curve script's bookkeeping (benchmarks/gpu_curve.py): commands, checkpoints, the table."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_curve.py"


@pytest.fixture(scope="module")
def curve():
    spec = importlib.util.spec_from_file_location("gpu_curve_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_students_train_from_scratch_and_only_the_dkd_one_has_a_teacher(curve, tmp_path):
    args = curve.parse_args(["--work", str(tmp_path), "--out", str(tmp_path / "out"), "--student", "train.lr=0.001"])
    baseline = curve.student_command(args, "baseline", tmp_path / "b", tmp_path / "t.pth")
    dkd = curve.student_command(args, "rebalanced", tmp_path / "d", tmp_path / "t.pth")
    assert set(curve.FROM_SCRATCH) <= set(baseline) and set(curve.FROM_SCRATCH) <= set(dkd)
    assert not any(a.startswith("distill.") for a in baseline)
    assert f"distill.teacher={tmp_path / 't.pth'}" in dkd and "distill.beta_pr=30" in dkd
    assert dkd[-1] == "train.lr=0.001"  # user overrides come last, so they win
    assert f"dataset.root={tmp_path / 'CUHK-SYSU'}" in baseline


def test_epoch_checkpoints_ignore_other_files(curve, tmp_path):
    for name in ("epoch_001.pth", "epoch_012.pth", "epoch_x.pth", "last.pth", "eval_001.pth"):
        (tmp_path / name).write_bytes(b"")
    assert sorted(curve.epoch_checkpoints(tmp_path)) == [1, 12]


class Finished:
    returncode = 0

    def poll(self):
        return 0


def test_the_evaluator_takes_the_newest_checkpoint_and_records_its_figures(curve, tmp_path, monkeypatch):
    args = curve.parse_args(["--work", str(tmp_path), "--out", str(tmp_path / "out")])
    run_dir = tmp_path / "student_baseline"
    run_dir.mkdir()
    for epoch in (1, 2, 3):
        (run_dir / f"epoch_{epoch:03d}.pth").write_bytes(b"w")
    launched: list[list[str]] = []
    monkeypatch.setattr(curve, "launch", lambda cmd, log: launched.append(cmd) or Finished())
    c = curve.Curve("baseline", run_dir)
    curve.poll_evaluator(args, c, 10.0)
    assert str(run_dir / "eval_003.pth") in launched[0]  # a hard link the trainer's clean-up cannot remove
    assert (run_dir / "eval_003.pth").samefile(run_dir / "epoch_003.pth")
    report = tmp_path / "baseline_epoch003.json"
    sweep = [{"gallery_size": 100, "search": {"mAP": 0.25, "top1": 0.3}}]
    report.write_text(json.dumps({"sweep": sweep, "detection": {"ap": 0.8}, "gt_box_reid": {"mAP": 0.4}}))
    curve.poll_evaluator(args, c, 20.0)
    assert c.points[3] == {"mAP": 0.25, "top1": 0.3, "det_ap": 0.8, "gt_map": 0.4, "elapsed_s": 20}
    assert str(run_dir / "eval_002.pth") in launched[1]  # then the newest one left


def test_table_lists_points_in_iteration_order_and_skips_failures(curve):
    point = {"mAP": 0.2, "top1": 0.25, "gt_map": 0.3, "det_ap": 0.7}
    text = curve.table({"baseline": {"10": point, "2": point, "3": {"failed": True}}}, {**point, "mAP": 0.5}, 100)
    lines = text.splitlines()
    assert [line.split(" | ")[1] for line in lines[2:4]] == ["200", "1000"]
    assert len(lines) == 5 and lines[-1].startswith("| two-step") and "| 50.0 |" in lines[-1]


def test_help_runs():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    assert "--teacher-seconds" in out

"""The ablation script's summary arithmetic (benchmarks/ablation.py): paired gains and the two-step gap share."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ablation.py"


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(baseline: float, dkd: float, two_step: float) -> dict:
    return {"baseline": {"mAP": baseline}, "rebalanced": {"mAP": dkd}, "two_step": {"mAP": two_step}}


def test_gap_share_is_a_ratio_of_mean_gains_with_per_seed_shares(ablation):
    per_seed = {0: rows(0.40, 0.44, 0.45), 1: rows(0.30, 0.31, 0.33)}  # gains 4 and 1, gaps 5 and 3
    assert ablation.gap_share(per_seed, "rebalanced") == "62% (80%, 33%)"  # (4 + 1) / (5 + 3)
    assert ablation.paired_gain(per_seed, "rebalanced") == "2.5 ± 2.1 (2/2)"


def test_gap_share_without_a_gap_or_for_other_rows(ablation):
    assert ablation.gap_share({0: rows(0.40, 0.44, 0.38)}, "rebalanced") == "– (no gap)"
    assert ablation.gap_share({0: rows(0.40, 0.44, 0.45)}, "two_step") == "–"
    assert ablation.gap_share({0: {"baseline": {"mAP": 0.4}}}, "rebalanced") == "–"  # the row has not run


def test_floors_and_the_teacher_have_no_paired_difference(ablation):
    per_seed = {0: {**rows(0.40, 0.44, 0.45), "colour": {"mAP": 0.1}, "teacher": {"mAP": 0.5}}}
    assert ablation.paired_gain(per_seed, "colour") == "–"
    assert ablation.paired_gain(per_seed, "teacher") == "–"
    assert ablation.paired_gain(per_seed, "two_step") == "5.0 (1/1)"


def test_metrics_of_a_prw_report_are_the_cross_camera_figures(ablation, tmp_path):
    import json

    report = tmp_path / "prw.json"
    search = {"mAP": 0.3, "top1": 0.4}
    report.write_text(
        json.dumps(
            {
                "same_camera": {"search": {"mAP": 0.5, "top1": 0.6}, "detection": {"ap": 0.8}},
                "cross_camera": {"search": search},
                "gt_box_reid": {"mAP": 0.2},
            }
        )
    )
    assert ablation.test_metrics(report, 100) == {**search, "det_ap": 0.8, "gt_map": 0.2}


def test_table_names_the_protocol_and_marks_rows_with_fewer_seeds(ablation):
    full = {"mAP": 0.4, "top1": 0.5, "det_ap": 0.8, "gt_map": 0.45, "seconds": 10.0}
    per_seed = {100: {"baseline": full, "rebalanced": full}, 101: {"baseline": full}}
    text = ablation.table(per_seed, "PRW: full gallery, cross-camera", ["baseline", "rebalanced"])
    header, _, baseline, dkd = text.splitlines()
    assert header.startswith("| row (PRW: full gallery, cross-camera, seeds 100, 101) |")
    assert baseline.startswith("| baseline | 40.0 ± 0.0 |")
    assert "[1 seeds]" in dkd and "| 0.0 (0/1) |" in dkd


def test_noise_row_trains_the_baseline_with_another_seed(ablation, tmp_path, monkeypatch):
    commands = {}

    def record(work, name, cmd, collect=False):
        commands[name] = cmd
        raise ablation.StepMissing(name)  # run nothing

    monkeypatch.setattr(ablation, "step", record)
    args = ablation.argparse.Namespace(
        work=tmp_path,
        root=tmp_path / "data",
        dataset="cuhk-sysu",
        collect=False,
        preset="small",
        rows=["baseline", "baseline_reseed"],
        student_config=Path("s.yaml"),
        teacher_config=Path("t.yaml"),
        student=[],
        teacher=[],
        gallery_size=100,
    )
    assert ablation.ablate_seed(args, 3) == {}
    seeds = {name: [a for a in cmd if a.startswith("train.seed=")] for name, cmd in commands.items()}
    assert seeds == {"student_baseline": ["train.seed=3"], "student_baseline_reseed": ["train.seed=1003"]}
    assert not any(a.startswith("distill.") for a in commands["student_baseline_reseed"])

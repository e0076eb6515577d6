"""Learning curves of the paper-size student on a GPU (issue 10, item 5): baseline and full DKD, search mAP
and Re-ID alone (ground-truth boxes) against training iterations, within a fixed wall-clock budget.

Timeline (seconds from the start, all bounded, so the whole run fits a GPU lease):
1. the synthetic dataset (``--preset``, CUHK-SYSU format; skipped when ``--root`` names one);
2. the ISA teacher (``--teacher-config``, stopped after ``--teacher-seconds``; ``teacher.pth`` is rewritten
   after every epoch, so the last finished epoch is the teacher) and, at the same time, the baseline student;
3. the full-DKD student (tuned β, the ablation's ``rebalanced`` row) as soon as the teacher is there;
4. both students are stopped ``--final-seconds`` before the end; meanwhile one evaluator per student tests its
   newest unevaluated checkpoint (an epoch is ``--iters-per-point`` iterations), so each curve gets as many
   points as evaluation keeps up with; the final phase tests both last checkpoints and the two-step pipeline
   (the baseline's last detections re-embedded by the teacher).

The student is ``--student-config`` (default: the paper-size ResNet-50 C4 at 900 x 1500) trained from random
weights (no ImageNet weights on a bare GPU machine), with the changes the CPU benchmark found necessary from
scratch (FROM_SCRATCH below: trainable BatchNorm and stem, AdamW, the cosine classifier instead of OIM's
stale memory), in fp32 (bf16 autocast was slower at these batch sizes on the H200, README) and at a constant
learning rate after the warm-up (the run is stopped, not scheduled): the curve shows how fast each variant
learns, not a finished schedule.
Writes ``OUT/curve.json`` (every point), ``OUT/curve.md`` (the table) and ``OUT/logs.tgz`` (logs, reports).

Usage (on the GPU machine; runs the package from src/):
  PYTHONPATH=src python benchmarks/gpu_curve.py --work /tmp/curve --out OUT [--seconds 480] [--teacher-seconds 120]
      [--final-seconds 100] [--iters-per-point 200] [--preset medium] [--root DATA]
      [--student KEY=VALUE ...] [--teacher KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import CLI, ROOT, STUDENT_ROWS, test_metrics
from personsearch.engine.checkpoint import link_checkpoint

# from-random-weights changes of the paper recipe (docs/student_reid.md: frozen BN / stem are meaningless
# without ImageNet weights; OIM's memory is stale while features move fast; AdamW trains faster from scratch)
FROM_SCRATCH = [
    "model.backbone.pretrained=none",
    "model.backbone.frozen_bn=false",
    "model.backbone.freeze_stem=false",
    "model.oim.classifier_weight=1.0",
    "model.oim.memory_weight=0.0",
    "train.optimizer=adamw",
    "train.lr=0.0005",
    "train.weight_decay=0.0001",
    "train.warmup_iters=100",
    "train.warmup_factor=0.01",
    "train.lr_steps=[]",
]
TEACHER_FROM_SCRATCH = ["teacher.pretrained=none", "teacher.warmup_epochs=2", "teacher.lr_steps=[]"]
VARIANTS = ("baseline", "rebalanced")  # the curves: row keys of benchmarks/ablation.py


@dataclass
class Curve:
    """One student's training process, its evaluator and its measured points."""

    key: str
    run_dir: Path
    train: subprocess.Popen | None = None
    started: float = 0.0
    evaluating: tuple[int, subprocess.Popen, Path] | None = None
    points: dict[int, dict] = field(default_factory=dict)  # epoch -> figures


def launch(cmd: list[str], log: Path) -> subprocess.Popen:
    """Start a sub-process with its output in ``log``."""
    handle = open(log, "w")  # noqa: SIM115 (the child owns it)
    return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)


def stop(proc: subprocess.Popen | None) -> None:
    """Stop a sub-process (SIGTERM, then SIGKILL) and wait for it."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def epoch_checkpoints(run_dir: Path) -> dict[int, Path]:
    """The run's epoch checkpoints present now, by epoch."""
    found = {}
    for path in run_dir.glob("epoch_*.pth"):
        try:
            found[int(path.stem.split("_")[1])] = path
        except (IndexError, ValueError):
            continue
    return found


def test_command(args: argparse.Namespace, checkpoint: Path, report: Path, *extra: str) -> list[str]:
    cmd = [*CLI, "test", "--no-progress", "--checkpoint", str(checkpoint), "--dataset", "cuhk-sysu"]
    cmd += ["--root", str(args.data), "--workers", str(args.eval_workers), "--batch-size", "4", "--gt-reid"]
    return [*cmd, "--json", str(report), *extra]


def poll_evaluator(args: argparse.Namespace, curve: Curve, elapsed: float) -> None:
    """Collect a finished evaluation; start one of the newest checkpoint not yet evaluated."""
    if curve.evaluating is not None:
        epoch, proc, report = curve.evaluating
        if proc.poll() is None:
            return
        curve.evaluating = None
        if proc.returncode == 0:
            curve.points[epoch] = {**test_metrics(report, args.gallery_size), "elapsed_s": round(elapsed)}
            print(f"[{elapsed:.0f} s] {curve.key} epoch {epoch}: {curve.points[epoch]}", flush=True)
        else:
            print(f"[{elapsed:.0f} s] {curve.key} epoch {epoch}: evaluation failed, see {report}.log", flush=True)
            curve.points[epoch] = {"failed": True}
    todo = {e: p for e, p in epoch_checkpoints(curve.run_dir).items() if e not in curve.points}
    if todo:
        epoch = max(todo)
        copy = curve.run_dir / f"eval_{epoch:03d}.pth"  # a hard link: the trainer may delete the original
        if not copy.exists():
            link_checkpoint(todo[epoch], copy)
        report = args.work / f"{curve.key}_epoch{epoch:03d}.json"
        curve.evaluating = (epoch, launch(test_command(args, copy, report), Path(f"{report}.log")), report)


def student_command(args: argparse.Namespace, key: str, run_dir: Path, teacher: Path | None) -> list[str]:
    distill = STUDENT_ROWS[key][2]
    cmd = [*CLI, "train", "--no-progress", "--config", str(args.student_config), "dataset.name=cuhk-sysu"]
    cmd += [f"dataset.root={args.data}", f"output_dir={run_dir}", "train.eval_period=-1", "train.epochs=10000"]
    cmd += [f"train.max_iters_per_epoch={args.iters_per_point}", "train.keep_checkpoints=4"]
    cmd += ["train.workers=4", "train.tensorboard=false", *FROM_SCRATCH]
    if distill is not None:
        cmd += [f"distill.teacher={teacher}", *distill]
    return cmd + args.student


def teacher_command(args: argparse.Namespace, run_dir: Path) -> list[str]:
    cmd = [*CLI, "train-teacher", "--no-progress", "--config", str(args.teacher_config), "dataset.name=cuhk-sysu"]
    cmd += [f"dataset.root={args.data}", f"output_dir={run_dir}", "teacher.epochs=10000", "teacher.eval_period=-1"]
    return [*cmd, "teacher.isa=true", "teacher.workers=6", *TEACHER_FROM_SCRATCH, *args.teacher]


def table(curves: dict[str, dict], two_step: dict | None, iters_per_point: int) -> str:
    """The curves as one markdown table (a row per evaluated checkpoint)."""
    lines = [
        "| student | iterations | search mAP (%) | top-1 (%) | Re-ID alone, GT boxes: mAP (%) | detection AP (%) |",
        "|---|---|---|---|---|---|",
    ]
    for key, points in curves.items():
        for epoch in sorted(points, key=int):
            p = points[epoch]
            if p.get("failed"):
                continue
            figures = [100 * p["mAP"], 100 * p["top1"], 100 * p.get("gt_map", float("nan")), 100 * p["det_ap"]]
            cells = " | ".join(f"{v:.1f}" for v in figures)
            lines.append(f"| {STUDENT_ROWS[key][0]} | {int(epoch) * iters_per_point} | {cells} |")
    if two_step is not None:
        p = two_step
        lines.append(
            f"| two-step (baseline's last detections + teacher) | – | {100 * p['mAP']:.1f} | {100 * p['top1']:.1f} "
            f"| {100 * p.get('gt_map', float('nan')):.1f} | {100 * p['det_ap']:.1f} |"
        )
    return "\n".join(lines)


def run_curves(args: argparse.Namespace) -> tuple[dict[str, Curve], dict | None]:
    """The timeline of the module docstring; returns the curves and the two-step point."""
    start = time.monotonic()
    elapsed = lambda: time.monotonic() - start  # noqa: E731
    if args.root is None:
        synth = [*CLI, "synth", "--format", "cuhk-sysu", "--out", str(args.data), "--preset", args.preset]
        if not (args.data / "annotation").is_dir():
            subprocess.run([*synth, "--seed", str(args.seed)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"[{elapsed():.0f} s] dataset ready: {args.data}", flush=True)
    teacher_dir = args.work / "teacher_isa"
    teacher = launch(teacher_command(args, teacher_dir), args.work / "teacher.log")
    curves = {key: Curve(key, args.work / f"student_{key}") for key in VARIANTS}
    teacher_file = teacher_dir / "teacher.pth"
    students_stop = args.seconds - args.final_seconds
    while elapsed() < students_stop:
        if teacher is not None and (elapsed() > args.teacher_seconds or teacher.poll() is not None):
            stop(teacher)
            teacher = None
            if not teacher_file.is_file():
                raise SystemExit(f"the teacher finished no epoch in {args.teacher_seconds} s: see teacher.log")
            print(f"[{elapsed():.0f} s] teacher stopped", flush=True)
        for curve in curves.values():
            ready = curve.key == "baseline" or teacher is None
            if curve.train is None and ready:
                cmd = student_command(args, curve.key, curve.run_dir, teacher_file)
                curve.train, curve.started = launch(cmd, args.work / f"{curve.key}.log"), elapsed()
                print(f"[{elapsed():.0f} s] {curve.key} student started", flush=True)
            poll_evaluator(args, curve, elapsed())
        time.sleep(2)
    for curve in curves.values():
        stop(curve.train)
    print(f"[{elapsed():.0f} s] students stopped", flush=True)
    return curves, final_phase(args, curves, elapsed)


def final_phase(args: argparse.Namespace, curves: dict[str, Curve], elapsed) -> dict | None:
    """Finish the running evaluations and test the last checkpoints and two-step, until the budget ends."""
    baseline_last = curves["baseline"].run_dir / "last.pth"
    teacher_file = args.work / "teacher_isa" / "teacher.pth"
    report = args.work / "two_step.json"
    two_step = None
    if baseline_last.is_file() and teacher_file.is_file():
        cmd = test_command(args, baseline_last, report, "--two-step", "--teacher", str(teacher_file))
        two_step = launch(cmd, Path(f"{report}.log"))
    while elapsed() < args.seconds:
        for curve in curves.values():
            poll_evaluator(args, curve, elapsed())
        busy = any(c.evaluating for c in curves.values()) or (two_step is not None and two_step.poll() is None)
        if not busy:
            break
        time.sleep(2)
    for curve in curves.values():
        stop(curve.evaluating[1] if curve.evaluating else None)
    if two_step is None:
        return None
    stop(two_step)
    return test_metrics(report, args.gallery_size) if two_step.returncode == 0 else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="work folder (dataset, runs, reports)")
    p.add_argument("--out", type=Path, required=True, help="folder for curve.json, curve.md, logs.tgz")
    p.add_argument("--seconds", type=float, default=480, help="the whole budget, wall-clock (default 480)")
    p.add_argument("--teacher-seconds", type=float, default=120, help="when the teacher is stopped (default 120)")
    p.add_argument("--final-seconds", type=float, default=100, help="budget kept for the last tests (default 100)")
    p.add_argument("--iters-per-point", type=int, default=200, help="iterations per epoch = per curve point")
    p.add_argument("--eval-workers", type=int, default=4, help="image-loading processes per test (default 4)")
    p.add_argument("--preset", default="medium", help="synthetic preset (default medium)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--root", type=Path, help="an existing CUHK-SYSU-format dataset instead of a synthetic one")
    p.add_argument("--gallery-size", type=int, default=100, help="gallery size of the search figures")
    p.add_argument("--student-config", type=Path, default=ROOT / "configs" / "cuhk_sysu.yaml")
    p.add_argument("--teacher-config", type=Path, default=ROOT / "configs" / "teacher_cuhk_sysu.yaml")
    p.add_argument("--student", nargs="*", default=[], metavar="KEY=VALUE", help="more student overrides")
    p.add_argument("--teacher", nargs="*", default=[], metavar="KEY=VALUE", help="more teacher overrides")
    args = p.parse_args(argv)
    args.work = args.work.resolve()
    args.data = (args.root or args.work / "CUHK-SYSU").resolve()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    curves, two_step = run_curves(args)
    points = {key: {str(e): p for e, p in sorted(c.points.items())} for key, c in curves.items()}
    record = {
        "iters_per_point": args.iters_per_point,
        "curves": points,
        "two_step": two_step,
        "student_overrides": FROM_SCRATCH + args.student,
        "teacher_overrides": TEACHER_FROM_SCRATCH + args.teacher,
        "started_s": {key: round(c.started) for key, c in curves.items()},
    }
    (args.out / "curve.json").write_text(json.dumps(record, indent=2))
    text = table(points, two_step, args.iters_per_point)
    (args.out / "curve.md").write_text(text + "\n")
    print(text)
    with tarfile.open(args.out / "logs.tgz", "w:gz") as tar:
        for path in sorted(args.work.rglob("*")):
            if path.suffix in (".log", ".json", ".jsonl", ".txt", ".yaml") and "CUHK-SYSU" not in path.parts:
                tar.add(path, arcname=str(path.relative_to(args.work)))


if __name__ == "__main__":
    main()

"""DKD ablation on the synthetic benchmark: baseline, +L_p, +L_p+L_pr, +L_p+L_pr+L_tr, +SIA (full DKD with
every β = 1), full DKD with the tuned β (the defaults), without its L_p, with its KD gradients stopped at
the Re-ID head and with half of them into the backbone, the baseline with another training seed (run-to-run
noise), two-step and the teacher alone, over several seeds;
prints a markdown table (mean ± std over seeds, each row's paired mAP difference to the baseline, and the
share of the two-step gap (two-step − baseline) each student row closes).

Per seed S: the synthetic dataset (``--dataset`` format, ``--preset``, seed S) is generated, or ``--root``
names an existing one (your own, another generator's) used for every seed, the seeds then varying the training
only; the training-free floors (random features, a colour histogram of the ground-truth boxes) are measured on
it; two teachers are trained with ``train-teacher`` (one without image-level SIA for the KD rows, one with ISA
for the SIA rows and the two-step pipeline, as in the paper); up to ten students are trained with ``train``
(the same config, ``train.seed=S``, only the ``distill.*`` keys differ; the noise row uses ``S + 1000``) and
tested with ``test``; the two-step row re-embeds the baseline student's detections with the ISA teacher
(``test --two-step``); the teacher-alone row is the ISA teacher's crop-level Re-ID on ground-truth boxes (its
own protocol, see docs/dkd.md, not comparable to the search rows; the "Re-ID alone" column applies that
protocol to every row's embeddings with ``test --gt-reid``, which separates the embeddings from the detector).
Every step runs as a ``personsearch`` sub-process; finished steps are skipped when the script is re-run with
the same ``--work`` folder and a student killed mid-run continues from its last checkpoint (``train
--resume``), so an interrupted ablation resumes (the step's time is then that of the resumed part), and seeds
can run as parallel processes sharing one ``--work`` (one ``--seeds S`` each, then ``--collect`` over all of
them).

Usage:
  python benchmarks/ablation.py --work /tmp/ablation --seeds 0 1 [--preset small] [--gallery-size 100]
      [--student-config configs/synthetic_cpu.yaml] [--teacher-config configs/teacher_synthetic_cpu.yaml]
      [--dataset cuhk-sysu|prw] [--root EXISTING_DATASET]
      [--student KEY=VALUE ...] [--teacher KEY=VALUE ...] [--rows ROW ...] [--collect]
      [--markdown table.md] [--json rows.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_FOLDERS = {"cuhk-sysu": "CUHK-SYSU", "prw": "PRW"}  # the generated dataset's folder in a seed's folder
CLI = [sys.executable, "-m", "personsearch.cli"]


def kd(beta_p: float, beta_pr: float, beta_tr: float, fsa: bool) -> list[str]:
    """The ``distill.*`` overrides of one distilled row."""
    weights = {"beta_p": beta_p, "beta_pr": beta_pr, "beta_tr": beta_tr}
    return [*(f"distill.{k}={v}" for k, v in weights.items()), f"distill.fsa={str(fsa).lower()}"]


# row key -> (row name, teacher kind, distill overrides of the student; None: no teacher)
STUDENT_ROWS: dict[str, tuple[str, str, list[str] | None]] = {
    "baseline": ("baseline", "plain", None),
    "p": ("+L_p", "plain", kd(1, 0, 0, fsa=False)),
    "p_pr": ("+L_p+L_pr", "plain", kd(1, 1, 0, fsa=False)),
    "p_pr_tr": ("+L_p+L_pr+L_tr", "plain", kd(1, 1, 1, fsa=False)),
    "sia": ("+SIA (full DKD, all β = 1)", "isa", kd(1, 1, 1, fsa=True)),
    # the weights rebalanced for the loss scales measured in training (L_p 2-5, L_pr 0.04-0.07, L_tr ~0.3,
    # L_oim 6-8): the config defaults since this ablation (spelled out so the row stays what it is)
    "rebalanced": ("full DKD, tuned β (β_p 0.25, β_pr 30, β_tr 1)", "isa", kd(0.25, 30, 1, fsa=True)),
    # the tuned row without L_p: how much of its gain (and of its detection cost) is the probability term's
    "tuned_no_p": ("full DKD, tuned β without L_p (β_p 0)", "isa", kd(0, 30, 1, fsa=True)),
    # the tuned row with the KD gradients stopped at the Re-ID head: is DKD's detection cost the KD terms
    # pulling the backbone the detector shares?
    "head_only": (
        "full DKD, tuned β, KD into the Re-ID head only",
        "isa",
        [*kd(0.25, 30, 1, fsa=True), "distill.backbone_grad=0"],
    ),
    # between the two: half of the KD terms' gradient reaches the shared backbone
    "half_grad": (
        "full DKD, tuned β, half the KD gradient into the backbone",
        "isa",
        [*kd(0.25, 30, 1, fsa=True), "distill.backbone_grad=0.5"],
    ),
    # the baseline again with another training seed on the same data: its paired difference to the baseline
    # is run-to-run training noise, the yardstick for every other row's difference
    "baseline_reseed": ("baseline, another training seed (training noise)", "plain", None),
}
# rows trained with train.seed = S + offset instead of S
TRAIN_SEED_OFFSET = {"baseline_reseed": 1000}
# training-free floors (benchmarks/student_reid.py floors, the ground-truth boxes as detections):
# row key -> (row name, key of its figures in the floors report)
FLOOR_ROWS = {
    "random": ("random features (floor; GT boxes)", "random"),
    "colour": ("colour histogram, HSV 8x4x4 (floor; GT boxes)", "colour_histogram"),
}
OTHER_ROWS = {
    "two_step": "two-step",
    "teacher": "teacher alone (GT boxes)",
    **{key: name for key, (name, _) in FLOOR_ROWS.items()},
}
NOT_PAIRED = ("baseline", "teacher", *FLOOR_ROWS)  # rows without a paired difference to the baseline
ROW_KEYS = [*STUDENT_ROWS, *OTHER_ROWS]
ROW_NAMES = {**{k: v[0] for k, v in STUDENT_ROWS.items()}, **OTHER_ROWS}


class StepMissing(Exception):
    """A step has not run (``--collect`` never runs one)."""


def run(cmd: list[str], log: Path) -> float:
    """Run a command, output to ``log``; return its wall-clock seconds; raise with the log tail on failure."""
    start = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-15:]
        raise SystemExit(f"step failed ({' '.join(cmd[3:6])} ...), see {log}:\n" + "\n".join(tail))
    return seconds


def step(work: Path, name: str, cmd: list[str], collect: bool = False) -> dict:
    """Run one named step once; its record (wall-clock seconds) is kept in ``name.step.json``."""
    record_path = work / f"{name}.step.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    if collect:
        raise StepMissing(name)
    print(f"  {work.name}: {name} ...", flush=True)
    seconds = run(cmd, work / f"{name}.log")
    record = {"seconds": seconds}
    tmp = record_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(record_path)
    print(f"  {work.name}: {name}: {seconds:.0f} s", flush=True)
    return record


def test_metrics(report: Path, gallery_size: int) -> dict:
    """Search mAP/top-1 at ``gallery_size`` (the first size present otherwise) and the detection AP; a PRW
    report (no gallery sizes): the cross-camera search figures."""
    result = json.loads(report.read_text())
    if "sweep" in result:
        sweep = result["sweep"]
        rows = [r for r in sweep if r["gallery_size"] == gallery_size] or sweep[:1]
        out = {**rows[0]["search"], "det_ap": result["detection"]["ap"]}
    else:
        out = {**result["cross_camera"]["search"], "det_ap": result["same_camera"]["detection"]["ap"]}
    if "gt_box_reid" in result:
        out["gt_map"] = result["gt_box_reid"]["mAP"]
    return out


def ablate_seed(args: argparse.Namespace, seed: int) -> dict[str, dict]:
    """Every row of ``args.rows`` for one seed (steps already done are re-used); missing rows are left out."""
    work = args.work / f"seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    data = args.root or work / DATA_FOLDERS[args.dataset]
    collect = args.collect
    out: dict[str, dict] = {}

    def teacher(kind: str) -> tuple[Path, dict]:
        run_dir = work / f"teacher_{kind}"
        record = step(
            work,
            f"teacher_{kind}",
            [
                *CLI,
                "train-teacher",
                "--no-progress",
                "--config",
                str(args.teacher_config),
                f"dataset.name={args.dataset}",
                f"dataset.root={data}",
                f"output_dir={run_dir}",
                f"teacher.seed={seed}",
                f"teacher.isa={'true' if kind == 'isa' else 'false'}",
                *args.teacher,
            ],
            collect,
        )
        return run_dir / "teacher.pth", record

    def test(name: str, checkpoint: Path, *extra: str) -> Path:
        """``personsearch test`` of a student checkpoint (search, detection, Re-ID alone) into ``name.json``."""
        report = work / f"{name}.json"
        cmd = [*CLI, "test", "--no-progress", "--checkpoint", str(checkpoint), "--dataset", args.dataset]
        cmd += ["--root", str(data), "--workers", "0", "--gt-reid", "--json", str(report), *extra]
        step(work, name, cmd, collect)
        return report

    def student(key: str) -> dict:
        _, teacher_kind, distill = STUDENT_ROWS[key]
        overrides = [] if distill is None else [f"distill.teacher={teacher(teacher_kind)[0]}", *distill]
        run_dir = work / f"student_{key}"
        cmd = [*CLI, "train", "--no-progress", "--config", str(args.student_config), f"dataset.name={args.dataset}"]
        train_seed = seed + TRAIN_SEED_OFFSET.get(key, 0)
        cmd += [f"dataset.root={data}", f"output_dir={run_dir}", f"train.seed={train_seed}", "train.eval_period=-1"]
        if (run_dir / "last.pth").is_file():  # unfinished unless its step is recorded (step() then runs nothing)
            cmd = [*CLI, "train", "--no-progress", "--resume", str(run_dir)]
        else:
            cmd += [*overrides, *args.student]
        record = step(work, f"student_{key}", cmd, collect)
        report = test(f"test_{key}", run_dir / "last.pth")
        return {**test_metrics(report, args.gallery_size), "seconds": record["seconds"]}

    def two_step() -> dict:
        baseline = student("baseline")
        isa_teacher, isa_record = teacher("isa")
        report = test(
            "test_two_step", work / "student_baseline" / "last.pth", "--two-step", "--teacher", str(isa_teacher)
        )
        return {**test_metrics(report, args.gallery_size), "seconds": baseline["seconds"] + isa_record["seconds"]}

    def teacher_alone() -> dict:
        path, record = teacher("isa")
        final = json.loads((path.parent / "metrics.jsonl").read_text().splitlines()[-1])
        return {"mAP": final["mAP"], "top1": final["top1"], "gt_map": final["mAP"], "seconds": record["seconds"]}

    def floor(key: str) -> dict:
        report = work / "floors.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "student_reid.py"), "floors", "--root", str(data)]
        step(work, "floors", [*cmd, "--dataset", args.dataset, "--json", str(report)], collect)
        figures = json.loads(report.read_text())[FLOOR_ROWS[key][1]]
        search = figures["search_gt_boxes"]
        row = search.get(str(args.gallery_size)) or next(iter(search.values()))
        return {"mAP": row["mAP"], "top1": row["top1"], "gt_map": figures["gt_reid"]["mAP"], "seconds": 0.0}

    if args.root is None:
        synth = [*CLI, "synth", "--format", args.dataset, "--out", str(data), "--preset", args.preset]
        try:
            step(work, "dataset", [*synth, "--seed", str(seed)], collect)
        except StepMissing:
            return out
    for key in args.rows:
        try:
            if key in STUDENT_ROWS:
                out[key] = student(key)
            elif key == "two_step":
                out[key] = two_step()
            elif key == "teacher":
                out[key] = teacher_alone()
            else:
                out[key] = floor(key)
        except StepMissing:
            continue
    if not collect:
        (work / "rows.json").write_text(json.dumps(out, indent=2))
    return out


def fmt(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    mean = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def paired_gain(per_seed: dict[int, dict[str, dict]], key: str) -> str:
    """Mean ± std over seeds of (row mAP - baseline mAP) on the same seed, and on how many seeds it is > 0."""
    diffs = [r[key]["mAP"] - r["baseline"]["mAP"] for r in per_seed.values() if key in r and "baseline" in r]
    if key in NOT_PAIRED or not diffs:
        return "–"
    return f"{fmt(diffs)} ({sum(d > 0 for d in diffs)}/{len(diffs)})"


def gap_share(per_seed: dict[int, dict[str, dict]], key: str) -> str:
    """The share of the two-step gap a student row closes: mean(row - baseline) / mean(two-step - baseline)
    over the seeds that have all three (a ratio of means, steadier than a mean of per-seed ratios when a
    seed's gap is small), followed by the per-seed shares."""
    if key not in STUDENT_ROWS or key == "baseline":
        return "–"
    seeds = [s for s, r in per_seed.items() if {key, "baseline", "two_step"} <= r.keys()]
    gains = [per_seed[s][key]["mAP"] - per_seed[s]["baseline"]["mAP"] for s in seeds]
    gaps = [per_seed[s]["two_step"]["mAP"] - per_seed[s]["baseline"]["mAP"] for s in seeds]
    if not seeds or statistics.fmean(gaps) <= 0:
        return "– (no gap)" if seeds else "–"
    each = ", ".join(f"{g / d:.0%}" if d > 0 else "n/a" for g, d in zip(gains, gaps))
    return f"{statistics.fmean(gains) / statistics.fmean(gaps):.0%} ({each})"


def table(per_seed: dict[int, dict[str, dict]], gallery: str, rows: list[str]) -> str:
    """Markdown table, mean ± std over the seeds that finished each row (their count in brackets if fewer);
    ``gallery`` says which search protocol the figures are (e.g. ``gallery 100``)."""
    seeds = sorted(per_seed)
    header = f"row ({gallery}, seeds {', '.join(map(str, seeds))})"
    lines = [
        f"| {header} | mAP (%) | top-1 (%) | mAP − baseline, same seed (seeds above) "
        "| share of the two-step gap closed (per seed) | detection AP (%) "
        "| Re-ID alone, GT boxes: mAP (%) | training time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in rows:
        vals = [per_seed[s][key] for s in seeds if key in per_seed[s]]
        if not vals:
            continue
        name = ROW_NAMES[key] + ("" if len(vals) == len(seeds) else f" [{len(vals)} seeds]")
        det = [v["det_ap"] for v in vals if "det_ap" in v]
        gt = [v["gt_map"] for v in vals if "gt_map" in v]
        lines.append(
            f"| {name} | {fmt([v['mAP'] for v in vals])} | {fmt([v['top1'] for v in vals])} | "
            f"{paired_gain(per_seed, key)} | {gap_share(per_seed, key)} | "
            f"{fmt(det) if det else '–'} | {fmt(gt) if gt else '–'} | "
            f"{fmt([v['seconds'] for v in vals], scale=1.0, digits=0)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--work", type=Path, required=True, help="working folder (re-use it to resume)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--preset", default="small", help="synthetic preset of the generated datasets")
    parser.add_argument("--dataset", default="cuhk-sysu", choices=sorted(DATA_FOLDERS), help="dataset format")
    parser.add_argument(
        "--root",
        type=Path,
        help="an existing dataset (of --dataset's format) used for every seed instead of generating one per seed; "
        "the seeds then vary the training only",
    )
    parser.add_argument("--gallery-size", type=int, default=100)
    parser.add_argument("--student-config", type=Path, default=ROOT / "configs" / "synthetic_cpu.yaml")
    parser.add_argument("--teacher-config", type=Path, default=ROOT / "configs" / "teacher_synthetic_cpu.yaml")
    parser.add_argument("--student", nargs="*", default=[], metavar="KEY=VALUE", help="extra student overrides")
    parser.add_argument("--teacher", nargs="*", default=[], metavar="KEY=VALUE", help="extra teacher overrides")
    parser.add_argument(
        "--rows",
        nargs="+",
        default=ROW_KEYS,
        choices=ROW_KEYS,
        metavar="ROW",
        help=f"rows to run, in this order (default: all; choices: {' '.join(ROW_KEYS)})",
    )
    parser.add_argument(
        "--collect", action="store_true", help="run nothing: tabulate the steps already finished in --work"
    )
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--json", type=Path, help="also write every seed's row figures to this file")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"ablation in {args.work}: seeds {args.seeds}, preset {args.preset}, {os.cpu_count()} CPU cores", flush=True)
    per_seed = {}
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        per_seed[seed] = ablate_seed(args, seed)
    gallery = "PRW: full gallery, cross-camera" if args.dataset == "prw" else f"gallery {args.gallery_size}"
    text = table(per_seed, gallery, args.rows)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps({str(seed): rows for seed, rows in per_seed.items()}, indent=1) + "\n")


if __name__ == "__main__":
    main()

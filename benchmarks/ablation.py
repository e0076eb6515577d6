"""DKD ablation on the synthetic benchmark: baseline, +L_p, +L_p+L_pr, +L_p+L_pr+L_tr, +SIA (full DKD),
two-step and the teacher alone, over several seeds; prints a markdown table (mean ± std over seeds).

Per seed S: the synthetic CUHK-SYSU-format dataset (``--preset``, seed S) is generated; two teachers are
trained with ``train-teacher`` (one without image-level SIA for the KD rows, one with ISA for the SIA row
and the two-step pipeline, as in the paper); five students are trained with ``train`` (the same config,
``train.seed=S``, only the ``distill.*`` keys differ) and tested with ``test``; the two-step row re-embeds
the baseline student's detections with the ISA teacher (``test --two-step``); the teacher-alone row is the
ISA teacher's crop-level Re-ID on ground-truth boxes (its own protocol, see docs/dkd.md, not comparable to
the search rows). Every step runs as a ``personsearch`` sub-process; finished steps are skipped when the
script is re-run with the same ``--work`` folder, so an interrupted ablation resumes.

Usage:
  python benchmarks/ablation.py --work /tmp/ablation --seeds 0 1 [--preset small] [--gallery-size 100]
      [--student-config configs/synthetic_cpu.yaml] [--teacher-config configs/teacher_synthetic_cpu.yaml]
      [--student KEY=VALUE ...] [--teacher KEY=VALUE ...] [--markdown table.md]
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
CLI = [sys.executable, "-m", "personsearch.cli"]

# row name -> distill overrides of the student (None: no teacher)
STUDENT_ROWS: dict[str, tuple[str, list[str] | None]] = {
    "baseline": ("plain", None),
    "+L_p": ("plain", ["distill.beta_p=1", "distill.beta_pr=0", "distill.beta_tr=0", "distill.fsa=false"]),
    "+L_p+L_pr": ("plain", ["distill.beta_p=1", "distill.beta_pr=1", "distill.beta_tr=0", "distill.fsa=false"]),
    "+L_p+L_pr+L_tr": ("plain", ["distill.beta_p=1", "distill.beta_pr=1", "distill.beta_tr=1", "distill.fsa=false"]),
    "+SIA (full DKD)": ("isa", ["distill.beta_p=1", "distill.beta_pr=1", "distill.beta_tr=1", "distill.fsa=true"]),
}
ROW_ORDER = [*STUDENT_ROWS, "two-step", "teacher alone (GT boxes)"]


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


def step(work: Path, name: str, cmd: list[str]) -> dict:
    """Run one named step once; its record (seconds + whatever the step wrote) is kept in ``name.json``."""
    record_path = work / f"{name}.step.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    print(f"  {name} ...", flush=True)
    seconds = run(cmd, work / f"{name}.log")
    record = {"seconds": seconds}
    record_path.write_text(json.dumps(record))
    print(f"  {name}: {seconds:.0f} s", flush=True)
    return record


def search_metrics(report: Path, gallery_size: int) -> dict:
    sweep = json.loads(report.read_text())["sweep"]
    rows = [r for r in sweep if r["gallery_size"] == gallery_size] or sweep[:1]
    return rows[0]["search"]


def ablate_seed(args: argparse.Namespace, seed: int) -> dict[str, dict]:
    work = args.work / f"seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "CUHK-SYSU"
    step(work, "dataset", [*CLI, "synth", "--format", "cuhk-sysu", "--out", str(data), "--preset", args.preset,
                           "--seed", str(seed)])
    teachers = {}
    out: dict[str, dict] = {}
    for kind, isa in (("plain", "false"), ("isa", "true")):
        run_dir = work / f"teacher_{kind}"
        record = step(work, f"teacher_{kind}", [
            *CLI, "train-teacher", "--no-progress", "--config", str(args.teacher_config), f"dataset.root={data}",
            f"output_dir={run_dir}", f"teacher.seed={seed}", f"teacher.isa={isa}", *args.teacher,
        ])
        teachers[kind] = run_dir / "teacher.pth"
        if kind == "isa":
            lines = (run_dir / "metrics.jsonl").read_text().splitlines()
            final = json.loads(lines[-1])
            out["teacher alone (GT boxes)"] = {"mAP": final["mAP"], "top1": final["top1"],
                                               "seconds": record["seconds"]}
    for row, (teacher_kind, distill) in STUDENT_ROWS.items():
        tag = row.strip("+").replace("+", "_").replace(" ", "_").replace("(", "").replace(")", "")
        run_dir = work / f"student_{tag}"
        overrides = [] if distill is None else [f"distill.teacher={teachers[teacher_kind]}", *distill]
        record = step(work, f"student_{tag}", [
            *CLI, "train", "--no-progress", "--config", str(args.student_config), f"dataset.root={data}",
            f"output_dir={run_dir}", f"train.seed={seed}", "train.eval_period=-1", *overrides, *args.student,
        ])
        report = work / f"test_{tag}.json"
        step(work, f"test_{tag}", [*CLI, "test", "--no-progress", "--checkpoint", str(run_dir / "last.pth"),
                                   "--dataset", "cuhk-sysu", "--root", str(data), "--workers", "0",
                                   "--json", str(report)])
        out[row] = {**search_metrics(report, args.gallery_size), "seconds": record["seconds"]}
    report = work / "test_two_step.json"
    record = step(work, "test_two_step", [
        *CLI, "test", "--no-progress", "--checkpoint", str(work / "student_baseline" / "last.pth"),
        "--dataset", "cuhk-sysu", "--root", str(data), "--workers", "0", "--two-step",
        "--teacher", str(teachers["isa"]), "--json", str(report),
    ])
    out["two-step"] = {**search_metrics(report, args.gallery_size),
                       "seconds": out["baseline"]["seconds"] + out["teacher alone (GT boxes)"]["seconds"]}
    (work / "rows.json").write_text(json.dumps(out, indent=2))
    return out


def fmt(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    mean = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def table(per_seed: dict[int, dict[str, dict]], gallery_size: int) -> str:
    seeds = sorted(per_seed)
    header = f"row (gallery {gallery_size}, seeds {', '.join(map(str, seeds))})"
    lines = [
        f"| {header} | mAP (%) | top-1 (%) | training time (s) |",
        "|---|---|---|---|",
    ]
    for row in ROW_ORDER:
        vals = [per_seed[s][row] for s in seeds if row in per_seed[s]]
        if not vals:
            continue
        lines.append(f"| {row} | {fmt([v['mAP'] for v in vals])} | {fmt([v['top1'] for v in vals])} | "
                     f"{fmt([v['seconds'] for v in vals], scale=1.0, digits=0)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--work", type=Path, required=True, help="working folder (re-use it to resume)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--gallery-size", type=int, default=100)
    parser.add_argument("--student-config", type=Path, default=ROOT / "configs" / "synthetic_cpu.yaml")
    parser.add_argument("--teacher-config", type=Path, default=ROOT / "configs" / "teacher_synthetic_cpu.yaml")
    parser.add_argument("--student", nargs="*", default=[], metavar="KEY=VALUE", help="extra student overrides")
    parser.add_argument("--teacher", nargs="*", default=[], metavar="KEY=VALUE", help="extra teacher overrides")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"ablation in {args.work}: seeds {args.seeds}, preset {args.preset}, "
          f"{os.cpu_count()} CPU cores", flush=True)
    per_seed = {}
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        per_seed[seed] = ablate_seed(args, seed)
    text = table(per_seed, args.gallery_size)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()

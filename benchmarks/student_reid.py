"""Why is the student a weak re-identifier? One-factor experiments with embedding diagnostics and floors.

Sub-commands:

``floors --root DATA``
    Training-free floors on a dataset's ground-truth boxes: a random unit vector per box and an HSV colour
    histogram (8x4x4, Hellinger). Two protocols: Re-ID alone (the crop protocol of ``test --gt-reid``) and
    search with the ground-truth boxes as detections (score 1) at every gallery size.

``diagnose --checkpoint C --root DATA``
    A trained student's embeddings: Re-ID alone on ground-truth boxes; the PCA spectrum (variance share of
    the top 1/5/10 directions, directions for 99 %, effective rank) of the test-split ground-truth embeddings
    in eval mode and of the training ground-truth embeddings in eval and in train mode (batch statistics, the
    running statistics untouched); the OIM lookup table's alignment with the training embeddings (cosine of
    each identity's row to the mean embedding of its boxes).

``run --work W --name NAME --root DATA --seeds 0 1 [KEY=VALUE ...]``
    Train a student (``--config`` + the overrides, ``train.seed`` per seed), then ``test --gt-reid`` and
    ``diagnose`` it; each step is skipped when its output exists, so a killed run resumes. CPU seconds of
    the training process are recorded next to the wall-clock seconds.

``table --work W [--baseline NAME]``
    One markdown row per variant (mean ± std over its seeds, paired differences to the baseline's seeds).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "personsearch.cli"]


def _dataset(root: Path, name: str):
    from personsearch.data import load_dataset

    return load_dataset(name, root)


# ---- floors -----------------------------------------------------------------------------------------
def gt_detection_arrays(data, embed_boxes) -> dict[str, np.ndarray]:
    """A results file whose gallery detections are the ground-truth boxes (score 1), embedded by ``embed_boxes``."""
    from personsearch.data.images import load_image
    from personsearch.data.torch_dataset import image_to_tensor
    from personsearch.engine.inference import embed_queries

    det_image, boxes, feats = [], [], []
    for index, record in enumerate(data.gallery):
        if len(record.boxes) == 0:
            continue
        image = image_to_tensor(load_image(record.path))
        b = torch.as_tensor(np.asarray(record.boxes), dtype=torch.float32)
        feats.append(embed_boxes([image], [b])[0].numpy())
        boxes.append(b.numpy())
        det_image.append(np.full(len(b), index))
    arrays = {
        "gallery_names": np.array([r.name for r in data.gallery], dtype=str),
        "det_image": np.concatenate(det_image),
        "det_boxes": np.concatenate(boxes),
        "det_scores": np.ones(sum(len(b) for b in boxes), np.float32),
        "det_features": np.concatenate(feats),
    }
    arrays.update(embed_queries(None, data, torch.device("cpu"), progress=False, embed_boxes=embed_boxes))
    return arrays


def floor_figures(data, embed_boxes) -> dict:
    """Re-ID alone and search-with-GT-boxes figures of one training-free embedder."""
    from personsearch.engine.inference import gt_box_reid
    from personsearch.evaluation import evaluate, make_results, protocol_for

    arrays = gt_detection_arrays(data, embed_boxes)
    reid = gt_box_reid(
        None, data, torch.device("cpu"), arrays["query_features"], progress=False, embed_boxes=embed_boxes
    )
    results = make_results(**arrays)
    sizes = protocol_for(data).sweep_sizes(data)
    search = {}
    for size in sizes:
        m = evaluate(data, results, gallery_size=size, det_thresh=0.5, detection=False)
        search[str(size)] = {"mAP": m["search"]["mAP"], "top1": m["search"]["top1"]}
    return {"gt_reid": reid, "search_gt_boxes": search}


def cmd_floors(args: argparse.Namespace) -> dict:
    from personsearch.evaluation.floors import ColourHistogramEmbedder, RandomEmbedder

    data = _dataset(args.root, args.dataset)
    out = {
        "random": floor_figures(data, RandomEmbedder(256, seed=0)),
        "colour_histogram": floor_figures(data, ColourHistogramEmbedder()),
    }
    for name, figures in out.items():
        searches = ", ".join(f"g{k}: {100 * v['mAP']:.1f}" for k, v in figures["search_gt_boxes"].items())
        print(f"{name:17s} Re-ID alone mAP {100 * figures['gt_reid']['mAP']:.1f}  search with GT boxes mAP {searches}")
    return out


# ---- diagnose ---------------------------------------------------------------------------------------
@torch.no_grad()
def gt_embeddings(model, records, class_of=None, train_mode: bool = False, batch: int = 4):
    """Embeddings and labels of every ground-truth box of ``records``; ``train_mode`` uses batch statistics
    (BatchNorm momentum 0 so the running statistics stay as they are)."""
    from personsearch.data.images import load_image
    from personsearch.data.torch_dataset import image_to_tensor

    model.eval()
    saved = {}
    if train_mode:
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                saved[m] = m.momentum
                m.momentum = 0.0
    feats, labels = [], []
    try:
        for start in range(0, len(records), batch):
            chunk = [r for r in records[start : start + batch] if len(r.boxes)]
            if not chunk:
                continue
            images = [image_to_tensor(load_image(r.path)) for r in chunk]
            boxes = [torch.as_tensor(np.asarray(r.boxes), dtype=torch.float32) for r in chunk]
            sizes = [(int(i.shape[-2]), int(i.shape[-1])) for i in images]
            image_list, _ = model.transform(images, None)
            resized = model.resize_boxes_to(boxes, sizes, image_list.image_sizes)
            feats.append(model.reid_embeddings(model.features(image_list), resized).float())
            for r in chunk:
                pids = np.asarray(r.pids)
                labels.extend(class_of.get(int(p), -1) if class_of is not None else int(p) for p in pids)
    finally:
        for m, momentum in saved.items():
            m.momentum = momentum
        model.eval()
    return torch.cat(feats).numpy(), np.array(labels)


def cmd_diagnose(args: argparse.Namespace) -> dict:
    from personsearch.engine.checkpoint import load_checkpoint
    from personsearch.engine.inference import embed_queries, gt_box_reid
    from personsearch.engine.loading import load_trained_model
    from personsearch.evaluation.embedding_stats import lut_alignment, spectrum_summary

    torch.manual_seed(0)
    model, _, device = load_trained_model(args.checkpoint, "cpu")
    class_map = {int(k): int(v) for k, v in load_checkpoint(args.checkpoint)["class_map"].items()}
    data = _dataset(args.root, args.dataset)
    queries = embed_queries(model, data, device, progress=False)
    reid = gt_box_reid(model, data, device, queries["query_features"], progress=False)
    test_feats, _ = gt_embeddings(model, data.gallery)
    train_eval, train_labels = gt_embeddings(model, data.train, class_map)
    train_train, _ = gt_embeddings(model, data.train, class_map, train_mode=True)
    lut = model.oim.lut.detach().cpu().numpy()
    out = {
        "gt_reid": reid,
        "spectrum_test_eval": spectrum_summary(test_feats),
        "spectrum_train_eval": spectrum_summary(train_eval),
        "spectrum_train_batchstats": spectrum_summary(train_train),
        "lut_alignment_eval": lut_alignment(lut, train_eval, train_labels),
        "lut_alignment_batchstats": lut_alignment(lut, train_train, train_labels),
        "lut_spectrum": spectrum_summary(lut[np.abs(lut).sum(1) > 0]),
    }
    print(json.dumps(out, indent=1))
    return out


# ---- run / table ------------------------------------------------------------------------------------
def _run(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` into ``log``; its wall-clock and CPU seconds (children's user + system time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(
            f"failed: {' '.join(cmd[3:6])} ... (see {log}):\n" + "\n".join(log.read_text().splitlines()[-12:])
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": time.perf_counter() - start, "cpu_s": cpu}


def _step(record: Path, cmd: list[str], log: Path, **extra) -> dict:
    """Run ``cmd`` once: its timing (plus ``extra``) is kept in ``record``, which later calls return."""
    if record.is_file():
        return json.loads(record.read_text())
    out = {**_run(cmd, log), **extra}
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(record)
    return out


def cmd_run(args: argparse.Namespace) -> None:
    for seed in args.seeds:
        work = args.work / args.name / f"seed{seed}"
        work.mkdir(parents=True, exist_ok=True)
        run_dir = work / "run"
        train = [*CLI, "train", "--no-progress", "--config", str(args.config), f"dataset.root={args.root}"]
        train += [f"output_dir={run_dir}", f"train.seed={seed}", "train.eval_period=-1", *args.overrides]
        print(f"{args.name} seed {seed}: training ...", flush=True)
        timing = _step(work / "train.json", train, work / "train.log", overrides=args.overrides)
        report = work / "test.json"
        test = [*CLI, "test", "--no-progress", "--checkpoint", str(run_dir / "last.pth"), "--dataset", args.dataset]
        test += ["--root", str(args.root), "--workers", "0", "--gt-reid", "--json", str(report)]
        _step(work / "test.step.json", test, work / "test.log")
        diag = [sys.executable, __file__, "diagnose", "--checkpoint", str(run_dir / "last.pth")]
        diag += ["--root", str(args.root), "--dataset", args.dataset, "--json", str(work / "diagnose.json")]
        _step(work / "diagnose.step.json", diag, work / "diagnose.log")
        print(f"{args.name} seed {seed}: {summary(work)} (training {timing['wall_s']:.0f} s)", flush=True)


def summary(work: Path, gallery_size: int = 100) -> dict:
    test = json.loads((work / "test.json").read_text())
    diag = json.loads((work / "diagnose.json").read_text())
    # CUHK-SYSU reports a sweep over gallery sizes; PRW one full gallery (the cross-camera figure counts)
    sweep = [r for r in test.get("sweep", []) if r["gallery_size"] == gallery_size] or test.get("sweep", [])[:1]
    if not sweep:
        sweep = [{"search": test["cross_camera"]["search"]}]
        test = {**test, "detection": test["same_camera"]["detection"]}
    timing = json.loads((work / "train.json").read_text())
    return {
        "search_mAP": sweep[0]["search"]["mAP"],
        "top1": sweep[0]["search"]["top1"],
        "det_ap": test["detection"]["ap"],
        "gt_reid_mAP": test["gt_box_reid"]["mAP"],
        "top5_share": diag["spectrum_test_eval"]["top5_share"],
        "eff_rank": diag["spectrum_test_eval"]["effective_rank"],
        "eff_rank_train_bs": diag["spectrum_train_batchstats"]["effective_rank"],
        "lut_cos": diag["lut_alignment_eval"]["mean"],
        "train_wall_s": timing["wall_s"],
        "train_cpu_s": timing["cpu_s"],
    }


def _fmt(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    mean = statistics.fmean(values) * scale
    return f"{mean:.{digits}f}" + (f" ± {statistics.stdev(values) * scale:.{digits}f}" if len(values) > 1 else "")


COLUMNS = (
    ("gt_reid_mAP", "Re-ID alone mAP", 100.0, 1),
    ("search_mAP", "search mAP", 100.0, 1),
    ("top1", "top-1", 100.0, 1),
    ("det_ap", "det. AP", 100.0, 1),
    ("top5_share", "top-5 PC share", 100.0, 0),
    ("eff_rank", "eff. rank", 1.0, 1),
    ("lut_cos", "LUT cos", 1.0, 2),
    ("train_cpu_s", "train CPU s", 1.0, 0),
)


def cmd_table(args: argparse.Namespace) -> str:
    rows: dict[str, dict[int, dict]] = {}
    for variant in sorted(p for p in args.work.iterdir() if p.is_dir()):
        for seed_dir in sorted(variant.glob("seed*")):
            if (seed_dir / "diagnose.json").is_file():
                rows.setdefault(variant.name, {})[int(seed_dir.name[4:])] = summary(seed_dir, args.gallery_size)
    header = "| variant (seeds) | " + " | ".join(c[1] for c in COLUMNS) + " | Re-ID alone − baseline (paired) |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    base = rows.get(args.baseline, {})
    for name, seeds in rows.items():
        cells = [_fmt([s[key] for s in seeds.values()], scale, digits) for key, _, scale, digits in COLUMNS]
        diffs = [seeds[k]["gt_reid_mAP"] - base[k]["gt_reid_mAP"] for k in seeds if k in base]
        paired = _fmt(diffs) if diffs and name != args.baseline else "–"
        lines.append(f"| {name} ({','.join(map(str, seeds))}) | " + " | ".join(cells) + f" | {paired} |")
    text = "\n".join(lines)
    print(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("floors", "diagnose", "run"):
        p = sub.add_parser(name)
        p.add_argument("--root", type=Path, required=True, help="dataset folder")
        p.add_argument("--dataset", default="cuhk-sysu", choices=("cuhk-sysu", "prw"))
        p.add_argument("--json", type=Path, help="write the figures here")
    sub.choices["diagnose"].add_argument("--checkpoint", type=Path, required=True)
    run = sub.choices["run"]
    run.add_argument("--work", type=Path, required=True)
    run.add_argument("--name", required=True, help="variant name (a folder under --work)")
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    run.add_argument("--config", type=Path, default=ROOT / "configs" / "synthetic_cpu.yaml")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    table = sub.add_parser("table")
    table.add_argument("--work", type=Path, required=True)
    table.add_argument("--baseline", default="baseline")
    table.add_argument("--gallery-size", type=int, default=100)
    table.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    handlers = {"floors": cmd_floors, "diagnose": cmd_diagnose, "run": cmd_run, "table": cmd_table}
    out = handlers[args.command](args)
    if getattr(args, "json", None) and out is not None:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    if getattr(args, "markdown", None):
        args.markdown.write_text(out + "\n")


if __name__ == "__main__":
    main()

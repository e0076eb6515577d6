"""Inference speed of PyTorch eager vs onnxruntime for the exported model (measured, never asserted).

Two models, random weights (speed does not depend on them), each exported with
``personsearch.export.onnx_export.export_model`` into a temporary folder:

* ``demo``: the CPU demo's model (``configs/synthetic_cpu.yaml``: ResNet-18, short side 256) on 480x640 images;
* ``paper``: the paper-size model (ResNet-50 C4, method.md defaults) on 900x1500 images.

Random-init heads saturate, so (as ``benchmarks/speed.py``) the score threshold is 0 and the detection NMS
opened (``nms_thresh`` 1.0) with ``detections_per_img`` 100: both backends embed the same 100 detections per
image. Each backend runs the same images one at a time after one warm-up image, with the same number of
threads (``--threads``, default 1: the machine is shared). The outputs are compared too: detection counts,
per torch detection the nearest onnxruntime one (box difference, embedding cosine), the fraction at the same
rank, and the query-box embedder's cosine on fixed boxes. With random weights the RPN's objectness scores
are packed closely (gaps ~1e-4 among thousands of proposals), so float noise can change which proposals
survive its top-k and NMS; the embedder, with no discrete choice, shows the continuous computation. The
result is one JSON with images/s per backend and the ratio onnxruntime / torch.

Usage: python benchmarks/export_speed.py [--cases demo paper] [--images 3] [--threads 1] [--json OUT.json]
``--device cuda`` (torch on CUDA vs onnxruntime's CUDAExecutionProvider) is future work: no GPU was lent when
this was written, so only the CPU is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"demo": (480, 640), "paper": (900, 1500)}  # image height, width
OPEN = {"box_head": {"score_thresh": 0.0, "nms_thresh": 1.0, "detections_per_img": 100}}


def _model(case: str):
    import copy

    import torch

    from personsearch.config import load_config
    from personsearch.models.build import build_model

    torch.manual_seed(0)
    if case == "demo":
        cfg = copy.deepcopy(load_config(str(ROOT / "configs" / "synthetic_cpu.yaml"))["model"])
        name = "configs/synthetic_cpu.yaml (ResNet-18, 256/448)"
    else:
        cfg = {}
        name = "paper-size (ResNet-50 C4, method.md defaults, 900/1500)"
    cfg.setdefault("backbone", {})["pretrained"] = "none"
    cfg.setdefault("box_head", {}).update(OPEN["box_head"])
    return build_model(cfg, num_classes=80).eval(), name


def _images(size: tuple[int, int], n: int):
    import torch

    g = torch.Generator().manual_seed(1)
    return [torch.rand((3, *size), generator=g) for _ in range(n + 1)]  # the first is the warm-up


def _parity(ours: list[Any], theirs: list[Any]) -> dict[str, Any]:
    """Same counts; per torch detection, the onnxruntime detection with the nearest box (order-free: with
    100 detections of random weights, scores a few 1e-6 apart can swap places), its box difference and
    embedding cosine; and the fraction of detections at the very same position of the ranking."""
    import numpy as np

    same_counts, diffs, cosines, in_place, total = True, [0.0], [1.0], 0, 0
    for (tb, te), (ob, oe) in zip(ours, theirs, strict=True):
        if tb.shape != ob.shape:
            same_counts = False
            continue
        if not len(tb):
            continue
        dist = np.abs(tb[:, None, :] - ob[None, :, :]).max(2)
        match = dist.argmin(1)
        diffs.append(float(dist[np.arange(len(tb)), match].max()))
        cosines.append(float((te * oe[match]).sum(1).min()))
        in_place += int((match == np.arange(len(tb))).sum())
        total += len(tb)
    return {
        "same_counts": same_counts,
        "max_matched_box_diff_px": max(diffs),
        "min_matched_embedding_cosine": min(cosines),
        "fraction_same_rank": in_place / total if total else 1.0,
    }


def run_case(case: str, images: int, threads: int) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    import torch

    from personsearch.export.onnx_export import export_model

    torch.set_num_threads(threads)
    model, name = _model(case)
    size = SIZES[case]
    batch = _images(size, images)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export_model(model, tmp, model_id="random-weights", score_thresh=0.0)
        export_s = time.perf_counter() - start
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(Path(tmp) / "detector.onnx"), options, providers=["CPUExecutionProvider"])
        embedder = ort.InferenceSession(str(Path(tmp) / "embedder.onnx"), options, providers=["CPUExecutionProvider"])
        graph_mib = (Path(tmp) / "detector.onnx").stat().st_size / 2**20
    model.roi_heads.score_thresh = 0.0
    thresh = np.asarray(0.0, dtype=np.float32)
    times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    outs: dict[str, list[Any]] = {"torch": [], "onnxruntime": []}
    for i, image in enumerate(batch):
        start = time.perf_counter()
        with torch.inference_mode():
            ref = model.detect([image])[0]
        t_torch = time.perf_counter() - start
        array = image.numpy()
        start = time.perf_counter()
        got = session.run(None, {"image": array, "score_thresh": thresh})
        t_ort = time.perf_counter() - start
        if i:  # after the warm-up image
            times["torch"].append(t_torch)
            times["onnxruntime"].append(t_ort)
        outs["torch"].append((ref["boxes"].numpy(), ref["embeddings"].numpy()))
        outs["onnxruntime"].append((got[0], got[2]))
    parity = _parity(outs["torch"], outs["onnxruntime"])
    # the query-box embedder has no discrete choice (top-k, NMS): it shows the continuous computation
    h, w = size
    boxes = torch.tensor([[0.05 * w, 0.1 * h, 0.25 * w, 0.9 * h], [0.5 * w, 0.2 * h, 0.6 * w, 0.7 * h], [5, 5, 40, 90]])
    with torch.inference_mode():
        ref_q = model.extract_query_features([batch[1]], [boxes])[0].numpy()
    (got_q,) = embedder.run(None, {"image": batch[1].numpy(), "boxes": boxes.numpy()})
    parity["embedder_min_cosine"] = float((ref_q * got_q).sum(1).min())
    per = {k: sum(v) / len(v) for k, v in times.items()}
    return {
        "case": case,
        "model": name,
        "image_size": list(size),
        "images_timed": images,
        "threads": threads,
        "export_s": export_s,
        "detector_onnx_mib": graph_mib,
        "detections_per_image": float(np.mean([len(o[0]) for o in outs["torch"]])),
        "torch_s_per_image": per["torch"],
        "torch_images_per_s": 1 / per["torch"],
        "onnxruntime_s_per_image": per["onnxruntime"],
        "onnxruntime_images_per_s": 1 / per["onnxruntime"],
        "ratio_onnxruntime_over_torch": per["torch"] / per["onnxruntime"],
        "parity": parity,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", choices=sorted(SIZES), default=["demo", "paper"])
    p.add_argument("--images", type=int, default=3, help="timed images per case and backend (after 1 warm-up)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of both backends (default 1)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    import onnxruntime
    import torch

    results = []
    for case in args.cases:
        r = run_case(case, args.images, args.threads)
        q = r["parity"]
        print(
            f"{case:6s} {r['image_size'][0]}x{r['image_size'][1]}: torch {r['torch_images_per_s']:.3f} img/s, "
            f"onnxruntime {r['onnxruntime_images_per_s']:.3f} img/s, ratio {r['ratio_onnxruntime_over_torch']:.2f}x "
            f"(parity: counts {q['same_counts']}, box diff {q['max_matched_box_diff_px']:.2g} px, "
            f"cosine {q['min_matched_embedding_cosine']:.6f}, same rank {q['fraction_same_rank']:.3f})",
            flush=True,
        )
        results.append(r)
    payload = {
        "benchmark": "export_speed",
        "device": "cpu",
        "note": "--device cuda (torch CUDA vs onnxruntime CUDAExecutionProvider) is future work: no GPU was lent",
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "platform": platform.platform(),
        },
        "results": results,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Gallery index speed (measured, never asserted): faiss search at the million-vector scale, and images/s of
``index build``.

Vectors mode (default): ``--n`` random-but-clustered unit vectors of ``--dim`` values (``--clusters`` random
unit centres, each vector a centre plus Gaussian noise of norm about ``--noise``, normalised; the queries
drawn the same way, not taken from the gallery). For each search index, built with the functions the
gallery index itself uses (``personsearch.footage.store.build_ann`` / ``ann_search``):

* build time (wall) and memory (RSS of this process after building minus before);
* latency of single queries (one at a time, as ``personsearch query`` searches) p50 / p95 / mean over
  ``--queries`` queries, top ``--k``;
* recall@k of the approximate indexes against the exact one (``IndexFlatIP``).

Indexes: exact ``IndexFlatIP``; ``IndexHNSWFlat`` (inner product, ``--hnsw-m``, ``--ef-construction``) at each
``--ef-search``; ``IndexIVFPQ`` (``--nlist``, ``--pq-m`` sub-quantizers of 8 bits) at each ``--nprobe``, its
``--refine`` x k candidates re-ranked exactly. ``--store`` also writes the vectors into a real gallery index
(SQLite), and times opening it and ``GalleryIndex.search`` (hits with their metadata, with and without a
source filter).

Images mode: ``--images FOLDER --checkpoint C`` times ``personsearch index build`` on a folder (images/s,
detections), in a temporary index.

Results are printed as a table and written to ``benchmarks/results/index_speed_<date>.json`` (``--out``).

Usage: python benchmarks/index_speed.py [--n 1000000] [--dim 256] [--queries 1000] [--ef-search 32 64 128]
           [--nprobe 16 32 64] [--store]
       python benchmarks/index_speed.py --images FOLDER --checkpoint run/last.pth [--device cpu] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from personsearch.footage.store import DEFAULT_SEARCH, ann_search, build_ann, ivfpq_layout  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def clustered(n: int, dim: int, centres: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors: a random centre each, plus noise of norm about ``noise``, normalised."""
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        x = centres[rng.integers(0, len(centres), m)]
        x = x + (noise / np.sqrt(dim)) * rng.standard_normal((m, dim), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def latencies(search, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-query seconds and the results (rows) of ``search(query[None]) -> rows [1, k]``."""
    times = np.empty(len(queries))
    rows = []
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        found = search(q[None])
        times[i] = time.perf_counter() - t0
        rows.append(found[0])
    return times, np.stack(rows)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)]))


def summary(times: np.ndarray) -> dict[str, float]:
    ms = times * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "mean_ms": float(ms.mean())}


def machine() -> dict[str, Any]:
    import faiss

    return {
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "omp_threads": faiss.omp_get_max_threads(),
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_vectors(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = clustered(args.n, args.dim, centres, args.noise, rng)
    queries = clustered(args.queries, args.dim, centres, args.noise, rng)
    print(
        f"data: {args.n} x {args.dim} vectors, {args.clusters} clusters, noise {args.noise} "
        f"({time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    k = args.k
    results: dict[str, Any] = {"machine": machine(), "params": vars(args).copy(), "indexes": []}
    rows_table = []

    def measure(name: str, kind: str, options: dict[str, Any], variants: list[tuple[str, dict[str, Any]]]):
        gc.collect()
        before = rss_mb()
        t_build = time.perf_counter()
        index = build_ann(vectors, kind, options)
        build_s = time.perf_counter() - t_build
        memory = rss_mb() - before
        entry = {"index": name, "build_s": build_s, "rss_delta_mb": memory, "variants": []}
        for label, extra in variants:
            opts = {**options, **extra}

            def search(q, opts=opts, index=index):
                return ann_search(index, kind, q, k, opts, vectors)[1]

            search(queries[:1])  # warm-up
            times, found = latencies(search, queries[: args.latency_queries or None] if kind == "flat" else queries)
            row = {"setting": label, **summary(times)}
            if kind == "flat":
                row["recall_at_k"] = 1.0
            else:
                row["recall_at_k"] = recall(found, truth[: len(found)])
            entry["variants"].append(row)
            rows_table.append((name, label, build_s, memory, row))
            print(
                f"  {name:<28} {label:<22} p50 {row['p50_ms']:8.2f} ms  p95 {row['p95_ms']:8.2f} ms  "
                f"recall@{k} {row['recall_at_k']:.4f}",
                flush=True,
            )
        results["indexes"].append(entry)
        del index
        gc.collect()

    # ground truth: exact top-k of every query (batched)
    import faiss

    flat = faiss.IndexFlatIP(args.dim)
    flat.add(vectors)
    t_truth = time.perf_counter()
    truth = flat.search(queries, k)[1]
    results["exact_batched_s"] = time.perf_counter() - t_truth
    del flat
    print(f"exact top-{k} of {args.queries} queries, batched: {results['exact_batched_s']:.1f} s", flush=True)

    base = dict(DEFAULT_SEARCH)
    if "flat" not in args.skip:
        measure("exact IndexFlatIP", "flat", base, [("", {})])
    if "hnsw" not in args.skip:
        options = {**base, "hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction}
        variants = [(f"efSearch {ef}", {"ef_search": ef}) for ef in args.ef_search]
        measure(f"HNSW M={args.hnsw_m} efC={args.ef_construction}", "hnsw", options, variants)
    if "ivfpq" not in args.skip:
        options = {**base, "nlist": args.nlist, "pq_m": args.pq_m, "refine": args.refine}
        nlist, pq_m, nbits = ivfpq_layout(args.n, args.dim, options)
        variants = [(f"nprobe {p} refine x{args.refine}", {"nprobe": p}) for p in args.nprobe]
        measure(f"IVF{nlist},PQ{pq_m}x{nbits}", "ivfpq", options, variants)
    if args.store:
        results["store"] = run_store(args, vectors, queries, truth)

    # the fastest approximate setting meeting the target
    ok = [r for r in rows_table if r[4]["recall_at_k"] >= args.target_recall and r[0] != "exact IndexFlatIP"]
    best = min(ok, key=lambda r: r[4]["p50_ms"], default=None)
    results["target"] = {
        "recall_at_k": args.target_recall,
        "latency_ms": args.target_ms,
        "best": None if best is None else {"index": best[0], "setting": best[1], **best[4]},
        "met": best is not None and best[4]["p95_ms"] < args.target_ms,
    }
    print()
    print(f"| index | setting | build (s) | RSS delta (MB) | p50 (ms) | p95 (ms) | recall@{k} |")
    print("|---|---|---|---|---|---|---|")
    for name, label, build_s, memory, row in rows_table:
        print(
            f"| {name} | {label or '-'} | {build_s:.1f} | {memory:.0f} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} "
            f"| {row['recall_at_k']:.4f} |"
        )
    if best is not None:
        print(
            f"\nfastest at recall@{k} >= {args.target_recall}: {best[0]}, {best[1]}: "
            f"p50 {best[4]['p50_ms']:.2f} ms, p95 {best[4]['p95_ms']:.2f} ms (target < {args.target_ms} ms: "
            f"{'met' if results['target']['met'] else 'not met'})"
        )
    return results


def run_store(args: argparse.Namespace, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    """Write the vectors into a real gallery index (10 detections per image, two sources) and time it."""
    from personsearch.footage.store import DB_NAME, GalleryIndex, IndexDB

    work = Path(tempfile.mkdtemp(prefix="index-speed-", dir=args.work))
    out: dict[str, Any] = {"folder": str(work)}
    per_image = 10
    t0 = time.perf_counter()
    db = IndexDB(
        work / DB_NAME,
        {
            "model_id": "benchmark",
            "embedding_dim": args.dim,
            "index_type": "hnsw",
            "ef_search": args.store_ef_search,
            "hnsw_m": args.hnsw_m,
            "ef_construction": args.ef_construction,
        },
    )
    boxes = np.tile([1.0, 2.0, 50.0, 120.0], (per_image, 1))
    scores = np.ones(per_image)
    n_images = len(vectors) // per_image
    for start in range(0, n_images, 1000):
        db.begin()
        for i in range(start, min(n_images, start + 1000)):
            source = "/bench/a" if i % 2 == 0 else "/bench/b"
            path = f"{source}/{i:07d}.jpg"
            fid, _ = db.ensure_file(path, source, "image", 1, 1)
            db.add_image(fid, path, source, 1, 1, 640, 480, boxes, scores, vectors[i * per_image : (i + 1) * per_image])
            db.finish_file(fid, "ok")
        db.commit()
    db.close()
    out["write_s"] = time.perf_counter() - t0
    out["db_mb"] = (work / DB_NAME).stat().st_size / 2**20
    print(
        f"store: wrote {n_images} images x {per_image} detections to SQLite in {out['write_s']:.1f} s "
        f"({out['db_mb']:.0f} MB)",
        flush=True,
    )
    for label in ("cold", "warm"):  # cold: from SQLite, caches written; warm: from the caches
        gc.collect()
        t0 = time.perf_counter()
        with GalleryIndex.open(work) as index:
            opened = time.perf_counter() - t0
            t1 = time.perf_counter()
            index.ann()
            ann = time.perf_counter() - t1
            if label == "warm":
                n_q = min(len(queries), 200)
                t_all, t_filtered, found = [], [], []
                for q in queries[:n_q]:
                    t = time.perf_counter()
                    hits = index.search(q, args.k)
                    t_all.append(time.perf_counter() - t)
                    found.append([h.detection_id - 1 for h in hits])
                    t = time.perf_counter()
                    index.search(q, args.k, sources=["/bench/a"])
                    t_filtered.append(time.perf_counter() - t)
                out["search"] = {**summary(np.array(t_all)), "recall_at_k": recall(np.array(found), truth[:n_q])}
                out["search_filtered"] = summary(np.array(t_filtered))
        out[f"open_{label}_s"] = opened
        out[f"ann_{label}_s"] = ann
        print(
            f"store: open ({label}) {opened:.1f} s, faiss index {'built' if label == 'cold' else 'loaded'} "
            f"in {ann:.1f} s",
            flush=True,
        )
    print(
        f"store: GalleryIndex.search p50 {out['search']['p50_ms']:.2f} ms p95 {out['search']['p95_ms']:.2f} ms "
        f"recall@{args.k} {out['search']['recall_at_k']:.4f}; with a source filter (half) p50 "
        f"{out['search_filtered']['p50_ms']:.2f} ms p95 {out['search_filtered']['p95_ms']:.2f} ms",
        flush=True,
    )
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return out


def run_images(args: argparse.Namespace) -> dict[str, Any]:
    from personsearch.footage.builder import build_index
    from personsearch.footage.searcher import Searcher

    searcher = Searcher.from_checkpoint(args.checkpoint, args.device, det_thresh=args.det_thresh)
    work = Path(tempfile.mkdtemp(prefix="index-build-", dir=args.work))
    t0 = time.perf_counter()
    summary_ = build_index(
        searcher,
        work / "index",
        [str(args.images)],
        fps=args.fps,
        batch_size=args.batch_size,
        progress=True,
        checkpoint=str(args.checkpoint),
        det_thresh=args.det_thresh,
    )
    seconds = time.perf_counter() - t0
    done = summary_["images_added"] + summary_["frames_added"]
    result = {
        "machine": machine(),
        "params": {k: str(v) for k, v in vars(args).items()},
        "device": str(searcher.device),
        "images": done,
        "detections": summary_["detections_added"],
        "seconds": seconds,
        "images_per_second": done / seconds if seconds else 0.0,
        "skipped": summary_["skipped_count"],
    }
    print(
        f"index build: {done} images/frames, {result['detections']} detections in {seconds:.1f} s on "
        f"{result['device']}: {result['images_per_second']:.2f} images/s (batch size {args.batch_size})"
    )
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="gallery vectors (default 1M)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--clusters", type=int, default=10_000)
    p.add_argument("--noise", type=float, default=0.75, help="norm of the noise around a centre (default 0.75)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--latency-queries", type=int, default=0, help="exact index: time only this many (0: all)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hnsw-m", type=int, default=DEFAULT_SEARCH["hnsw_m"])
    p.add_argument("--ef-construction", type=int, default=DEFAULT_SEARCH["ef_construction"])
    p.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--nlist", type=int, default=0, help="IVF lists (0: about sqrt(n))")
    p.add_argument("--pq-m", type=int, default=0, help="PQ sub-quantizers (0: dim / 8)")
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--refine", type=int, default=DEFAULT_SEARCH["refine"])
    p.add_argument("--skip", nargs="*", default=[], choices=["flat", "hnsw", "ivfpq"])
    p.add_argument("--store", action="store_true", help="also time a real gallery index (SQLite) of the vectors")
    p.add_argument("--store-ef-search", type=int, default=DEFAULT_SEARCH["ef_search"])
    p.add_argument("--target-recall", type=float, default=0.95)
    p.add_argument("--target-ms", type=float, default=10.0)
    p.add_argument("--images", type=Path, help="images mode: a folder (or any index source) to index")
    p.add_argument("--checkpoint", type=Path, help="images mode: the model")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--det-thresh", type=float, default=0.5)
    p.add_argument("--fps", type=float, default=1.0)
    p.add_argument("--work", type=Path, default=None, help="folder for temporary indexes (default: the system's)")
    p.add_argument("--keep", action="store_true", help="keep the temporary indexes")
    p.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/index_speed_<date>.json)")
    args = p.parse_args()
    if args.images is not None:
        if args.checkpoint is None:
            p.error("--images needs --checkpoint")
        results = {"mode": "images", **run_images(args)}
        name = f"index_speed_images_{time.strftime('%Y-%m-%d')}.json"
    else:
        results = {"mode": "vectors", **run_vectors(args)}
        results["params"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in results["params"].items()}
        name = f"index_speed_{time.strftime('%Y-%m-%d')}.json"
    out = args.out or ROOT / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()

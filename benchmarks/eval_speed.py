"""Evaluation speed and memory at the real CUHK-SYSU and PRW scale.

Builds (once, in ``--work``) synthetic protocol files in the real formats at full scale -- CUHK-SYSU: 6,978
pool images, 2,900 queries, ``TestG50``/``TestG100``/``TestG4000`` written with ``scipy.io.savemat``
(uint8/uint16 boxes, compressed like MATLAB's files); PRW: 6,112 test frames, 2,057 queries -- plus a
results file for each (no images: the loaders never read pixels). The training split is reduced to a few
images (evaluation never uses it). Then each protocol is evaluated in a fresh process with
``personsearch evaluate``, twice: with an empty parse cache (cold) and with the cache filled (warm);
seconds and peak RSS are printed. With ``--reference``, the literal loop-based transcription of the spec
(tests/test_eval_reference.py, scipy ``loadmat`` + sklearn, the shape of the community evaluators) is
timed on the same machine on ``--reference-queries`` queries and extrapolated to all queries.

Usage: python benchmarks/eval_speed.py --work /tmp/ps-bench [--dim 256] [--sizes 100 4000] [--reference]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import scipy.io

ROOT = Path(__file__).resolve().parents[1]
F32 = np.float32


# ------------------------------------------------------------------------------------------------- data
def _box_store(box) -> np.ndarray:
    arr = np.asarray(box, dtype=np.int64).reshape(1, 4)
    return arr.astype(np.uint8 if arr.max() < 256 else np.uint16)


def _random_boxes(rng, n, width, height):
    w = rng.integers(20, 160, n)
    h = (w * rng.uniform(1.8, 3.0, n)).astype(np.int64)
    h = np.minimum(h, height - 2)
    x = rng.integers(0, width - 160, n)
    y = rng.integers(0, np.maximum(1, height - h), n)
    return np.stack([x, y, w, h], 1)


# MATLAB-style MAT 5 writing (doubles stored as uint8/uint16, UTF-8 chars, [] as 1x0 double,
# miCOMPRESSED), streamed: scipy.io.savemat needs tens of minutes and gigabytes for TestG4000.
def _el(typ: int, payload: bytes) -> bytes:
    if 0 < len(payload) <= 4:
        return struct.pack("<HH", typ, len(payload)) + payload.ljust(4, b"\0")
    return struct.pack("<II", typ, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def _matrix(cls: int, dims: tuple[int, ...], body: bytes, name: bytes = b"") -> bytes:
    flags = struct.pack("<II", 6, 8) + struct.pack("<II", cls, 0)
    dims_el = struct.pack("<II", 5, 4 * len(dims)) + struct.pack(f"<{len(dims)}i", *dims)
    name_el = _el(1, name) if name else struct.pack("<II", 1, 0)
    content = flags + dims_el + name_el + body
    return struct.pack("<II", 14, len(content)) + content


def _m_char(text: str) -> bytes:
    return _matrix(4, (1, len(text)), _el(16, text.encode("ascii")))


def _m_double(values) -> bytes:
    arr = np.asarray(values, dtype=np.int64).reshape(-1)
    typ, dtype = (2, np.uint8) if arr.max() < 256 else (4, np.uint16)
    return _matrix(6, (1, arr.size), _el(typ, arr.astype(dtype).tobytes()))


M_EMPTY = _matrix(6, (1, 0), struct.pack("<II", 9, 0))


def _struct_header(dims: tuple[int, ...], fields: list[str], name: bytes = b"") -> tuple[bytes, bytes]:
    width = 32
    names = b"".join(f.encode().ljust(width, b"\0") for f in fields)
    return _el(5, struct.pack("<i", width)) + _el(1, names), name


def write_testg_matlab_style(path: Path, size: int, query_rows: list[tuple[bytes, list[bytes]]]) -> None:
    """Write ``TestG{size}`` = struct(Query, Gallery) from per-query (Query element, gallery entry
    elements) the way MATLAB does (one compressed variable)."""
    fields_q = _struct_header((1, 1), ["Query", "Gallery"])[0]
    fields_g = _struct_header((1, size), ["imname", "idlocate", "ishard"])[0]

    def gallery(entries: list[bytes]) -> bytes:
        return _matrix(2, (1, size), fields_g + b"".join(entries))

    total = 0
    for query, entries in query_rows:
        total += len(query) + 8 + 16 + 16 + 8 + len(fields_g) + sum(len(e) for e in entries)
    name = f"TestG{size}".encode()
    head_body = (
        struct.pack("<II", 6, 8)
        + struct.pack("<II", 2, 0)
        + struct.pack("<II", 5, 8)
        + struct.pack("<2i", 1, len(query_rows))
        + _el(1, name)
        + fields_q
    )
    top = struct.pack("<II", 14, len(head_body) + total) + head_body
    packer = zlib.compressobj(6)
    header = b"MATLAB 5.0 MAT-file, Platform: MACI64, Created on: Sun Nov  1 12:06:30 2015".ljust(116)
    header += b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    with open(path, "wb") as out:
        out.write(header + struct.pack("<II", 15, 0))
        size_in = 0
        chunks = [packer.compress(top)]
        for query, entries in query_rows:
            chunks.append(packer.compress(query + gallery(entries)))
            if len(chunks) > 64:
                data = b"".join(chunks)
                out.write(data)
                size_in += len(data)
                chunks = []
        chunks.append(packer.flush())
        data = b"".join(chunks)
        out.write(data)
        size_in += len(data)
        out.seek(128)
        out.write(struct.pack("<II", 15, size_in))


def build_cuhk(
    root: Path, sizes: list[int], seed: int = 0, n_pool: int = 6978, n_queries: int = 2900, n_train: int = 4
) -> dict:
    """CUHK-SYSU annotation files at full scale; returns the ground truth used for the results file."""
    rng = np.random.default_rng(seed)
    ann = root / "annotation"
    (ann / "test/train_test").mkdir(parents=True, exist_ok=True)
    (root / "Image/SSM").mkdir(parents=True, exist_ok=True)
    ids = rng.permutation(np.arange(1, 3 * (n_pool + n_train)))[: n_pool + n_train]
    names = [f"s{i}.jpg" for i in ids]
    pool, train = names[:n_pool], names[n_pool:]
    counts = rng.integers(2, 11, len(names))
    boxes = {n: _random_boxes(rng, int(c), 800, 600) for n, c in zip(names, counts, strict=True)}
    # each query person: its query box plus 1..3 gallery occurrences, in distinct pool images
    queries = []
    slot_used = {n: set() for n in pool}
    for _ in range(n_queries):
        imgs = rng.choice(n_pool, int(rng.integers(2, 5)), replace=False)
        occ = []
        for g in imgs:
            name = pool[g]
            free = [k for k in range(len(boxes[name])) if k not in slot_used[name]] or [0]
            k = int(rng.choice(free))
            slot_used[name].add(k)
            occ.append((int(g), boxes[name][k]))
        queries.append(occ)
    img_struct = np.zeros((1, len(names)), dtype=[("imname", "O"), ("nAppear", "O"), ("box", "O")])
    for i, name in enumerate(names):
        b = np.zeros((1, len(boxes[name])), dtype=[("idlocate", "O"), ("ishard", "O")])
        for k, box in enumerate(boxes[name]):
            b[0, k]["idlocate"] = _box_store(box)
            b[0, k]["ishard"] = np.array([[0]], np.uint8)
        img_struct[0, i] = (name, np.array([[len(boxes[name])]], np.uint8), b)
    scipy.io.savemat(ann / "Images.mat", {"Img": img_struct}, do_compression=True)
    pool_cell = np.empty((n_pool, 1), dtype=object)
    for i, n in enumerate(pool):
        pool_cell[i, 0] = n
    scipy.io.savemat(ann / "pool.mat", {"pool": pool_cell}, do_compression=True)
    train_cell = np.empty((2, 1), dtype=object)
    for t in range(2):
        scene = np.zeros((1, 2), dtype=[("imname", "O"), ("idlocate", "O"), ("ishard", "O")])
        for k in range(2):
            name = train[2 * t + k]
            scene[0, k] = (name, _box_store(boxes[name][0]), np.array([[0]], np.uint8))
        person = np.zeros((1, 1), dtype=[("idname", "O"), ("nAppear", "O"), ("scene", "O")])
        person[0, 0] = (f"p{t + 1}", np.array([[2]], np.uint8), scene)
        train_cell[t, 0] = person
    scipy.io.savemat(ann / "test/train_test/Train.mat", {"Train": train_cell}, do_compression=True)
    empty = np.zeros((1, 0))
    name_el = {}
    for size in sorted(set([50, *sizes])):
        path = ann / f"test/train_test/TestG{size}.mat"
        if path.exists():
            continue
        t0 = time.perf_counter()
        if size > 100:  # MATLAB-style fast writer
            rows = []
            hard = _m_double([0])
            for q, occ in enumerate(queries):
                (qg, qbox), pos = occ[0], occ[1:]
                fields = _struct_header((1, 1), ["imname", "idlocate", "ishard", "idname"])[0]
                query = _matrix(2, (1, 1), fields + _m_char(pool[qg]) + _m_double(qbox) + hard + _m_char(f"p{q + 1}"))
                taken = {qg, *(g for g, _ in pos)}
                neg = [g for g in rng.choice(n_pool, size + len(taken) + 8, replace=False).tolist() if g not in taken][
                    : size - len(pos)
                ]
                entries = []
                for g, box in pos:
                    entries += [_m_char(pool[g]), _m_double(box), hard]
                for g in neg:
                    if g not in name_el:
                        name_el[g] = _m_char(pool[g])
                    entries += [name_el[g], M_EMPTY, M_EMPTY]
                rows.append((query, entries))
            write_testg_matlab_style(path, size, rows)
            del rows
        else:
            struct_arr = np.zeros((1, n_queries), dtype=[("Query", "O"), ("Gallery", "O")])
            for q, occ in enumerate(queries):
                (qg, qbox), pos = occ[0], occ[1:]
                query = np.zeros((1, 1), dtype=[("imname", "O"), ("idlocate", "O"), ("ishard", "O"), ("idname", "O")])
                query[0, 0] = (pool[qg], _box_store(qbox), np.array([[0]], np.uint8), f"p{q + 1}")
                taken = {qg, *(g for g, _ in pos)}
                neg = [g for g in rng.choice(n_pool, size + len(taken) + 8, replace=False).tolist() if g not in taken][
                    : size - len(pos)
                ]
                gal = np.zeros((1, size), dtype=[("imname", "O"), ("idlocate", "O"), ("ishard", "O")])
                flat = gal.reshape(-1)
                for k, (g, box) in enumerate(pos):
                    flat[k] = (pool[g], _box_store(box), np.array([[0]], np.uint8))
                for k, g in enumerate(neg, start=len(pos)):
                    flat[k] = (pool[g], empty, empty)
                struct_arr[0, q] = (query, gal)
            scipy.io.savemat(path, {f"TestG{size}": struct_arr}, do_compression=True)
        print(
            f"  wrote {path.name} ({path.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    return {"pool": pool, "boxes": boxes, "queries": queries}


def build_prw(
    root: Path, seed: int = 0, n_test: int = 6112, n_queries: int = 2057, n_ids: int = 544, n_train: int = 2
) -> dict:
    """PRW annotation files at full scale."""
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "frames").mkdir(parents=True, exist_ok=True)
    cams = rng.integers(1, 7, n_test + n_train)
    names = [f"c{c}s1_{i:06d}.jpg" for i, c in enumerate(cams)]
    test, train = names[:n_test], names[n_test:]
    gt = {}
    for name in names:
        k = int(rng.integers(1, 8))
        width, height = (720, 576) if name.startswith("c6") else (1920, 1080)
        b = _random_boxes(rng, k, width, height).astype(np.float64)
        pids = rng.integers(1, n_ids + 1, k).astype(np.float64)
        pids[rng.random(k) < 0.25] = -2
        gt[name] = (pids, b)
        if not (root / "annotations" / f"{name}.mat").exists():
            scipy.io.savemat(root / "annotations" / f"{name}.mat", {"box_new": np.c_[pids, b]})
    for key, file, frames in (
        ("img_index_test", "frame_test.mat", test),
        ("img_index_train", "frame_train.mat", train),
    ):
        cell = np.empty((len(frames), 1), dtype=object)
        for i, n in enumerate(frames):
            cell[i, 0] = n[:-4]
        scipy.io.savemat(root / file, {key: cell})
    lines = []
    labeled = [(n, j) for n in test for j in range(len(gt[n][0])) if gt[n][0][j] > 0]
    for i in rng.choice(len(labeled), n_queries, replace=False):
        n, j = labeled[i]
        pid = int(gt[n][0][j])
        x, y, w, h = gt[n][1][j]
        lines.append(f"{pid} {x + 0.3:.1f} {y:.1f} {w:.1f} {h:.1f} {n[:-4]}\r\n")
    (root / "query_info.txt").write_bytes("".join(lines).encode())
    return {"test": test, "gt": gt}


def build_results(data, path: Path, dim: int, seed: int) -> None:
    """Detections (jittered ground truth, misses, clutter) and score-weighted features in which every
    identity has its own direction, so that search is neither trivial nor hopeless."""
    from personsearch.evaluation import make_results, save_results

    rng = np.random.default_rng(seed)
    centres = {}

    def centre(pid):
        if pid not in centres:
            v = rng.standard_normal(dim).astype(F32)
            centres[pid] = v / np.linalg.norm(v)
        return centres[pid]

    names, image, boxes, scores, feats = [], [], [], [], []
    for rec in data.gallery:
        rows, sc, fe = [], [], []
        for box, pid in zip(rec.boxes, rec.pids, strict=True):
            if rng.random() < 0.1:
                continue
            rows.append(box + rng.normal(0, 4, 4))
            sc.append(rng.uniform(0.5, 1.0))
            fe.append(centre(int(pid)) if pid > 0 else centre(("u", rec.name, len(rows))))
        for _ in range(int(rng.integers(0, 3))):
            x, y = rng.uniform(0, 500, 2)
            rows.append([x, y, x + 50, y + 120])
            sc.append(rng.uniform(0.2, 0.9))
            fe.append(centre(("c", rec.name, len(rows))))
        if not rows:
            continue
        names.append(rec.name)
        image += [len(names) - 1] * len(rows)
        boxes += rows
        scores += sc
        f = np.array(fe) + rng.normal(0, 0.9 / np.sqrt(dim), (len(fe), dim))
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        feats.append(f * np.array(sc)[:, None])
    q = np.array([centre(int(qr.pid)) for qr in data.queries]) + rng.normal(
        0, 0.9 / np.sqrt(dim), (len(data.queries), dim)
    )
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    save_results(
        path,
        make_results(
            names, image, np.array(boxes), np.array(scores), np.concatenate(feats), [qr.name for qr in data.queries], q
        ),
    )


# ------------------------------------------------------------------------------------------------ timing
CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from personsearch.cli import main
code = main(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"code": code, "seconds": time.perf_counter() - t0, "peak_mib": peak}))
"""


def run_child(args: list[str], cache: Path) -> dict:
    env = dict(os.environ, PERSONSEARCH_CACHE=str(cache), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"evaluate failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_reference(dataset: str, root: Path, results_path: Path, size: int | None, n_queries: int) -> dict:
    """The literal transcription on the first ``n_queries`` queries, extrapolated."""
    sys.path.insert(0, str(ROOT / "tests"))
    from personsearch.data import load_dataset
    from personsearch.evaluation import load_results
    from test_eval_reference import ref_search_cuhk, ref_search_prw

    data = load_dataset(dataset, root)
    res = load_results(results_path, data)
    index = {n: i for i, n in enumerate(res.gallery_names)}
    order = np.argsort(res.det_image, kind="stable")
    bounds = np.searchsorted(res.det_image[order], np.arange(len(res.gallery_names) + 1))
    dets, feats = [], []
    for rec in data.gallery:
        i = index.get(rec.name)
        rows = order[bounds[i] : bounds[i + 1]] if i is not None else np.zeros(0, int)
        dets.append(np.concatenate([res.det_boxes[rows], res.det_scores[rows, None]], 1))
        feats.append(res.det_features[rows])
    t0 = time.perf_counter()
    if dataset == "cuhk-sysu":
        key = f"TestG{size}"
        protoc = scipy.io.loadmat(root / f"annotation/test/train_test/{key}.mat")[key].squeeze()
        t_load = time.perf_counter() - t0
        t1 = time.perf_counter()
        rows = [
            (str(item["Query"][0, 0]["imname"][0]), [(str(e[0][0]), e[1][0]) for e in item["Gallery"].squeeze()])
            for item in protoc[:n_queries]
        ]
        ref_search_cuhk([r.name for r in data.gallery], dets, feats, res.query_features[:n_queries], rows)
    else:
        t_load = 0.0
        t1 = time.perf_counter()
        ref_search_prw(
            [(r.name, r.boxes, r.pids, r.cam_id) for r in data.gallery],
            dets,
            feats,
            [(q.name, q.pid, q.cam_id) for q in data.queries[:n_queries]],
            res.query_features[:n_queries],
        )
    loop = time.perf_counter() - t1
    total_q = len(data.queries)
    return {
        "loadmat_s": t_load,
        "loop_s_measured": loop,
        "queries_measured": n_queries,
        "estimated_total_s": t_load + loop * total_q / n_queries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/personsearch-eval-bench"))
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 4000])
    parser.add_argument("--skip-prw", action="store_true")
    parser.add_argument("--reference", action="store_true", help="also time the literal reference")
    parser.add_argument("--reference-queries", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from personsearch.data import load_dataset

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    jobs = []
    cuhk = work / "CUHK-SYSU"
    print("building CUHK-SYSU files (once) ...", flush=True)
    build_cuhk(cuhk, args.sizes)
    cuhk_results = work / f"cuhk-results-d{args.dim}.npz"
    if not cuhk_results.exists():
        os.environ["PERSONSEARCH_CACHE"] = str(work / "build-cache")
        build_results(load_dataset("cuhk-sysu", cuhk), cuhk_results, args.dim, 1)
    for size in args.sizes:
        jobs.append((f"CUHK-SYSU gallery {size}", "cuhk-sysu", cuhk, cuhk_results, size))
    if not args.skip_prw:
        prw = work / "PRW"
        print("building PRW files (once) ...", flush=True)
        if not (prw / "query_info.txt").exists():
            build_prw(prw)
        prw_results = work / f"prw-results-d{args.dim}.npz"
        if not prw_results.exists():
            os.environ["PERSONSEARCH_CACHE"] = str(work / "build-cache")
            build_results(load_dataset("prw", prw), prw_results, args.dim, 2)
        jobs.append(("PRW (2,057 queries x 6,112 frames)", "prw", prw, prw_results, None))
    for label, dataset, root, results, size in jobs:
        cache = work / "cache-cold"
        shutil.rmtree(cache, ignore_errors=True)
        cli = [
            "evaluate",
            "--dataset",
            dataset,
            "--root",
            str(root),
            "--results",
            str(results),
            "--json",
            str(work / f"{dataset}-{size}.json"),
        ]
        if size is not None:
            cli += ["--gallery-size", str(size)]
        cold = run_child(cli, cache)
        warm = run_child(cli, cache)
        metrics = json.loads((work / f"{dataset}-{size}.json").read_text())
        row = {
            "protocol": label,
            "cold_s": cold["seconds"],
            "warm_s": warm["seconds"],
            "peak_mib": max(cold["peak_mib"], warm["peak_mib"]),
            "mAP": metrics["search"]["mAP"],
            "top1": metrics["search"]["top1"],
        }
        if args.reference and (size is None or size <= 100):
            row["reference"] = time_reference(dataset, root, results, size, args.reference_queries)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(
        f"{'protocol':38} {'cold s':>8} {'warm s':>8} {'peak MiB':>9} {'ref s (est.)':>13} {'cold x':>7} {'warm x':>7}"
    )
    for r in rows:
        ref = r.get("reference", {}).get("estimated_total_s")
        cold_x = f"{ref / r['cold_s']:.0f}x" if ref else "-"
        warm_x = f"{ref / r['warm_s']:.0f}x" if ref else "-"
        ref_text = f"{ref:.1f}" if ref else "-"
        print(
            f"{r['protocol']:38} {r['cold_s']:8.2f} {r['warm_s']:8.2f} {r['peak_mib']:9.0f} {ref_text:>13} "
            f"{cold_x:>7} {warm_x:>7}"
        )
    print(
        "cold: empty parse cache (every annotation file parsed); warm: cache filled. Times include Python "
        "start-up, dataset loading and results loading. The reference runs in this process on cached "
        "dataset records and includes loadmat of the TestG file."
    )


if __name__ == "__main__":
    main()

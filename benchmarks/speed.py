"""Training and inference speed and peak memory of the person search network (measured, never asserted).

Cases, each in a fresh process so that its peak memory is its own:

* ``paper``: the paper-size model (ResNet-50 C4, method.md defaults, random init) on synthetic
  900x1500 images: training iterations/s (SGD step included) and inference images/s;
* ``torchvision``: torchvision's ``fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` at the
  same input size (``min_size=900, max_size=1500``), inference only: a reference point measured in the same
  run; both keep 100 detections per image (ours with the score threshold and NMS opened, since its
  random-init heads saturate), so neither is sped up by an empty output;
* ``demo``: the CPU demo's model (``configs/synthetic_cpu.yaml``) on images of the small synthetic preset.

Peak memory is the process's maximum RSS (``resource.getrusage``), plus the peak CUDA allocation on a GPU.
``--device cuda --amp bf16|fp16`` times the same cases under autocast and then runs a short real training
(``personsearch.engine.trainer.Trainer`` on the small synthetic dataset, paper-size model); on the CPU that
real training runs only with ``--real-training``.

Usage: python benchmarks/speed.py [--device cpu|cuda] [--amp off|bf16|fp16] [--cases paper torchvision demo]
       [--train-iters 2] [--infer-images 3] [--real-training] [--work DIR]
Default on 2 CPU cores: about 4-5 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAPER_SIZE = (900, 1500)  # image height, width
DEMO_SIZE = (480, 640)
CUHK_TRAIN_IDS = 5532


def peak_rss_mib() -> float:
    """Maximum resident set size of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fake_batch(n: int, size: tuple[int, int], device, num_classes: int, seed: int):
    """``n`` random images of ``size`` with 4-7 person-shaped boxes each (some unlabelled)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    h, w = size
    images, targets = [], []
    for _ in range(n):
        images.append(torch.rand(3, h, w, generator=g).to(device))
        k = int(torch.randint(4, 8, (1,), generator=g))
        bh = torch.randint(h // 8, h // 2, (k,), generator=g).float()
        bw = bh * 0.4
        x1 = torch.rand(k, generator=g) * (w - bw)
        y1 = torch.rand(k, generator=g) * (h - bh)
        boxes = torch.stack([x1, y1, x1 + bw, y1 + bh], 1)
        labels = torch.randint(0, num_classes, (k,), generator=g)
        labels[torch.rand(k, generator=g) < 0.3] = -1
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device)})
    return images, targets


def time_training(model, batch: int, size, iters: int, amp: str, device, num_classes: int) -> dict[str, float]:
    """Seconds per training iteration (forward, backward, SGD step) after one warm-up iteration."""
    import torch

    from personsearch.engine.trainer import autocast_context

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16" and device.type == "cuda")
    times = []
    for i in range(iters + 1):
        images, targets = fake_batch(batch, size, device, num_classes, seed=i)
        _sync(device)
        start = time.perf_counter()
        with autocast_context(amp, device):
            loss = sum(model(images, targets).values())
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        _sync(device)
        if i:
            times.append(time.perf_counter() - start)
    per_iter = sum(times) / len(times)
    return {"train_s_per_iter": per_iter, "train_iters_per_s": 1 / per_iter, "train_images_per_s": batch / per_iter}


def time_inference(model, size, images: int, amp: str, device) -> dict[str, float]:
    """Images/s of ``model(images)`` one image at a time after one warm-up image; mean detections/image."""
    import torch

    from personsearch.engine.trainer import autocast_context

    model.eval()
    times, dets = [], []
    with torch.no_grad():
        for i in range(images + 1):
            batch, _ = fake_batch(1, size, device, 1, seed=1000 + i)
            _sync(device)
            start = time.perf_counter()
            with autocast_context(amp, device):
                out = model(batch)
            _sync(device)
            if i:
                times.append(time.perf_counter() - start)
                dets.append(len(out[0]["boxes"]))
    per_image = sum(times) / len(times)
    return {
        "infer_s_per_image": per_image,
        "infer_images_per_s": 1 / per_image,
        "detections_per_image": sum(dets) / len(dets),
    }


def _our_model(model_cfg: dict, num_classes: int, device):
    import copy

    from personsearch.models.build import build_model

    cfg = copy.deepcopy(model_cfg)
    cfg.setdefault("backbone", {})["pretrained"] = "none"
    return build_model(cfg, num_classes=num_classes).to(device)


def run_case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    """One case, in this process."""
    import torch

    device = torch.device(args.device)
    out: dict[str, Any] = {"case": case}
    if case == "paper":
        # random-init heads saturate (scores 0 or 1, collapsed boxes): open the score threshold and NMS so
        # that exactly 100 detections reach the Re-ID head, as torchvision keeps 100
        comparable = {"box_head": {"score_thresh": 0.0, "nms_thresh": 1.0, "detections_per_img": 100}}
        model = _our_model(comparable, CUHK_TRAIN_IDS, device)
        out.update(size=PAPER_SIZE, batch=args.paper_batch, model="ResNet-50 C4 (method.md defaults)")
        # inference before the training steps (which change the weights)
        out.update(time_inference(model, PAPER_SIZE, args.infer_images, args.amp, device))
        out.update(
            time_training(model, args.paper_batch, PAPER_SIZE, args.train_iters, args.amp, device, CUHK_TRAIN_IDS)
        )
    elif case == "torchvision":
        from torchvision.models.detection import fasterrcnn_resnet50_fpn

        model = fasterrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, min_size=PAPER_SIZE[0], max_size=PAPER_SIZE[1]
        ).to(device)
        out.update(size=PAPER_SIZE, model="torchvision fasterrcnn_resnet50_fpn (random init)")
        out.update(time_inference(model, PAPER_SIZE, args.infer_images, args.amp, device))
    elif case == "demo":
        from personsearch.config import load_config

        cfg = load_config(args.demo_config)
        batch = int(cfg["train"]["batch_size"])
        model = _our_model(cfg["model"], 80, device)
        t = cfg["model"]["transform"]
        out.update(
            size=DEMO_SIZE,
            batch=batch,
            model=f"{Path(args.demo_config).name} "
            f"({cfg['model']['backbone']['arch']}, resized to {t['min_size']}/{t['max_size']})",
        )
        out.update(time_inference(model, DEMO_SIZE, args.demo_infer_images, args.amp, device))
        out.update(time_training(model, batch, DEMO_SIZE, args.demo_train_iters, args.amp, device, 80))
    else:
        raise SystemExit(f"unknown case {case!r}")
    out["peak_rss_mib"] = peak_rss_mib()
    if device.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    out["threads"] = torch.get_num_threads()
    return out


def real_training(args: argparse.Namespace) -> dict[str, Any]:
    """A short real training run (Trainer, data loading included) on the small synthetic dataset."""
    from personsearch.config import load_config
    from personsearch.data.synthetic import generate_dataset
    from personsearch.engine.trainer import Trainer

    work = Path(args.work or tempfile.mkdtemp(prefix="ps-speed-"))
    root = work / "CUHK-SYSU"
    if not (root / "annotation").is_dir():
        generate_dataset("cuhk-sysu", root, "small", 0)
    overrides = [
        f"dataset.root={root}",
        f"output_dir={work / 'run'}",
        f"train.device={args.device}",
        f"train.amp={args.amp}",
        "train.epochs=1",
        f"train.max_iters_per_epoch={args.real_iters}",
        "train.eval_period=-1",
        "train.tensorboard=false",
        "train.checkpoint_period=1",
        "model.backbone.pretrained=none",
        "train.batch_size=4",
    ]
    trainer = Trainer(load_config(None, overrides), progress=False, overwrite=True)  # a re-run replaces its own run
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {
        "case": "real-training",
        "iterations": args.real_iters,
        "seconds": seconds,
        "iters_per_s": args.real_iters / seconds,
        "peak_rss_mib": peak_rss_mib(),
    }


def _child(case: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", case, *args.passthrough]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        return {"case": case, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _seconds(x: float) -> str:
    """Seconds, or milliseconds below one second (GPU timings)."""
    return f"{x:.2f} s" if x >= 1 else f"{x * 1000:.1f} ms"


def _fmt(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['case']:<12} error: {r['error']}"
    parts = [f"{r['case']:<12} {r['size'][0]}x{r['size'][1]}"]
    if "train_iters_per_s" in r:
        parts.append(
            f"train {_seconds(r['train_s_per_iter']):>9}/iter ({r['train_images_per_s']:.3f} img/s, batch {r['batch']})"
        )
    parts.append(
        f"infer {_seconds(r['infer_s_per_image']):>9}/img ({r['infer_images_per_s']:.3f} img/s, "
        f"{r['detections_per_image']:.0f} dets)"
    )
    parts.append(f"peak RSS {r['peak_rss_mib']:.0f} MiB")
    if "peak_cuda_mib" in r:
        parts.append(f"peak CUDA {r['peak_cuda_mib']:.0f} MiB")
    return " | ".join(parts) + f"\n{'':12} {r['model']}"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--amp", default="off", choices=("off", "bf16", "fp16"), help="autocast on CUDA")
    p.add_argument("--cases", nargs="+", default=["paper", "torchvision", "demo"])
    p.add_argument("--train-iters", type=int, default=2, help="timed training iterations, paper size")
    p.add_argument("--infer-images", type=int, default=3, help="timed inference images, paper size")
    p.add_argument("--paper-batch", type=int, default=1, help="images per training iteration, paper size")
    p.add_argument("--demo-config", default=str(ROOT / "configs" / "synthetic_cpu.yaml"))
    p.add_argument("--demo-train-iters", type=int, default=4)
    p.add_argument("--demo-infer-images", type=int, default=8)
    p.add_argument("--real-training", action="store_true", help="also a short real training (default on CUDA)")
    p.add_argument("--real-iters", type=int, default=20, help="iterations of the real training")
    p.add_argument("--work", help="folder for the real training's synthetic data and run")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device.startswith("cuda"):
        args.train_iters = max(args.train_iters, 10)
        args.infer_images = max(args.infer_images, 20)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if args.child:
        result = real_training(args) if args.child == "real-training" else run_case(args.child, args)
        print(json.dumps(result))
        return 0
    args.passthrough = [a for a in argv if a != "--real-training"]
    import torch

    load = os.getloadavg()
    print(
        f"torch {torch.__version__}, device {args.device}, amp {args.amp}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} intra-op threads, load average {load[0]:.1f} / {load[1]:.1f} (1 / 5 min)"
    )
    results = {}
    for case in args.cases:
        start = time.perf_counter()
        results[case] = r = _child(case, args)
        print(_fmt(r) + f"\n{'':12} ({time.perf_counter() - start:.0f} s incl. start-up)", flush=True)
    ours, tv = results.get("paper", {}), results.get("torchvision", {})
    if "infer_s_per_image" in ours and "infer_s_per_image" in tv:
        ratio = ours["infer_s_per_image"] / tv["infer_s_per_image"]
        print(
            f"inference time ours / torchvision Faster R-CNN R50-FPN at {PAPER_SIZE[0]}x{PAPER_SIZE[1]}: "
            f"{ratio:.2f}x ({_seconds(ours['infer_s_per_image'])} vs {_seconds(tv['infer_s_per_image'])} per image)"
        )
    if args.real_training or args.device.startswith("cuda"):
        r = _child("real-training", args)
        if "error" in r:
            print(f"real training: error: {r['error']}")
        else:
            print(
                f"real training ({r['iterations']} iterations, batch 4, paper-size model, small synthetic "
                f"data): {r['seconds']:.1f} s, {r['iters_per_s']:.2f} it/s, peak RSS {r['peak_rss_mib']:.0f} MiB"
            )
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.1f} / {load[1]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

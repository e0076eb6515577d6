"""Inference time of end-to-end vs two-step search on the same gallery images (issue 10, README).

End-to-end: the student detects and embeds every person in one forward pass. Two-step: the same student's
detections, each re-embedded by the crop teacher (``test --two-step``). Both run on the same images, decoded
beforehand, after one warm-up image each; the figure is seconds per image and the ratio two-step / end-to-end.

Usage:
  python benchmarks/two_step_speed.py --checkpoint STUDENT.pth --teacher TEACHER.pth --root DATA
      [--dataset cuhk-sysu] [--images 20] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a student checkpoint (train)")
    parser.add_argument("--teacher", type=Path, required=True, help="a teacher checkpoint (train-teacher)")
    parser.add_argument("--root", type=Path, required=True, help="dataset folder")
    parser.add_argument("--dataset", default="cuhk-sysu", choices=("cuhk-sysu", "prw"))
    parser.add_argument("--images", type=int, default=20, help="gallery images timed")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from personsearch.data import load_dataset
    from personsearch.distill.teacher import load_teacher
    from personsearch.distill.two_step import time_pipelines
    from personsearch.engine.loading import load_trained_model

    model, _, device = load_trained_model(args.checkpoint, args.device)
    teacher, _ = load_teacher(args.teacher, device)
    data = load_dataset(args.dataset, args.root)
    figures = time_pipelines(model, teacher, data, device, images=args.images)
    figures.update(threads=args.threads, device=str(device), checkpoint=str(args.checkpoint), teacher=str(args.teacher))
    print(
        f"end-to-end {1000 * figures['end_to_end_s']:.0f} ms/image, two-step {1000 * figures['two_step_s']:.0f} "
        f"ms/image: ratio {figures['ratio']:.2f}x ({figures['images']} images, {args.threads} thread(s), {device})"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Turn a synthetic dataset's test split into "own footage" for the demo: plain files, no dataset files.

    python scripts/demo_footage.py --root DATA/CUHK-SYSU --out DEMO/footage [--video-images 30] [--query 0]

Writes ``OUT/images/*.jpg`` (every gallery image, copied), ``OUT/street.mp4`` (the first ``--video-images``
gallery images, each shown for one second, all scaled to the first one's size; MPEG-4 through PyAV) and
``OUT/query.jpg`` (the query image of query ``--query``), and prints the query box as ``x1,y1,x2,y2`` on
the last line, for ``personsearch query --image OUT/query.jpg --box ...``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import av
import numpy as np
from PIL import Image

from personsearch.data import load_dataset


def write_video(images: list[Path], out: Path, seconds_each: int = 1) -> None:
    """``images`` as an MPEG-4 video at 1 frame per second, every frame the size of the first image."""
    first = Image.open(images[0]).convert("RGB")
    width, height = (first.width // 2) * 2, (first.height // 2) * 2  # the encoder needs even sizes
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 4_000_000
        for path in images:
            rgb = np.asarray(Image.open(path).convert("RGB").resize((width, height)))
            for _ in range(seconds_each):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="synthetic CUHK-SYSU-format dataset")
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.add_argument("--video-images", type=int, default=30, help="gallery images put into the video")
    parser.add_argument("--query", type=int, default=0, help="which query of the test split")
    args = parser.parse_args()
    data = load_dataset("cuhk-sysu", args.root)
    images = args.out / "images"
    if args.out.exists():
        shutil.rmtree(args.out)
    images.mkdir(parents=True)
    query = data.queries[args.query]
    for record in data.gallery:
        if record.name != query.name:  # the query image is the one thing the index has not seen
            shutil.copyfile(record.path, images / record.name)
    in_video = [r.path for r in data.gallery if r.name != query.name][: args.video_images]
    write_video(in_video, args.out / "street.mp4")
    shutil.copyfile(query.path, args.out / "query.jpg")
    print(f"footage: {images} ({len(data.gallery) - 1} images), {args.out / 'street.mp4'} ({len(in_video)} s)")
    print(",".join(str(int(v)) for v in np.asarray(query.box)))


if __name__ == "__main__":
    main()

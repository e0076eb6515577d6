"""Size presets of the synthetic datasets (``tiny`` for tests, ``small`` for the CPU demo, ``medium``).

PRW frames are scaled down uniformly by ``prw_scale`` from the real 1920×1080 (cameras 1–5) and
720×576 (camera 6) sizes, so both aspect ratios and the relative resolution of camera 6 are kept.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """How much data one preset draws."""

    name: str
    # CUHK-SYSU
    cuhk_train_images: int
    cuhk_pool_images: int
    cuhk_train_ids: int
    cuhk_test_ids: int  # one query per test identity, as in the real protocol
    cuhk_sizes: tuple[tuple[int, int], ...]  # candidate (width, height) of scene images
    # PRW
    prw_train_frames: int
    prw_test_frames: int
    prw_train_ids: int
    prw_test_ids: int
    prw_scale: float
    prw_queries_per_id: int
    # both
    max_appearances: int  # most scenes one identity is drawn in
    max_people: int  # most people in one scene
    progress: bool  # show a tqdm bar


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        cuhk_train_images=40,
        cuhk_pool_images=56,
        cuhk_train_ids=12,
        cuhk_test_ids=10,
        cuhk_sizes=((400, 300), (320, 400), (480, 360), (360, 360)),
        prw_train_frames=36,
        prw_test_frames=40,
        prw_train_ids=12,
        prw_test_ids=8,
        prw_scale=0.25,
        prw_queries_per_id=2,
        max_appearances=4,
        max_people=5,
        progress=False,
    ),
    "small": Preset(
        name="small",
        cuhk_train_images=200,
        cuhk_pool_images=150,
        cuhk_train_ids=80,
        cuhk_test_ids=50,
        cuhk_sizes=((480, 360), (640, 480), (560, 420), (480, 480), (600, 400)),
        prw_train_frames=200,
        prw_test_frames=160,
        prw_train_ids=60,
        prw_test_ids=40,
        prw_scale=1 / 3,
        prw_queries_per_id=3,
        max_appearances=6,
        max_people=6,
        progress=True,
    ),
    "medium": Preset(
        name="medium",
        cuhk_train_images=800,
        cuhk_pool_images=620,
        cuhk_train_ids=300,
        cuhk_test_ids=200,
        cuhk_sizes=((480, 360), (640, 480), (800, 600), (600, 800), (720, 480)),
        prw_train_frames=700,
        prw_test_frames=600,
        prw_train_ids=200,
        prw_test_ids=150,
        prw_scale=0.5,
        prw_queries_per_id=4,
        max_appearances=7,
        max_people=8,
        progress=True,
    ),
}

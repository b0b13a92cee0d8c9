"""Shards of the synthetic motion dataset for training and evaluation tests, made by the real pipeline.

``synthetic_shards`` (session-scoped, read-only) runs what a user runs: ``pipeline.synthetic.generate`` writes H.264
videos in the UCF101 layout (split 1 lists), then ``pipeline.shards.job.run_shard_job`` on the test Ray cluster
writes ``train/`` (2 pre-sampled views per video) and ``test/`` (1 centre view) shards of 4-segment clips.

Its four classes are pan left / right and zoom in / out: single frames look alike in every class
(pipeline/synthetic/render.py), so only a model that sees motion beats chance -- the training tests use that
to tell TDN from TSN. (Of the motions tried, whole-frame pans and zooms are the ones a tiny TDN learns within
a CPU test's budget; object translations need many more steps.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.datasets import DatasetConfig
from pipeline.shards.job import ShardConfig, SplitShardConfig, run_shard_job
from pipeline.synthetic.generate import SyntheticConfig, generate

MOTIONS = ("pan_left", "pan_right", "zoom_in", "zoom_out")
NUM_SEGMENTS = 4

# 44 videos per class over UCF101's 25 groups: split 1 tests on groups 1-7 -> 30 train + 14 test per class.
SYNTHETIC_MOTION = SyntheticConfig(
    classes=len(MOTIONS),
    motions=MOTIONS,
    videos_per_class=44,
    seed=7,
    codec="h264",
    layout="ucf101",
    min_frames=28,
    max_frames=44,
    sizes=((64, 64),),
    fps=(25,),
)


def make_synthetic_shards(root: Path) -> Path:
    """Videos under ``root/videos``, shards under ``root/shards`` (returned); needs a connected Ray."""
    generate(SYNTHETIC_MOTION, root / "videos")
    out = root / "shards"
    summary = run_shard_job(
        ShardConfig(
            dataset=DatasetConfig(format="ucf101", root=str(root / "videos"), split_number=1),
            output=str(out),
            splits=["train", "test"],
            num_segments=NUM_SEGMENTS,
            train=SplitShardConfig("train", 2, 64),
            test=SplitShardConfig("centre", 1, 64),
            videos_per_shard=32,
            seed=7,
            progress_interval_s=60.0,
        )
    )
    if not summary.ok:
        raise RuntimeError(f"shard job failed: {summary}")
    return out


@pytest.fixture(scope="session")
def synthetic_shards(ray_cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shard root with ``train/`` (120 videos x 2 views) and ``test/`` (56 videos), 4 classes, 4 segments,
    64x64 frames. Read-only."""
    return make_synthetic_shards(tmp_path_factory.mktemp("synthetic_shards"))

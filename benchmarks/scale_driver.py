"""The driver-side steps whose cost per video must stay constant, as (input builder, step) pairs.

Each ``DriverCase`` builds its input for N videos (or N shards) outside any timing and runs one real library
step on it; ``benchmarks/scaling.growth_ratio`` times it at two sizes. tests/test_scale.py asserts that 4x N
costs less than 8x for every case (linear: about 4x; quadratic: 16x), and benchmarks/scale.py prints the
ratios beside the cluster figures.

    plan_shards        pipeline/shards/job.py       N videos -> shard tasks (sort by seeded hash, cut)
    build_index        pipeline/shards/writer.py    N sidecars -> ShardIndex -> index.json text
    parse_index        pipeline/shards/contract.py  index.json text of N shards -> ShardIndex (checksum)
    epoch_plan         pipeline/loading/planning.py N shards -> every loader worker's slices of an epoch
    listed_entries     pipeline/loading/shard_reading.py  N shard URIs, one call each -> index entries
    aggregate_scores   tdn/evaluation/metrics.py    N videos x 30 views -> per-video mean scores
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.datasets import DatasetConfig, VideoRecord
from pipeline.loading.config import LoaderConfig
from pipeline.loading.planning import epoch_plan
from pipeline.loading.shard_reading import listed_entries
from pipeline.shards.contract import ResizeSettings, SamplingSettings, ShardIndex, ShardSidecar
from pipeline.shards.job import ShardConfig, plan_shards
from pipeline.shards.writer import build_index
from tdn.evaluation.metrics import merge_partials, partial_sums

VIEWS = 30  # 10 clips x 3 crops: the Kinetics evaluation protocol
CLASSES = 16  # enough to make the score rows real work; the cost per class is the same at 400


@dataclass(frozen=True)
class DriverCase:
    name: str  # what is measured
    unit: str  # what N counts
    make_input: Callable[[int], Any]  # N -> the step's input (built outside the timing)
    step: Callable[[Any], object]  # the library step on that input
    small: int = 200  # N of the first timing
    large: int = 800  # N of the second (4x: linear ~4x the time, quadratic ~16x)


def _records(n: int) -> list[VideoRecord]:
    return [
        VideoRecord(f"class{i % 400:03d}/clip_{i:07d}", f"/videos/clip_{i:07d}.mp4", i % 400, "train")
        for i in range(n)
    ]


def _sidecars(n: int) -> list[ShardSidecar]:
    return [
        ShardSidecar(
            name=f"shard-{i:06d}.tar",
            split="train",
            samples=8,
            videos=4,
            bytes=1 << 20,
            sha256=hashlib.sha256(str(i).encode()).hexdigest(),
            video_ids=[f"clip_{4 * i + k:07d}" for k in range(4)],
            clamped=[],
            quarantine=[],
        )
        for i in range(n)
    ]


def shard_index(num_shards: int) -> ShardIndex:
    """The index of a split of ``num_shards`` shards of 4 videos (2 views each)."""
    return build_index(
        split="train",
        dataset="scale",
        classes=[f"class{c:03d}" for c in range(400)],
        sidecars=_sidecars(num_shards),
        views_per_video=2,
        sampling=SamplingSettings("train", 8, 5, 2, 0, 4),
        resize=ResizeSettings(short_side=320, jpeg_quality=90, context_scale=1, jpeg_encoder="simplejpeg"),
        annotation_checksums={"train.csv": "0" * 64},
        quarantined=0,
    )


_TMP: tempfile.TemporaryDirectory | None = None


def _split_folder(num_shards: int) -> list[str]:
    """A split folder holding only an index.json of ``num_shards`` shards; returns the shard URIs."""
    global _TMP
    if _TMP is None:
        _TMP = tempfile.TemporaryDirectory(prefix="tdn-scale-")  # removed at exit
    folder = Path(tempfile.mkdtemp(dir=_TMP.name))
    index = shard_index(num_shards)
    (folder / "index.json").write_text(index.to_json(indent=1))
    return [str(folder / s.name) for s in index.shards]


def _views(n: int) -> tuple[list[str], list[int], list[int], list[int], np.ndarray]:
    """Per-view inputs of ``partial_sums``: N videos x VIEWS views, in an evaluation's batch order."""
    ids = [f"clip_{i // VIEWS:07d}" for i in range(n * VIEWS)]
    views = [(i % VIEWS) // 3 for i in range(n * VIEWS)]
    crops = [i % 3 for i in range(n * VIEWS)]
    labels = [(i // VIEWS) % CLASSES for i in range(n * VIEWS)]
    probs = np.random.default_rng(0).random((n * VIEWS, CLASSES), dtype=np.float32)
    return ids, views, crops, labels, probs


def _aggregate(args: tuple[list[str], list[int], list[int], list[int], np.ndarray]) -> object:
    ids, views, crops, labels, probs = args
    half = len(ids) // 2  # two workers' partial sums, merged on the driver
    parts = [
        partial_sums(ids[:half], views[:half], crops[:half], labels[:half], probs[:half]),
        partial_sums(ids[half:], views[half:], crops[half:], labels[half:], probs[half:]),
    ]
    return merge_partials(parts, expected_views=VIEWS)


_SHARD_CFG = ShardConfig(
    dataset=DatasetConfig(format="csv", root="/videos"), output="/tmp/unused", videos_per_shard=4
)
_LOADER_CFG = LoaderConfig(batch_size=8, num_workers=4)


def driver_cases() -> list[DriverCase]:
    return [
        DriverCase("plan_shards", "videos", _records, lambda r: plan_shards(_SHARD_CFG, "train", r)),
        DriverCase(
            "build_index",
            "shards",
            _sidecars,
            lambda s: build_index(
                split="train",
                dataset="scale",
                classes=["a"],
                sidecars=s,
                views_per_video=2,
                sampling=SamplingSettings("train", 8, 5, 2, 0, 4),
                resize=ResizeSettings(short_side=320, jpeg_quality=90, context_scale=1),
                annotation_checksums={},
                quarantined=0,
            ).to_json(indent=1),
        ),
        DriverCase(
            "parse_index",
            "shards",
            lambda n: shard_index(n).to_json(indent=1),
            lambda text: ShardIndex.from_json(text, "index.json"),
        ),
        DriverCase(
            "epoch_plan",
            "shards",
            lambda n: (shard_index(n), [f"s{i}" for i in range(n)]),
            lambda a: [epoch_plan(a[0], a[1], _LOADER_CFG, r, 8, 4, 1, 0) for r in range(8)],
        ),
        # one call per shard, as evaluation replicas make them (each reading the index was O(shards^2))
        DriverCase(
            "listed_entries", "shards", _split_folder, lambda uris: [listed_entries([u]) for u in uris]
        ),
        DriverCase("aggregate_scores", "videos", _views, _aggregate),
    ]

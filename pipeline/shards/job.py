"""The shard job: dataset annotations + videos -> WebDataset shards of pre-sampled views, on Ray Data.

    summary = run_shard_job(load_config(ShardConfig, "jobs/configs/shard_ucf101.yaml"))

Flow (driver):
    load_dataset -> per split: order videos (seeded hash of video_id, so shards mix classes), cut into
    shards of ``videos_per_shard`` -> one Ray Data row per shard -> ``write_shard`` (one task per shard,
    num_cpus=1) -> per split quarantine.jsonl and index.json (written last).

The assignment of videos to shards depends only on the video ids, the seed and ``videos_per_shard``, and the
sampling only on (seed, video_id, split), so a re-run after a crash skips the finished shards and rewrites the
others byte for byte: the result is identical to an uninterrupted run. Plain tasks (not a fixed actor pool)
avoid the Ray Data deadlock of a pool that takes every CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pipeline import storage
from pipeline.config import ConfigError
from pipeline.datasets import DatasetConfig, DatasetIndex, VideoRecord, load_dataset
from pipeline.disk import DiskFullError
from pipeline.errors import InputError
from pipeline.forwarded_env import forwardable, refuse_secrets, runtime_env
from pipeline.ray_connect import init_ray
from pipeline.shards.contract import (
    DryRunReport,
    DryRunSplit,
    QuarantineEntry,
    ResizeSettings,
    SamplingSettings,
    ShardJobSummary,
    SplitSummary,
)
from pipeline.shards.sampling import WINDOW, CentreSampler, MultiClipSampler, Sampler, TrainSampler
from pipeline.shards.temp_files import remove_stale_temporaries
from pipeline.shards.writer import (
    EncodeSettings,
    ShardResult,
    ShardTask,
    VideoItem,
    build_index,
    write_shard_row,
)


@dataclass
class SplitShardConfig:
    """How one split is sampled and stored."""

    # train: random views; centre: 1 centre clip; multiclip: views clips
    sampler: Literal["train", "centre", "multiclip"] = "centre"
    views: int = 1  # train: pre-sampled views per video; multiclip: clips per video; centre: 1
    short_side: int = 256  # shorter side of stored frames (0 keeps the source size)
    # False: a source whose shorter side is short_side or less is stored at its own size. Nothing is lost:
    # training crops are fractions of the frame and eval scaling maps onto any stored size
    # (pipeline/loading/transforms.py).
    upscale: bool = True

    def __post_init__(self) -> None:
        if self.views < 1:
            raise ValueError(f"views must be >= 1, got {self.views}")
        if self.sampler == "centre" and self.views != 1:
            raise ValueError("the centre sampler makes exactly 1 view; use sampler: multiclip for more")
        if self.short_side < 0:
            raise ValueError(f"short_side must be >= 0, got {self.short_side}")


@dataclass
class ShardConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    output: str = "data/shards"  # local folder or s3://bucket/prefix; splits go to <output>/<split>/
    # empty: every split the dataset has; a split named here that the dataset lacks is an error
    splits: list[str] = field(default_factory=list)
    num_segments: int = 8  # segments T per clip (the model's num_segments)
    train: SplitShardConfig = field(default_factory=lambda: SplitShardConfig("train", 2, 320))
    val: SplitShardConfig = field(default_factory=lambda: SplitShardConfig("centre", 1, 256))
    test: SplitShardConfig = field(default_factory=lambda: SplitShardConfig("centre", 1, 256))
    jpeg_quality: int = 90  # JPEG quality of stored frames
    context_scale: Literal[1, 2] = 1  # 2: frames used only for differences stored at half resolution
    # "simplejpeg" encodes the resized YUV planes directly (no RGB conversion): ~2.5x less CPU per stored frame
    # than "pil" (RGB + PIL). Both are deterministic (odd-sized planes are edge-padded for libjpeg-turbo's MCU
    # reads), so a resumed job writes the same bytes.
    jpeg_encoder: Literal["pil", "simplejpeg"] = "simplejpeg"
    # Why 64 (jobs/capacity.py, docs/cluster.md "Defaults and why"): K400 tars of 180-320 MB (2.8-5 MB of
    # JPEGs per video with 2 views), inside WebDataset's 100 MB-1 GB; 3,757 train shards = 20 % of one S3
    # prefix's 5,500 GET/s at 64 GPUs and ~10 shards per loader worker per epoch to shuffle across; tasks of
    # 18-66 CPU-s.
    videos_per_shard: int = 64  # videos per tar file (one Ray task each)
    seed: int = 0  # seed of the pre-sampled views (per video, so reruns write the same shards)
    max_failed_fraction: float = 0.05  # exit non-zero above this fraction of quarantined + missing videos
    min_decoded_fraction: float = 0.5  # a file decoding to fewer frames than this share of packets is bad
    decode_threads: int = 1  # per task; tasks already fill the CPUs
    progress_interval_s: float = 10.0  # seconds between progress lines
    max_videos_per_split: int = 0  # 0 = all; a prefix of the shard order, for trial runs
    # a class with no video in the train split: a warning; strict: an error (the model never sees it)
    strict: bool = False
    # environment variables passed to the Ray tasks besides pipeline.forwarded_env.FORWARDED_ENV (S3 endpoint,
    # region, MLflow settings); never secrets: Ray writes runtime_env values into world-readable logs
    forward_env: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.videos_per_shard < 1:
            raise ValueError(f"videos_per_shard must be >= 1, got {self.videos_per_shard}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        refuse_secrets(self.forward_env, "forward_env")
        for name in self.splits:
            if name not in ("train", "val", "test"):
                raise ValueError(f"unknown split {name!r}; splits are train, val, test")

    def split_config(self, split: str) -> SplitShardConfig:
        if split == "train":
            return self.train
        if split == "val":
            return self.val
        if split == "test":
            return self.test
        raise ValueError(f"unknown split {split!r}")

    def sampler(self, split: str) -> Sampler:
        sc = self.split_config(split)
        if sc.sampler == "train":
            return TrainSampler(self.num_segments, sc.views)
        if sc.sampler == "multiclip":
            return MultiClipSampler(self.num_segments, sc.views)
        return CentreSampler(self.num_segments)

    def encode_settings(self, split: str) -> EncodeSettings:
        return EncodeSettings(
            short_side=self.split_config(split).short_side,
            jpeg_quality=self.jpeg_quality,
            upscale=self.split_config(split).upscale,
            context_scale=self.context_scale,
            jpeg_encoder=self.jpeg_encoder,
            decode_threads=self.decode_threads,
            min_decoded_fraction=self.min_decoded_fraction,
        )


def shard_order_key(seed: int, video_id: str) -> str:
    """Videos are ordered by a seeded hash of their id: stable for a dataset whatever the listing order,
    and shards mix classes (ids usually start with the class name), which helps shuffle buffers."""
    return hashlib.sha256(f"{seed}\x00{video_id}".encode()).hexdigest()


def plan_shards(cfg: ShardConfig, split: str, records: list[VideoRecord]) -> list[ShardTask]:
    """Deterministic assignment of a split's videos to shard tasks."""
    ordered = sorted(records, key=lambda r: (shard_order_key(cfg.seed, r.video_id), r.video_id))
    if cfg.max_videos_per_split > 0:
        ordered = ordered[: cfg.max_videos_per_split]
    split_dir = storage.join(cfg.output, split)
    sampler, settings = cfg.sampler(split), cfg.encode_settings(split)
    n = cfg.videos_per_shard
    return [
        ShardTask(
            split=split,
            shard_index=i // n,
            split_dir=split_dir,
            sampler=sampler,
            seed=cfg.seed,
            encode=settings,
            videos=tuple(VideoItem(r.video_id, r.path, r.label, split) for r in ordered[i : i + n]),
        )
        for i in range(0, len(ordered), n)
    ]


def _sampling_settings(cfg: ShardConfig, split: str) -> SamplingSettings:
    sc = cfg.split_config(split)
    return SamplingSettings(
        sampler=sc.sampler,
        num_segments=cfg.num_segments,
        window=WINDOW,
        views=sc.views,
        seed=cfg.seed,
        videos_per_shard=cfg.videos_per_shard,
    )


def _resize_settings(cfg: ShardConfig, split: str) -> ResizeSettings:
    sc = cfg.split_config(split)
    return ResizeSettings(
        short_side=sc.short_side,
        upscale=sc.upscale,
        jpeg_quality=cfg.jpeg_quality,
        context_scale=cfg.context_scale,
        jpeg_encoder=cfg.jpeg_encoder,
    )


def _missing_entries(index: DatasetIndex, split: str) -> list[QuarantineEntry]:
    return [
        QuarantineEntry(
            path=m.path,
            video_id=m.video_id,
            stage="missing",
            error="listed in the annotations, not found on storage",
        )
        for m in index.missing.get(split, [])
    ]


class _Progress:
    def __init__(self, total_shards: int, total_videos: int, interval_s: float) -> None:
        self.total_shards, self.total_videos, self.interval_s = total_shards, total_videos, interval_s
        self.start = self.last = time.monotonic()
        self.shards = self.videos = self.processed = self.quarantined = self.skipped = self.replaced = 0

    def update(self, result: ShardResult, videos_in_task: int) -> None:
        self.shards += 1
        self.videos += videos_in_task
        self.quarantined += len(result.sidecar.quarantine)
        self.replaced += result.replaced
        if result.skipped:
            self.skipped += 1
        else:
            self.processed += videos_in_task
        now = time.monotonic()
        if now - self.last >= self.interval_s or self.shards == self.total_shards:
            self.last = now
            print(self.line(), flush=True)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        replaced = f", {self.replaced} rewritten: made from other videos or settings" if self.replaced else ""
        return (
            f"[shard] {self.shards}/{self.total_shards} shards ({self.skipped} already done{replaced}), "
            f"{self.videos}/{self.total_videos} videos, {self.processed / elapsed:.1f} videos/s, "
            f"{self.quarantined} quarantined, {elapsed:.0f}s"
        )


def wanted_splits(cfg: ShardConfig, index: DatasetIndex) -> list[str]:
    """``cfg.splits``, or every split the dataset has (train, val, test order) when none is configured. A split
    named in the config that the dataset lacks is a typo or the wrong dataset: an error, never skipped quietly."""
    present = set(index.splits) | set(index.missing)
    if not cfg.splits:
        return [s for s in ("train", "val", "test") if s in present]
    absent = [s for s in cfg.splits if s not in present]
    if absent:
        raise InputError(
            f"dataset {index.name} at {cfg.dataset.root} has no split {', '.join(absent)} "
            f"(it has {', '.join(sorted(present))})"
        )
    return list(cfg.splits)


def classes_without_training_videos(index: DatasetIndex) -> list[str]:
    """The classes no video of the train split has (found ones: a missing video trains nothing either)."""
    if "train" not in index.splits and "train" not in index.missing:
        return []
    seen = {v.label for v in index.splits.get("train", [])}
    return [name for i, name in enumerate(index.classes) if i not in seen]


def check_classes(cfg: ShardConfig, index: DatasetIndex) -> list[str]:
    """One warning line for classes without training videos, or ConfigError with ``strict``."""
    empty = classes_without_training_videos(index)
    if empty:
        names = ", ".join(empty[:10]) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
        message = f"{len(empty)} class(es) have no training video: {names}"
        if cfg.strict:
            raise ConfigError(f"{message} (strict: true)")
        print(f"[shard] warning: {message}; the model will never predict them", file=sys.stderr, flush=True)
    return empty


def dry_run(cfg: ShardConfig) -> DryRunReport:
    """Counts only, nothing written: per split listed / found / missing videos, the number of classes and
    the classes without a training video."""
    index = load_dataset(dataclasses.replace(cfg.dataset, check_exists=True))
    splits = {}
    for split in wanted_splits(cfg, index):
        found, missing = len(index.splits.get(split, [])), len(index.missing.get(split, []))
        splits[split] = DryRunSplit(listed=found + missing, found=found, missing=missing)
    empty = check_classes(cfg, index)
    return DryRunReport(
        dataset=index.name, num_classes=len(index.classes), splits=splits, empty_classes=empty
    )


def run_shard_job(cfg: ShardConfig, address: str | None = None) -> ShardJobSummary:
    """Write every configured split; returns the summary (jobs/shard.py prints it).

    ``summary.ok`` is False when the failed fraction (quarantined + missing over listed) of some split
    exceeds ``max_failed_fraction``.
    """
    import ray  # here, not at the top: jobs/shard.py --dry-run and the config never need Ray

    start = time.monotonic()
    index = load_dataset(cfg.dataset)
    check_classes(cfg, index)
    splits = [
        s for s in wanted_splits(cfg, index) if s in index.splits
    ]  # a split of only missing videos: none
    tasks = [t for s in splits for t in plan_shards(cfg, s, index.splits[s])]
    total_videos = sum(len(t.videos) for t in tasks)
    print(f"[shard] {index.name}: {total_videos} videos in {len(tasks)} shards -> {cfg.output}", flush=True)

    results: list[tuple[ShardTask, ShardResult]] = []
    if tasks:
        init_ray(address)
        remote_args: dict[str, Any] = {"num_cpus": 1}
        env = runtime_env(forwardable(cfg.forward_env))
        if env:
            remote_args["runtime_env"] = env
        rows = [{"task": pickle.dumps(t), "id": i} for i, t in enumerate(tasks)]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map(write_shard_row, **remote_args)
        progress = _Progress(len(tasks), total_videos, cfg.progress_interval_s)
        # Ray Data's row iterable hands out a generator: closing it shuts the executor down (below)
        written = cast(Generator[dict[str, Any], None, None], iter(ds.iter_rows()))
        for row in written:
            if row["disk_full"]:  # pipeline/disk.py: one line naming the shard, no retry can help
                written.close()  # no task starts after this; the running ones are cancelled (killed)
                _clear_partials([storage.join(cfg.output, s) for s in splits])
                raise DiskFullError(row["disk_full"])
            task = tasks[int(row["id"])]
            result = ShardResult.from_row(row)
            results.append((task, result))
            progress.update(result, len(task.videos))

    summaries: dict[str, SplitSummary] = {}
    for split in splits:
        split_results = sorted((r for t, r in results if t.split == split), key=lambda r: r.sidecar.name)
        summaries[split] = _finish_split(cfg, index, split, split_results)
    elapsed = time.monotonic() - start
    processed = sum(len(t.videos) for t, r in results if not r.skipped)
    return ShardJobSummary(
        dataset=index.name,
        output=cfg.output,
        splits=summaries,
        ok=all(s.failed_fraction <= cfg.max_failed_fraction for s in summaries.values()),
        seconds=round(elapsed, 3),
        videos_per_s=round(processed / elapsed, 3) if elapsed > 0 else 0.0,
    )


def _clear_partials(split_dirs: list[str], timeout_s: float = 120.0) -> None:
    """After a full disk, with Ray Data's executor shut down (its running tasks' workers killed: their
    temporaries are stale), remove what is left, so the job leaves whole shards only. Clearing before the
    shutdown raced: a task started after the last check and was killed with the job, its temporary left."""
    deadline = time.monotonic() + timeout_s
    while True:
        for split_dir in split_dirs:
            remove_stale_temporaries(split_dir)
        left = [n for d in split_dirs if os.path.isdir(d) for n in os.listdir(d) if n.endswith(".partial")]
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def _finish_split(
    cfg: ShardConfig, index: DatasetIndex, split: str, results: list[ShardResult]
) -> SplitSummary:
    """quarantine.jsonl then index.json (last: its presence means the split is complete)."""
    split_dir = storage.join(cfg.output, split)
    quarantine = _missing_entries(index, split) + [q for r in results for q in r.sidecar.quarantine]
    quarantine.sort(key=lambda q: (q.video_id, q.stage))
    storage.write_text_atomic(
        storage.join(split_dir, "quarantine.jsonl"), "".join(q.to_json() + "\n" for q in quarantine)
    )
    shard_index = build_index(
        split=split,
        dataset=index.name,
        classes=index.classes,
        sidecars=[r.sidecar for r in results],
        views_per_video=cfg.split_config(split).views,
        sampling=_sampling_settings(cfg, split),
        resize=_resize_settings(cfg, split),
        annotation_checksums=index.annotation_checksums,
        quarantined=len(quarantine),
    )
    storage.write_text_atomic(storage.join(split_dir, "index.json"), shard_index.to_json(indent=1))
    remove_stale_temporaries(split_dir)
    listed = len(index.splits[split]) + len(index.missing.get(split, []))
    if cfg.max_videos_per_split > 0:
        listed = min(listed, cfg.max_videos_per_split + len(index.missing.get(split, [])))
    return SplitSummary(
        listed=listed,
        missing=len(index.missing.get(split, [])),
        videos=shard_index.num_videos,
        samples=shard_index.num_samples,
        shards=len(shard_index.shards),
        shards_already_done=sum(r.skipped for r in results),
        shards_rewritten=sum(r.replaced for r in results),
        quarantined=len(quarantine),
        failed_fraction=round(len(quarantine) / listed, 6) if listed else 0.0,
        checksum=shard_index.checksum,
    )

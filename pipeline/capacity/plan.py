"""The capacity plan: measured unit costs x a dataset's size x a cluster's shape, arithmetic only.

    UnitCosts (benchmarks/unit_costs.json) --+
    DatasetShape (presets.py or explicit) ---+--> make_plan --> CapacityPlan: Figures, each naming the
    StorageLayout (from a ShardConfig) ------+                  unit cost (and its Source) it came from
    ClusterShape (CPU nodes, GPUs) ----------+

Modelling choices (each printed with the figures it affects):
- the shard job decodes a video once per split up to its last sampled frame, taken as the whole video
  (train views and the 10 eval clips reach its end); it stores views x segments x 5 JPEGs per video;
- CPU and bytes per stored JPEG scale with its area relative to the measured short side (a stored JPEG at
  short side 256 has (256/320)^2 of the pixels of one at 320), with 1/4 of the area for half-resolution
  neighbours (``context_scale`` 2: 4 of 5 frames);
- a training epoch is one clip per training video, and reads every byte of the train split once (a shard
  holds all views of its videos; the loader streams the whole tar and keeps the epoch's view): one GET per
  shard plus at most two per loader reader (pipeline/loading/planning.py: slices split shards only at ends);
- evaluation cost per view scales with the input area relative to 224^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from pipeline.capacity.presets import DatasetShape
from pipeline.capacity.unit_costs import GpuThroughput, LoaderCost, ShardCost, Source, UnitCosts
from pipeline.errors import InputError
from pipeline.shards.job import ShardConfig

# S3 serves at least 3,500 PUT and 5,500 GET requests per second per partitioned prefix (AWS S3 user guide,
# "Best practices design patterns: optimizing Amazon S3 performance").
S3_GETS_PER_S_PER_PREFIX = 5_500
# The same guide: "one concurrent request for each 85-90 MB/s of desired network throughput".
S3_MB_PER_S_PER_STREAM = 85
FRAMES_PER_WINDOW = 5  # TDN's window: the centre frame and 4 neighbours


class CapacityError(InputError):
    """The unit costs lack a figure the plan needs (a GPU type, a decode path): one line, exit 2."""


@dataclass(frozen=True)
class StorageLayout:
    """What the shard job stores per video (from a ShardConfig)."""

    num_segments: int  # segments T per clip
    train_views: int  # pre-sampled views per training video
    train_short_side: int  # shorter side of the stored training frames
    val_views: int  # stored clips per validation video (1 centre clip, or the 10 clips of 10x3)
    val_short_side: int  # shorter side of the stored validation frames
    videos_per_shard: int  # videos per tar
    context_scale: int  # 2: the 4 neighbour frames of a window stored at half resolution

    @classmethod
    def from_shard_config(cls, cfg: ShardConfig) -> StorageLayout:
        return cls(
            cfg.num_segments,
            cfg.train.views,
            cfg.train.short_side,
            cfg.val.views,
            cfg.val.short_side,
            cfg.videos_per_shard,
            cfg.context_scale,
        )


@dataclass(frozen=True)
class ClusterShape:
    """The cluster the plan is for."""

    cpu_nodes: int  # CPU nodes running the shard job
    cores_per_node: int  # cores of each CPU node
    gpus: int  # GPUs training (one DDP rank each) and evaluating (one replica each)
    gpu_type: str  # a gpu_type of the unit costs (H100, H200)
    loader_workers_per_gpu: int  # DataLoader workers per rank (readers, for the GET count)
    shuffle_buffer: int  # LoaderConfig.shuffle_buffer: raw samples held per loader worker

    def __post_init__(self) -> None:
        if min(self.cpu_nodes, self.cores_per_node, self.gpus, self.loader_workers_per_gpu) < 1:
            raise CapacityError("cpu_nodes, cores_per_node, gpus and loader_workers_per_gpu must be >= 1")


@dataclass(frozen=True)
class Figure:
    """One number of the plan and what it was computed from."""

    label: str  # what it is
    value: float
    unit: str
    basis: str  # the arithmetic, citing the unit costs it used by key ([shard], [gpu], ...)


@dataclass(frozen=True)
class Cited:
    """A unit cost a plan used, under the key its figures cite."""

    key: str  # e.g. "shard", "gpu"
    what: str  # which entry of the unit costs
    source: Source  # where it came from (measured, or an ASSUMPTION)


@dataclass(frozen=True)
class CapacityPlan:
    """The plan's figures, in print order."""

    shard_cpu_hours: Figure
    shard_wall_hours: Figure
    shard_bytes: Figure
    train_shard_mb: Figure
    shards: Figure
    s3_objects: Figure
    epoch_gpu_hours: Figure
    epoch_wall_s: Figure
    train_gets_per_s: Figure
    prefix_get_share: Figure
    train_mb_per_s: Figure
    s3_streams_per_gpu: Figure
    cores_per_gpu_cpu: Figure
    cores_per_gpu_device: Figure
    shuffle_buffer_gb_per_gpu: Figure
    eval_gpu_hours: Figure
    eval_wall_s: Figure
    eval_cores_per_gpu: Figure
    sources: tuple[Cited, ...]  # the unit costs the figures cite by key ([shard], [gpu], ...)

    def figures(self) -> tuple[Figure, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "sources")


def nearest_shard_cost(costs: UnitCosts, width: int, height: int, codec: str) -> ShardCost:
    """The measured resolution closest in pixel count (log scale), the same codec preferred."""
    if not costs.shard:
        raise CapacityError(
            "unit costs: no shard entry (run benchmarks/shard_throughput.py --write-unit-costs)"
        )
    return min(
        costs.shard,
        key=lambda s: (s.codec != codec, abs(math.log(s.source_width * s.source_height / (width * height)))),
    )


def loader_cost(costs: UnitCosts, decode: str, input_size: int = 224) -> LoaderCost:
    found = [c for c in costs.loader if c.decode == decode]
    if not found:
        raise CapacityError(f"unit costs: no loader entry for decode {decode!r}")
    return min(found, key=lambda c: abs(c.input_size - input_size))


def gpu_cost(costs: UnitCosts, gpu_type: str) -> GpuThroughput:
    for g in costs.gpu:
        if g.gpu_type == gpu_type:
            return g
    raise CapacityError(f"unit costs: no GPU entry {gpu_type!r}; known: {[g.gpu_type for g in costs.gpu]}")


def _area(short_side: int, measured: ShardCost, context_scale: int) -> float:
    """Stored pixels of a window's JPEG relative to one measured stored JPEG (module docstring)."""
    full = (short_side / measured.stored_short_side) ** 2
    return full if context_scale == 1 else full * (1 + (FRAMES_PER_WINDOW - 1) / 4) / FRAMES_PER_WINDOW


def make_plan(
    costs: UnitCosts, data: DatasetShape, layout: StorageLayout, cluster: ClusterShape
) -> CapacityPlan:
    shard = nearest_shard_cost(costs, data.width, data.height, data.codec)
    gpu, over = gpu_cost(costs, cluster.gpu_type), costs.overhead
    cpu_path, device_path = loader_cost(costs, "cpu"), loader_cost(costs, "device")
    cited = (
        Cited(
            "shard",
            f"{shard.source_width}x{shard.source_height} {shard.codec}, stored short side "
            f"{shard.stored_short_side}",
            shard.source,
        ),
        Cited("overhead", "shard job per-video overhead", over.source),
        Cited("gpu", f"{gpu.gpu_type} {gpu.model}", gpu.source),
        Cited("loader-cpu", f"decode cpu at {cpu_path.input_size} px", cpu_path.source),
        Cited("loader-device", f"decode device at {device_path.input_size} px", device_path.source),
    )
    frames = data.mean_duration_s * data.fps
    splits = (
        (data.train_videos, layout.train_views, layout.train_short_side),
        (data.val_videos, layout.val_views, layout.val_short_side),
    )
    cpu_s = bytes_ = 0.0
    shards = 0
    for videos, views, short in splits:
        jpegs = views * layout.num_segments * FRAMES_PER_WINDOW
        area = _area(short, shard, layout.context_scale)
        per_video = (
            frames * shard.cpu_s_per_decoded_frame
            + jpegs * area * shard.cpu_s_per_stored_jpeg
            + over.shard_cpu_s_per_video
        )
        cpu_s += videos * per_video
        bytes_ += videos * (jpegs * area * shard.bytes_per_stored_jpeg + over.index_bytes_per_video)
        shards += math.ceil(videos / layout.videos_per_shard)
    train_jpegs = layout.train_views * layout.num_segments * FRAMES_PER_WINDOW
    train_video_bytes = (
        train_jpegs
        * _area(layout.train_short_side, shard, layout.context_scale)
        * shard.bytes_per_stored_jpeg
    )
    train_bytes = data.train_videos * train_video_bytes
    train_shards = math.ceil(data.train_videos / layout.videos_per_shard)
    cores = cluster.cpu_nodes * cluster.cores_per_node
    task_s = layout.videos_per_shard * cpu_s / (data.train_videos + data.val_videos)
    epoch_s = data.train_videos / (gpu.train_clips_per_s * cluster.gpus)
    gets = train_shards + 2 * cluster.gpus * cluster.loader_workers_per_gpu
    eval_views_per_s = gpu.eval_views_per_s * (224 / data.eval_input_size) ** 2
    eval_views = data.val_videos * layout.val_views * data.eval_crops
    sample_mb = train_video_bytes / layout.train_views / 1e6
    return CapacityPlan(
        shard_cpu_hours=Figure(
            "CPU-hours to shard (train + val)",
            cpu_s / 3600,
            "CPU-h",
            f"{frames:.0f} decoded frames/video x {shard.cpu_s_per_decoded_frame * 1e3:.3f} ms "
            f"+ JPEGs x {shard.cpu_s_per_stored_jpeg * 1e3:.3f} ms x area [shard] + "
            f"{over.shard_cpu_s_per_video:.3f} s/video [overhead]",
        ),
        shard_wall_hours=Figure(
            f"shard wall time on {cluster.cpu_nodes} x {cluster.cores_per_node} cores",
            max(cpu_s / cores, task_s) / 3600,
            "h",
            f"CPU-hours / {cores} cores; one task per shard of {task_s:.0f} CPU-s",
        ),
        shard_bytes=Figure(
            "shard bytes on S3",
            bytes_ / 1e12,
            "TB",
            f"JPEGs x {shard.bytes_per_stored_jpeg / 1024:.1f} KiB x area [shard] + "
            f"{over.index_bytes_per_video:.0f} B/video of index [overhead]",
        ),
        train_shard_mb=Figure(
            "mean train shard (tar) size",
            train_bytes / train_shards / 1e6,
            "MB",
            f"{layout.videos_per_shard} videos/shard x {train_video_bytes / 1e6:.2f} MB [shard]",
        ),
        shards=Figure("shards (train + val)", shards, "tars", f"ceil(videos / {layout.videos_per_shard})"),
        s3_objects=Figure(
            "S3 objects",
            2 * shards + 4,
            "objects",
            "tar + .tar.json sidecar per shard, index.json + quarantine.jsonl per split",
        ),
        epoch_gpu_hours=Figure(
            "GPU-hours per epoch",
            data.train_videos / gpu.train_clips_per_s / 3600,
            "GPU-h",
            f"{data.train_videos:,} clips / {gpu.train_clips_per_s:.0f} clips/s [gpu]",
        ),
        epoch_wall_s=Figure(
            f"wall time per epoch on {cluster.gpus} x {gpu.gpu_type}",
            epoch_s,
            "s",
            f"{data.train_videos:,} clips / ({cluster.gpus} x {gpu.train_clips_per_s:.0f} clips/s) [gpu]",
        ),
        train_gets_per_s=Figure(
            "S3 GET requests/s during training",
            gets / epoch_s,
            "GET/s",
            f"({train_shards:,} shards + 2 x {cluster.gpus * cluster.loader_workers_per_gpu} "
            f"loader readers) per {epoch_s:.0f} s epoch",
        ),
        prefix_get_share=Figure(
            "  share of one S3 prefix's 5,500 GET/s",
            100 * gets / epoch_s / S3_GETS_PER_S_PER_PREFIX,
            "%",
            "every shard of a split under one prefix",
        ),
        train_mb_per_s=Figure(
            "S3 read bandwidth during training",
            train_bytes / epoch_s / 1e6,
            "MB/s",
            f"all {layout.train_views} views' bytes ({train_bytes / 1e12:.2f} TB) read once per "
            f"{epoch_s:.0f} s epoch [shard] [gpu]",
        ),
        s3_streams_per_gpu=Figure(
            "  concurrent S3 GET streams per GPU",
            train_bytes / epoch_s / 1e6 / cluster.gpus / S3_MB_PER_S_PER_STREAM,
            "streams",
            f"{train_bytes / epoch_s / 1e6 / cluster.gpus:,.0f} MB/s per GPU / "
            f"{S3_MB_PER_S_PER_STREAM} MB/s per GET",
        ),
        cores_per_gpu_cpu=Figure(
            "CPU cores per GPU, decode: cpu",
            gpu.train_clips_per_s / cpu_path.clips_per_core_s,
            "cores",
            f"{gpu.train_clips_per_s:.0f} clips/s [gpu] / "
            f"{cpu_path.clips_per_core_s:.1f} clips per core-s [loader-cpu]",
        ),
        cores_per_gpu_device=Figure(
            "CPU cores per GPU, decode: device (workers)",
            gpu.train_clips_per_s / device_path.clips_per_core_s,
            "cores",
            f"{gpu.train_clips_per_s:.0f} clips/s [gpu] / "
            f"{device_path.clips_per_core_s:.1f} clips per core-s [loader-device]",
        ),
        shuffle_buffer_gb_per_gpu=Figure(
            "shuffle-buffer memory per GPU",
            cluster.loader_workers_per_gpu * cluster.shuffle_buffer * sample_mb / 1e3,
            "GB",
            f"{cluster.loader_workers_per_gpu} workers x {cluster.shuffle_buffer} "
            f"samples x {sample_mb:.2f} MB (one view) [shard]",
        ),
        eval_gpu_hours=Figure(
            f"GPU-hours to evaluate val ({layout.val_views} clips x {data.eval_crops} crops)",
            eval_views / eval_views_per_s / 3600,
            "GPU-h",
            f"{eval_views:,} views / {eval_views_per_s:.0f} views/s at {data.eval_input_size} px [gpu]",
        ),
        eval_wall_s=Figure(
            f"evaluation wall time, {cluster.gpus} replicas",
            eval_views / eval_views_per_s / cluster.gpus,
            "s",
            "GPU-hours / replicas (one per GPU), plus actor start-up",
        ),
        eval_cores_per_gpu=Figure(
            "CPU cores per eval replica, decode: cpu",
            eval_views_per_s / data.eval_crops / cpu_path.clips_per_core_s,
            "cores",
            f"{eval_views_per_s / data.eval_crops:.0f} clips/s (crops share a decode) / "
            f"{cpu_path.clips_per_core_s:.1f} clips per core-s [loader-cpu]",
        ),
        sources=cited,
    )

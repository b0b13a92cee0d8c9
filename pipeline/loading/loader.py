"""WebDataset shards (local or s3://) -> augmented TDN batches for training and evaluation.

Tensor flow of one training batch (B samples, T segments, S = ``input_size``)::

    tar members of a sample            <key>.json (SampleMeta) + <key>.frames (U unique JPEGs)
      | json only: skip other views    one view per video per epoch, chosen before any JPEG is touched
      | shuffle buffer (raw bytes)
      | crop box + flip per sample     pipeline.loading.transforms (same for all T x 5 frames)
      | U JPEG decodes per sample      pipeline.loading.jpeg_decode: draft() DCT downscale, crop, flip, one batched
      v                                antialiased bilinear resize per sample, gathered into the batch
                                       buffer (frames shared by windows decoded once); samples in threads
    uint8  (B, T, 5, S, S, 3)          one preallocated shared-memory buffer per batch
      | permute (view)
    uint8  (B, T, 5, 3, S, S)          output_dtype="uint8": the trainer calls normalise_on_device(x)
      | normalise_uint8, one pass      (4x fewer bytes through worker IPC and host->GPU copies)
      v
    float32 (B, T, 5, 3, S, S)         output_dtype="float32" (default): ImageNet mean/std applied here
    int64  (B,)                        labels (after the Something-Something flip label swap)

Use ``output_dtype="uint8"`` + ``normalise_on_device(x, device)`` when training on GPUs: one core then
delivers about 1.5x more samples/s at 224 px (BENCHMARKS.md; the float32 batch of 8 is 192 MB
of fresh memory per step) and the host moves 4x fewer bytes. ``normalise_on_device`` passes float batches
through unchanged, so a trainer can call it whatever the setting.

Epochs and ranks. Every (rank, loader worker) pair reads a disjoint, contiguous slice of one global order
of the videos (shards permuted per epoch with ``(seed, epoch)``; inside a shard the order written), so each
video is seen exactly once per epoch, with one of its pre-sampled views: ``(epoch + hash(video_id)) %
num_views``. Every rank runs exactly ``train_steps_per_epoch`` steps of B samples (DDP needs equal step
counts); the few missing samples of the last batches (at most B*world - 1 in all) are repeats drawn from the
same slice. This is what WebDataset's ``resampled=True`` + ``with_epoch`` gives for equal steps, without its
sampling with replacement (which sees about 63% of the videos per epoch). Slices only split shards at their
ends, so a rank reads at most two shards it does not finish.

The split relies on the index's per-shard ``videos`` count and on all views of a video sitting in the same
shard (the shard job writes a video's views together). If a shard holds more selected samples than its count,
the extra ones go to the slice owning the shard's end; missing ones are replaced by repeats.

Evaluation (``eval_batches``) reads every sample of the given shards once, in order, each view x crop as one
row, with no shuffling or resampling; a pool of replicas splits the work by passing disjoint shard lists.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline import storage
from pipeline.loading.jpeg_decode import CropTarget, FrameDecodeError, decode_sample
from pipeline.loading.transforms import (
    DEFAULT_SCALES,
    CropBox,
    eval_boxes,
    eval_output_size,
    flip_decision,
    label_swap_map,
    multi_scale_crop_box,
    normalise_uint8,
)
from pipeline.shards.contract import SCHEMA, SampleMeta, decode_sample_metadata, index_checksum, split_jpegs


@dataclass
class LoaderConfig:
    batch_size: int = 8  # per rank
    num_workers: int = 2  # torch DataLoader worker processes per rank (0: decode in the calling process)
    input_size: int = 224  # side of the training crop / eval centre crop
    scales: tuple[float, ...] = DEFAULT_SCALES  # multi-scale crop sides, fractions of the shorter side
    flip: Literal["none", "random", "swap_labels"] = "random"
    flip_label_pairs: list[tuple[int, int]] = field(default_factory=list)  # SSv1: (86,87),(93,94),(166,167)
    shuffle_buffer: int = 256  # raw samples per loader worker, before decoding (~0.5 MB each at short side 320)
    eval_short_side: int = 256
    eval_crops: Literal[1, 3] = 1  # 1: centre input_size crop; 3: three eval_short_side crops (Kinetics)
    decode_threads: int = 4  # JPEG decoding threads per loader worker
    output_dtype: Literal["float32", "uint8"] = "float32"  # uint8: normalise on the device (normalise_on_device)
    use_draft: bool = True  # let libjpeg decode at 1/2, 1/4, 1/8 scale when the crop allows it
    pin_memory: bool = False  # page-locked batches for asynchronous host->GPU copies
    prefetch_factor: int = 2  # batches in flight per loader worker

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.num_workers < 0 or self.decode_threads < 1:
            raise ValueError("batch_size and decode_threads must be >= 1, num_workers >= 0")
        if self.input_size < 1 or not self.scales or any(not 0 < s <= 1 for s in self.scales):
            raise ValueError(f"input_size must be >= 1 and scales in (0, 1], got {self.input_size}, {self.scales}")
        if self.flip not in ("none", "random", "swap_labels"):
            raise ValueError(f"flip must be 'none', 'random' or 'swap_labels', got {self.flip!r}")
        if self.output_dtype not in ("float32", "uint8"):
            raise ValueError(f"output_dtype must be 'float32' or 'uint8', got {self.output_dtype!r}")
        if self.eval_crops not in (1, 3):
            raise ValueError(f"eval_crops must be 1 or 3, got {self.eval_crops}")
        label_swap_map(self.flip_label_pairs)  # rejects malformed pairs early


# ---------------------------------------------------------------------------------------------- index


def read_index(split_dir: str) -> dict:
    """The ``index.json`` of a shard split (local folder or s3:// prefix), schema and checksum verified."""
    uri = storage.join(str(split_dir), "index.json")
    try:
        index = json.loads(storage.read_text(uri))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{uri}: no shard index (has the shard job finished this split?)") from exc
    except ValueError as exc:
        raise ValueError(f"{uri}: not valid JSON: {exc}") from exc
    if index.get("schema") != SCHEMA:
        raise ValueError(f"{uri}: schema {index.get('schema')!r}, this loader reads {SCHEMA!r}")
    if "checksum" in index and index["checksum"] != index_checksum(index):
        raise ValueError(f"{uri}: checksum does not match its content (edited or truncated index)")
    for key in ("shards", "num_videos"):
        if key not in index:
            raise ValueError(f"{uri}: missing field {key!r}")
    return index


def shard_uris(split_dir: str, index: dict) -> list[str]:
    return [storage.join(str(split_dir), s["name"]) for s in index["shards"]]


def _shard_videos(shard: dict, index: dict) -> int:
    if "videos" in shard:
        return int(shard["videos"])
    return int(shard["samples"]) // max(1, int(index.get("views_per_video", 1)))


def train_steps_per_epoch(index: dict, cfg: LoaderConfig, world_size: int) -> int:
    """ceil(num_videos / (batch_size * world_size)): every rank runs this many steps per epoch."""
    return max(1, math.ceil(int(index["num_videos"]) / (cfg.batch_size * world_size)))


def selected_view(video_id: str, epoch: int, num_views: int) -> int:
    """The view of ``video_id`` used in ``epoch``: views rotate with the epoch from a per-video start, so
    every view is used once per ``num_views`` epochs and a batch mixes views."""
    start = int.from_bytes(hashlib.sha1(video_id.encode("utf-8")).digest()[:8], "little")
    return (epoch + start) % max(1, num_views)


# ----------------------------------------------------------------------------------------- epoch plan


@dataclass(frozen=True)
class ShardSlice:
    """Selected samples ``start <= ordinal < stop`` of one shard (ordinal counts only the samples of the
    epoch's view, in tar order). ``open_end``: also take ordinals >= stop (this slice owns the shard's end)."""

    uri: str
    start: int
    stop: int
    open_end: bool


@dataclass(frozen=True)
class WorkerPlan:
    slices: list[ShardSlice]  # the worker's share of the epoch, in reading order
    fallback: list[ShardSlice]  # where repeats come from when ``slices`` is empty
    num_batches: int


def epoch_plan(
    index: dict, uris: Sequence[str], cfg: LoaderConfig, rank: int, world_size: int, num_workers: int,
    epoch: int, seed: int,
) -> list[WorkerPlan]:  # fmt: skip
    """What each loader worker of ``rank`` reads in ``epoch`` (the same computation on every rank)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    counts = [_shard_videos(s, index) for s in index["shards"]]
    order = np.random.default_rng([seed, epoch, 0x5EED]).permutation(len(counts))
    starts = np.concatenate([[0], np.cumsum([counts[i] for i in order])]).astype(int)
    total = int(starts[-1])
    steps = train_steps_per_epoch(index, cfg, world_size)
    workers = max(1, num_workers)
    batches = [steps // workers + (w < steps % workers) for w in range(workers)]

    def slices_of(lo: int, hi: int) -> list[ShardSlice]:
        out = []
        for pos, i in enumerate(order):
            a, b = int(starts[pos]), int(starts[pos + 1])
            if b > lo and a < hi and b > a:
                stop = min(hi, b) - a
                out.append(ShardSlice(uris[i], max(lo, a) - a, stop, open_end=stop == b - a))
        return out

    rank_lo, rank_hi = rank * total // world_size, (rank + 1) * total // world_size
    rank_slices = slices_of(rank_lo, rank_hi) or slices_of(0, total)
    # Split the rank's range over its workers in proportion to their batch quotas, so no worker is given
    # more videos than it will yield (n <= quota_total implies each share <= its quota).
    quota_total = steps * cfg.batch_size
    cum = np.concatenate([[0], np.cumsum(batches)]) * cfg.batch_size
    n = rank_hi - rank_lo
    plans = []
    for w in range(workers):
        lo = rank_lo + n * int(cum[w]) // quota_total
        hi = rank_lo + n * int(cum[w + 1]) // quota_total
        plans.append(WorkerPlan(slices_of(lo, hi) if hi > lo else [], rank_slices, batches[w]))
    return plans


# ------------------------------------------------------------------------------------------- reading


@dataclass
class RawSample:
    meta: SampleMeta
    frames: bytes
    where: str  # shard URI + key, for error messages


def _iter_shard(uri: str) -> Iterator[tuple[str, dict[str, Any]]]:
    import webdataset as wds

    storage.register_webdataset_s3()
    for sample in wds.tariterators.tarfile_samples([{"url": uri}]):
        yield sample["__key__"], sample


def _parse(uri: str, key: str, sample: dict[str, Any]) -> RawSample:
    where = f"{uri} sample {key}"
    if "json" not in sample or "frames" not in sample:
        raise ValueError(f"{where}: missing .json or .frames member (has {sorted(k for k in sample if k[0] != '_')})")
    try:
        meta = decode_sample_metadata(sample)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{where}: bad metadata: {exc}") from exc
    return RawSample(meta, sample["frames"], where)


def _read_slice(piece: ShardSlice, epoch: int) -> Iterator[RawSample]:
    ordinal = 0
    for key, sample in _iter_shard(piece.uri):
        raw = _parse(piece.uri, key, sample)
        if raw.meta.view != selected_view(raw.meta.video_id, epoch, raw.meta.num_views):
            continue
        ordinal += 1
        if ordinal - 1 < piece.start:
            continue
        if ordinal - 1 >= piece.stop and not piece.open_end:
            return  # stop reading: the rest of the shard belongs to the next slice
        yield raw


def _read_slices(slices: Sequence[ShardSlice], epoch: int) -> Iterator[RawSample]:
    for piece in slices:
        yield from _read_slice(piece, epoch)


def _shuffled(items: Iterator[RawSample], size: int, rng: np.random.Generator) -> Iterator[RawSample]:
    """A bounded shuffle buffer over a finite stream (flushed at its end, so nothing is dropped)."""
    buf: list[RawSample] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = int(rng.integers(len(buf)))
        buf[j], item = item, buf[j]
        yield item
    rng.shuffle(buf)
    yield from buf


# ------------------------------------------------------------------------------------------ decoding


def _shared_uint8(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor in shared memory when inside a loader worker, so handing it to the
    main process moves no pixels."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    storage_ = torch.UntypedStorage._new_shared(int(np.prod(shape)))
    return torch.empty(0, dtype=torch.uint8).set_(storage_).view(shape)


def _shared_float(shape: tuple[int, ...]) -> torch.Tensor:
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    storage_ = torch.UntypedStorage._new_shared(int(np.prod(shape)) * 4)
    return torch.empty(0, dtype=torch.float32).set_(storage_).view(shape)


@dataclass(frozen=True)
class _Job:
    """One sample to decode into rows of the batch buffer: (row, crop box, flip) per output."""

    meta: SampleMeta
    frames: bytes
    where: str
    rows: list[tuple[int, CropBox, bool]]


def decode_rows(
    jobs: Sequence[_Job], num_rows: int, out_size: int, cfg: LoaderConfig, pool: ThreadPoolExecutor | None
) -> torch.Tensor:
    """Decode samples into one uint8 (R, T, 5, S, S, 3) buffer; one task per sample, each stored (unique)
    frame decoded once for all the windows and crops that use it."""
    if not jobs:
        raise ValueError("no rows to decode")
    t = jobs[0].meta.num_segments
    window = len(jobs[0].meta.frame_indices[0])
    buf = _shared_uint8((num_rows, t, window, out_size, out_size, 3))
    flat = buf.view(num_rows, t * window, out_size, out_size, 3)
    for job in jobs:
        meta = job.meta
        if meta.num_segments != t or any(len(w) != window for w in meta.frame_indices):
            raise ValueError(
                f"{job.where}: {meta.num_segments} segments x {len(meta.frame_indices[0])} frames, "
                f"the batch has {t} x {window} (mixed shard settings?)"
            )

    def run(job: _Job) -> None:
        meta = job.meta
        try:
            jpegs = split_jpegs(job.frames, meta.jpeg_sizes)
            positions = [p for window_pos in meta.window_positions() for p in window_pos]
            targets = [CropTarget(box, flip, flat[row]) for row, box, flip in job.rows]
            decode_sample(jpegs, meta.width, meta.height, positions, targets, cfg.use_draft)
        except (FrameDecodeError, ValueError, KeyError) as exc:
            raise FrameDecodeError(f"{job.where} ({meta.video_id!r}): {exc}") from exc

    if pool is None:
        for job in jobs:
            run(job)
    else:
        for _ in pool.map(run, jobs):
            pass
    return buf


def finish(buf: torch.Tensor, cfg: LoaderConfig) -> torch.Tensor:
    """uint8 (R, T, 5, S, S, 3) -> (R, T, 5, 3, S, S) in the configured output dtype (uint8: a permuted view
    of the buffer, no copy; float32: contiguous and normalised)."""
    x = buf.permute(0, 1, 2, 5, 3, 4)
    if cfg.output_dtype == "uint8":
        return x
    return normalise_uint8(x, out=_shared_float(tuple(x.shape)))


def _pool(cfg: LoaderConfig) -> ThreadPoolExecutor | None:
    return ThreadPoolExecutor(cfg.decode_threads) if cfg.decode_threads > 1 else None


# ------------------------------------------------------------------------------------------ training


class _TrainStream(IterableDataset):
    def __init__(
        self, index: dict, uris: list[str], cfg: LoaderConfig, rank: int, world_size: int, epoch: int, seed: int
    ) -> None:
        self.index, self.uris, self.cfg = index, uris, cfg
        self.rank, self.world_size, self.epoch, self.seed = rank, world_size, epoch, seed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        cfg = self.cfg
        plans = epoch_plan(self.index, self.uris, cfg, self.rank, self.world_size, cfg.num_workers,
                           self.epoch, self.seed)  # fmt: skip
        plan = plans[worker]
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
        stream = self._samples(plan, rng)
        pool = _pool(cfg)
        try:
            for _ in range(plan.num_batches):
                raws = [next(stream) for _ in range(cfg.batch_size)]
                jobs, labels = [], []
                for row, raw in enumerate(raws):
                    meta = raw.meta
                    box = multi_scale_crop_box(meta.width, meta.height, cfg.input_size, cfg.scales, rng)
                    flip, label = flip_decision(meta.label, cfg.flip, cfg.flip_label_pairs, rng)
                    jobs.append(_Job(meta, raw.frames, raw.where, [(row, box, flip)]))
                    labels.append(label)
                x = finish(decode_rows(jobs, len(jobs), cfg.input_size, cfg, pool), cfg)
                yield x, torch.tensor(labels, dtype=torch.int64)
        finally:
            stream.close()
            if pool is not None:
                pool.shutdown(wait=True)

    def _samples(self, plan: WorkerPlan, rng: np.random.Generator) -> Iterator[RawSample]:
        """The worker's slice once (shuffled), then repeats of it (or of the rank's share) as padding."""
        size = self.cfg.shuffle_buffer
        yield from _shuffled(_read_slices(plan.slices, self.epoch), size, rng)
        pad_from = plan.slices or plan.fallback
        while True:
            got = 0
            for raw in _shuffled(_read_slices(pad_from, self.epoch), size, rng):
                got += 1
                yield raw
            if got == 0:
                raise ValueError(f"no samples of epoch {self.epoch}'s views in {[p.uri for p in pad_from]}")


class TrainLoader:
    """Iterable of (x, y) batches for one rank and epoch; ``len()`` is the (equal) number of steps."""

    def __init__(
        self, split_dir: str, cfg: LoaderConfig, rank: int, world_size: int, epoch: int, seed: int
    ) -> None:
        self.index = read_index(split_dir)
        self.cfg = cfg
        self.steps = train_steps_per_epoch(self.index, cfg, world_size)
        self.dataset = _TrainStream(self.index, shard_uris(split_dir, self.index), cfg, rank, world_size,
                                    epoch, seed)  # fmt: skip

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cfg = self.cfg
        if cfg.num_workers == 0:
            yield from self.dataset
            return
        loader = DataLoader(
            self.dataset,
            batch_size=None,
            num_workers=cfg.num_workers,
            pin_memory=cfg.pin_memory,
            prefetch_factor=cfg.prefetch_factor,
            persistent_workers=False,
        )
        yield from loader


def train_loader(
    split_dir: str, cfg: LoaderConfig, rank: int, world_size: int, epoch: int, seed: int = 0
) -> TrainLoader:
    """Training batches of one rank for one epoch: x (B, T, 5, 3, S, S) float32 normalised (or uint8, see
    ``LoaderConfig.output_dtype``), y (B,) int64; ``train_steps_per_epoch`` batches on every rank."""
    return TrainLoader(str(split_dir), cfg, rank, world_size, epoch, seed)


# -------------------------------------------------------------------------------------------- eval


@dataclass
class EvalBatch:
    x: torch.Tensor  # (R, T, 5, 3, S, S) float32 normalised (uint8 with output_dtype="uint8")
    video_ids: list[str]  # R rows: one per (sample = view) x crop
    views: list[int]
    crops: list[int]
    labels: torch.Tensor  # (R,) int64, -1 for unlabelled test samples


def resolve_shards(source: str | os.PathLike | Sequence[str]) -> list[str]:
    """Shard URIs from a split folder (its index.json, else its *.tar files), one .tar, or a list."""
    if isinstance(source, (str, os.PathLike)):
        source = str(source)
        if source.endswith(".tar"):
            return [source]
        if storage.exists(storage.join(source, "index.json")):
            return shard_uris(source, read_index(source))
        found = storage.list_files(source, ".tar")
        if not found:
            raise FileNotFoundError(f"{source}: no index.json and no .tar shards")
        return found
    uris = [str(u) for u in source]
    if not uris:
        raise ValueError("eval_batches: empty shard list")
    return uris


class _EvalStream(IterableDataset):
    def __init__(self, uris: list[str], cfg: LoaderConfig, batch_size: int) -> None:
        self.uris, self.cfg, self.batch_size = uris, cfg, batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        mine = self.uris if info is None else self.uris[info.id :: info.num_workers]
        cfg = self.cfg
        out_size = eval_output_size(cfg.input_size, cfg.eval_short_side, cfg.eval_crops)
        pool = _pool(cfg)
        try:
            pending: list[tuple[RawSample, list[CropBox]]] = []
            rows = 0
            for uri in mine:
                for key, sample in _iter_shard(uri):
                    raw = _parse(uri, key, sample)
                    boxes = eval_boxes(raw.meta.width, raw.meta.height, cfg.eval_short_side, cfg.input_size,
                                       cfg.eval_crops)  # fmt: skip
                    if pending and rows + len(boxes) > self.batch_size:
                        yield self._batch(pending, rows, out_size, pool)
                        pending, rows = [], 0
                    pending.append((raw, boxes))
                    rows += len(boxes)
            if pending:
                yield self._batch(pending, rows, out_size, pool)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def _batch(
        self, pending: list[tuple[RawSample, list[CropBox]]], rows: int, out_size: int, pool: Any
    ) -> dict[str, Any]:
        jobs, video_ids, views, crops, labels = [], [], [], [], []
        for raw, boxes in pending:
            first = len(video_ids)
            jobs.append(_Job(raw.meta, raw.frames, raw.where, [(first + c, b, False) for c, b in enumerate(boxes)]))
            for c in range(len(boxes)):
                video_ids.append(raw.meta.video_id)
                views.append(raw.meta.view)
                crops.append(c)
                labels.append(raw.meta.label)
        x = finish(decode_rows(jobs, rows, out_size, self.cfg, pool), self.cfg)
        return {"x": x, "video_ids": video_ids, "views": views, "crops": crops,
                "labels": torch.tensor(labels, dtype=torch.int64)}  # fmt: skip


def eval_batches(
    split_dir_or_shard_list: str | os.PathLike | Sequence[str], cfg: LoaderConfig, batch_size: int
) -> Iterator[EvalBatch]:
    """Every sample of the given shards exactly once, each view x crop as one row; a batch holds whole samples,
    at most ``batch_size`` rows (fewer at the end of each loader worker's shards; a sample with more crops
    than ``batch_size`` is a batch of its own). Rows: x (R, T, 5, 3, S, S) with S =
    input_size (1 crop) or eval_short_side (3 crops)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    uris = resolve_shards(split_dir_or_shard_list)
    dataset = _EvalStream(uris, cfg, batch_size)
    workers = min(cfg.num_workers, len(uris))
    if workers == 0:
        batches: Any = iter(dataset)
    else:
        batches = DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=cfg.pin_memory,
                             prefetch_factor=cfg.prefetch_factor)  # fmt: skip
    for b in batches:
        yield EvalBatch(b["x"], list(b["video_ids"]), [int(v) for v in b["views"]], [int(c) for c in b["crops"]],
                        b["labels"])  # fmt: skip

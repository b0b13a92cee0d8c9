"""Samples -> one batch tensor: JPEG decoding straight at each crop, into a shared-memory buffer.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import get_worker_info

from pipeline.loading.config import LoaderConfig
from pipeline.loading.device_batch import EncodedBatch, encode_batch
from pipeline.loading.jpeg_decode import CropTarget, FrameDecodeError, decode_sample
from pipeline.loading.transforms import CropBox, normalise_uint8
from pipeline.shards.contract import SampleMeta, check_frames, split_jpegs


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
class DecodeJob:
    """One sample to decode into rows of the batch buffer: (row, crop box, flip) per output."""

    meta: SampleMeta
    frames: bytes
    where: str
    rows: list[tuple[int, CropBox, bool]]


def decode_rows(
    jobs: Sequence[DecodeJob],
    num_rows: int,
    out_size: int,
    cfg: LoaderConfig,
    pool: ThreadPoolExecutor | None,
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

    def run(job: DecodeJob) -> None:
        meta = job.meta
        check_frames(meta, job.frames, job.where)
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


def batch_rows(
    jobs: Sequence[DecodeJob],
    num_rows: int,
    out_size: int,
    cfg: LoaderConfig,
    pool: ThreadPoolExecutor | None,
) -> torch.Tensor | EncodedBatch:
    """The worker's output for these rows: decoded (``finish``) or, with ``decode: device``, still encoded."""
    if cfg.decode == "device":
        for job in jobs:
            check_frames(job.meta, job.frames, job.where)
        items = [
            (
                j.frames,
                j.meta.jpeg_sizes,
                j.meta.width,
                j.meta.height,
                j.meta.window_positions(),
                j.rows,
                j.where,
            )
            for j in jobs
        ]
        return encode_batch(items, num_rows, out_size)
    return finish(decode_rows(jobs, num_rows, out_size, cfg, pool), cfg)


def decode_pool(cfg: LoaderConfig) -> ThreadPoolExecutor | None:
    return ThreadPoolExecutor(cfg.decode_threads) if cfg.decode_threads > 1 else None

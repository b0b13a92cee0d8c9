"""Evaluation batches: every sample of the given shards once, each view x crop as one row.

Evaluation (``eval_batches``) reads every sample of the given shards once, in order, each view x crop as one
row, with no shuffling or resampling; a pool of replicas splits the work by passing disjoint shard lists.

    shard list --shard_reading--> RawSample --transforms.eval_boxes (1 or 3 crops)-->
      --batch_decode.batch_rows--> EvalBatch: x (R, T, 5, 3, S, S), video_ids, views, crops, labels
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.loading.batch_decode import DecodeJob, batch_rows, decode_pool
from pipeline.loading.config import LoaderConfig
from pipeline.loading.device_batch import EncodedBatch
from pipeline.loading.shard_reading import RawSample, iter_shard, listed_entries, parse_sample, resolve_shards
from pipeline.loading.transforms import CropBox, eval_boxes, eval_output_size
from pipeline.shards.contract import ShardEntry


@dataclass
class EvalBatch:
    x: torch.Tensor | EncodedBatch  # (R, T, 5, 3, S, S) float32 normalised (uint8 with output_dtype="uint8";
    # an EncodedBatch with decode="device": device_batch.decode_batch turns it into the float32 rows)
    video_ids: list[str]  # R rows: one per (sample = view) x crop
    views: list[int]
    crops: list[int]
    labels: torch.Tensor  # (R,) int64, -1 for unlabelled test samples


class _EvalStream(IterableDataset):
    def __init__(
        self, uris: list[str], entries: list[ShardEntry | None], cfg: LoaderConfig, batch_size: int
    ) -> None:
        self.uris, self.entries, self.cfg, self.batch_size = uris, entries, cfg, batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        mine = self.uris if info is None else self.uris[info.id :: info.num_workers]
        entries = self.entries if info is None else self.entries[info.id :: info.num_workers]
        cfg = self.cfg
        out_size = eval_output_size(cfg.input_size, cfg.eval_short_side, cfg.eval_crops)
        pool = decode_pool(cfg)
        try:
            pending: list[tuple[RawSample, list[CropBox]]] = []
            rows = 0
            for uri, entry in zip(mine, entries):
                for key, sample in iter_shard(uri, entry):  # verified against its index.json entry
                    raw = parse_sample(uri, key, sample)
                    boxes = eval_boxes(
                        raw.meta.width, raw.meta.height, cfg.eval_short_side, cfg.input_size, cfg.eval_crops
                    )
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
        jobs: list[DecodeJob] = []
        video_ids: list[str] = []
        views: list[int] = []
        crops: list[int] = []
        labels: list[int] = []
        for raw, boxes in pending:
            first = len(video_ids)
            jobs.append(
                DecodeJob(
                    raw.meta, raw.frames, raw.where, [(first + c, b, False) for c, b in enumerate(boxes)]
                )
            )
            for c in range(len(boxes)):
                video_ids.append(raw.meta.video_id)
                views.append(raw.meta.view)
                crops.append(c)
                labels.append(raw.meta.label)
        x = batch_rows(jobs, rows, out_size, self.cfg, pool)
        return {
            "x": x,
            "video_ids": video_ids,
            "views": views,
            "crops": crops,
            "labels": torch.tensor(labels, dtype=torch.int64),
        }


def eval_batches(
    split_dir_or_shard_list: str | os.PathLike | Sequence[str],
    cfg: LoaderConfig,
    batch_size: int,
    entries: Sequence[ShardEntry] | None = None,
) -> Iterator[EvalBatch]:
    """Every sample of the given shards exactly once, each view x crop as one row; a batch holds whole samples,
    at most ``batch_size`` rows (fewer at the end of each loader worker's shards; a sample with more crops
    than ``batch_size`` is a batch of its own). Rows: x (R, T, 5, 3, S, S) with S =
    input_size (1 crop) or eval_short_side (3 crops).

    Each tar is verified against its index.json entry: ``entries`` (one per shard of a list, same order:
    an evaluation passes the ones it read), else the entries of each shard's folder index, read here."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    uris = resolve_shards(split_dir_or_shard_list)
    if entries is not None and len(entries) != len(uris):
        raise ValueError(f"{len(entries)} index entries for {len(uris)} shards")
    listed: list[ShardEntry | None] = list(entries) if entries is not None else listed_entries(uris)
    dataset = _EvalStream(uris, listed, cfg, batch_size)
    workers = min(cfg.num_workers, len(uris))
    if workers == 0:
        batches: Any = iter(dataset)
    else:
        batches = DataLoader(
            dataset,
            batch_size=None,
            num_workers=workers,
            pin_memory=cfg.pin_memory,
            prefetch_factor=cfg.prefetch_factor,
        )
    for b in batches:
        yield EvalBatch(
            b["x"],
            list(b["video_ids"]),
            [int(v) for v in b["views"]],
            [int(c) for c in b["crops"]],
            b["labels"],
        )
